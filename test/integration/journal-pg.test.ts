import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Deferred, Effect, Exit, Layer, Redacted } from "effect"
import { isRetryable, type MiningError } from "../../src/domain/errors.ts"
import type { TransactionRecord } from "../../src/domain/TransactionRecord.ts"
import { PgJournal } from "../../src/layers/journal/PgJournal.ts"
import { lostConnectionAsFailure, pgError, type PgTarget, pgTarget } from "../../src/layers/postgres/pgErrors.ts"
import { PG_SCHEMA_VERSION } from "../../src/layers/postgres/pgMigrations.ts"
import { openPgPool } from "../../src/layers/postgres/pgPool.ts"
import { startTcpProxy } from "../support/tcpProxy.ts"
import { isTakenOver, isUnfinishedKeyTaken, Journal } from "../../src/services/Journal.ts"
import { contractEvent, contractRecord, journalContract } from "../support/journalContract.ts"
import { assertNoPassword as assertPasswordHidden, findPostgres, type PostgresServer, serverForTests, withSql } from "../support/postgres.ts"

const postgres = findPostgres()
if ("skip" in postgres) console.warn(`PgJournal tests skipped: ${postgres.skip}`)

/** One server for the file; each test takes a fresh database on it (CREATE DATABASE is ~0.1 s, a server ~1 s). */
/** The file's server, once its describe block started it. */
let running: () => PostgresServer = () => {
  throw new Error("no Postgres server: tests run inside the describe block")
}

const freshUrl = Effect.promise(() => running().freshDatabase())

/** A journal built in the test's scope (so two can live side by side, like two runners). */
const openJournal = (url: string) => Layer.build(PgJournal.layer({ url })).pipe(Effect.map((c) => Context.get(c, Journal)))

const assertNoPassword = (error: MiningError) => assertPasswordHidden(error, running().password)

describe.skipIf("skip" in postgres)("PgJournal", () => {
  running = serverForTests(postgres)

  // it.live: the driver's timeouts and pool run on the real clock.
  describe("Journal contract", () => {
    journalContract(it.live, () => Layer.unwrap(Effect.map(freshUrl, (url) => PgJournal.layer({ url }))))
  })

  it.live("two layers on one database see each other's records, events and meta (two runners, one journal)", () =>
    Effect.gen(function*() {
      const url = yield* freshUrl
      const a = yield* openJournal(url)
      const b = yield* openJournal(url)
      const r = contractRecord("tx-a")
      yield* a.save(r, contractEvent(r, "created"))
      assert.deepStrictEqual(yield* b.get("tx-a"), r)
      // Runner b finishes what a started: one history, in order.
      const moved = { ...r, state: "training" as const, updated_at: "1970-01-01T00:00:02.000Z" }
      yield* b.save(moved, contractEvent(moved))
      assert.deepStrictEqual(yield* a.get("tx-a"), moved)
      assert.deepStrictEqual((yield* a.events("tx-a")).map((e) => e.event), ["created", "state_changed"])
      yield* b.setMeta("chain.genesis_hash", "0xaaa")
      assert.strictEqual(yield* a.getMeta("chain.genesis_hash"), "0xaaa")
      const other = contractRecord("tx-b", { chunkId: 1, createdMs: 2_000 })
      yield* a.save(other, contractEvent(other))
      assert.deepStrictEqual((yield* b.list({})).map((x) => x.transaction_id), ["tx-b", "tx-a"])
    }))

  it.live("a fleet's fence: one unfinished transaction per chunk among the runners, the second refused untouched", () =>
    Effect.gen(function*() {
      const url = yield* freshUrl
      const a = yield* Layer.build(PgJournal.layer({ url, owner: "runner-a" })).pipe(Effect.map((c) => Context.get(c, Journal)))
      const b = yield* Layer.build(PgJournal.layer({ url, owner: "runner-b" })).pipe(Effect.map((c) => Context.get(c, Journal)))
      const ofA = { ...contractRecord("tx-a", { key: "chunk-1" }), owner: "runner-a" }
      const ofB = { ...contractRecord("tx-b", { key: "chunk-1", createdMs: 2_000 }), owner: "runner-b" }
      yield* a.save(ofA, contractEvent(ofA, "created"))
      const refused = yield* Effect.flip(b.save(ofB, contractEvent(ofB, "created")))
      assert.isTrue(isUnfinishedKeyTaken(refused), refused.message)
      assert.isUndefined(yield* a.get("tx-b"))
      assert.deepStrictEqual(yield* b.events("tx-b"), [])
      // a's own updates of its transaction go on; once it is finished, b may start the chunk.
      const training = { ...ofA, state: "training" as const }
      yield* a.save(training, contractEvent(training))
      const rolledBack = { ...ofA, state: "rolled_back" as const }
      yield* a.save(rolledBack, contractEvent(rolledBack))
      yield* b.save(ofB, contractEvent(ofB, "created"))
      assert.strictEqual((yield* a.findByKey("chunk-1"))?.transaction_id, "tx-b")
      // Records without an owner (a miner alone's, as the contract writes them) are not fenced.
      const loose1 = contractRecord("tx-1", { key: "chunk-2" })
      const loose2 = contractRecord("tx-2", { key: "chunk-2", createdMs: 2_000 })
      yield* a.save(loose1, contractEvent(loose1))
      yield* a.save(loose2, contractEvent(loose2))
    }))

  it.live("a fleet's fence: a record another runner took over is not written by its old owner, nor its event", () =>
    Effect.gen(function*() {
      const url = yield* freshUrl
      const a = yield* Layer.build(PgJournal.layer({ url, owner: "runner-a" })).pipe(Effect.map((c) => Context.get(c, Journal)))
      const ofA = { ...contractRecord("tx-a", { key: "chunk-1" }), owner: "runner-a" }
      yield* a.save(ofA, contractEvent(ofA, "created"))
      // What a takeover does to the row (PgFleetRoster.takeOver): the owner column and the record's copy of it.
      const theirs = { ...ofA, owner: "runner-b" }
      yield* withSql(url, (sql) =>
        sql`UPDATE r3mes_transactions SET owner = 'runner-b', record = ${JSON.stringify(theirs)} WHERE transaction_id = 'tx-a'`)
      const stale = { ...ofA, state: "training" as const }
      const refused = yield* Effect.flip(a.save(stale, contractEvent(stale)))
      assert.isTrue(isTakenOver(refused), refused.message)
      assert.include(refused.message, "runner-b")
      assert.deepStrictEqual(yield* a.get("tx-a"), theirs)
      assert.deepStrictEqual((yield* a.events("tx-a")).map((e) => e.event), ["created"])
      // The new owner's writes go through.
      const moved = { ...theirs, state: "training" as const }
      yield* a.save(moved, contractEvent(moved))
      assert.deepStrictEqual(yield* a.get("tx-a"), moved)
    }))

  it.live("layerClient: the same journal on a client built elsewhere (one pool shared with the cluster's storage)", () =>
    Effect.gen(function*() {
      const url = yield* freshUrl
      const shared = yield* Layer.build(
        PgJournal.layerClient().pipe(Layer.provide(PgClient.layer({ url: Redacted.make(url) })))
      ).pipe(Effect.map((c) => Context.get(c, Journal)))
      const own = yield* openJournal(url)
      const r = contractRecord("tx-a")
      yield* shared.save(r, contractEvent(r, "created"))
      assert.deepStrictEqual(yield* own.get("tx-a"), r)
    }))

  it.live("runners starting together: concurrent migrations all succeed, and the schema is created once", () =>
    Effect.gen(function*() {
      const url = yield* freshUrl
      const journals = yield* Effect.all(Array.from({ length: 4 }, () => openJournal(url)), { concurrency: "unbounded" })
      const r = contractRecord("tx-a")
      yield* journals[0]!.save(r, contractEvent(r))
      for (const journal of journals) assert.deepStrictEqual(yield* journal.get("tx-a"), r)
      const versions = yield* withSql(url, (sql) => sql<{ version: number }>`SELECT version FROM r3mes_journal_schema`)
      assert.deepStrictEqual(versions.map((v) => v.version), [PG_SCHEMA_VERSION])
      // Building again on a migrated database changes nothing.
      yield* Effect.scoped(openJournal(url))
      assert.deepStrictEqual(yield* journals[1]!.get("tx-a"), r)
    }))

  it.live("round ids above 2^53 and awkward strings round-trip exactly, through get, findByKey and list", () =>
    Effect.gen(function*() {
      const journal = yield* openJournal(yield* freshUrl)
      const huge = (2n ** 256n - 1n).toString()
      const r: TransactionRecord = {
        ...contractRecord("tx-huge", { key: "k-huge" }),
        round_id: huge,
        pow_nonce: (2n ** 64n + 1n).toString(),
        // json keeps what jsonb would refuse (\u0000) or rewrite.
        error_message: "nul \u0000 tab \t quote \" emoji 🙂 backslash \\",
        loss_before: 0.1 + 0.2,
        block_number: Number.MAX_SAFE_INTEGER
      }
      yield* journal.save(r, contractEvent(r, "created", `round ${huge}`))
      yield* journal.save(r, contractEvent(r, "failed", r.error_message))
      assert.deepStrictEqual(yield* journal.get("tx-huge"), r)
      assert.deepStrictEqual(yield* journal.findByKey("k-huge"), r)
      assert.deepStrictEqual(yield* journal.list({}), [r])
      assert.deepStrictEqual((yield* journal.events("tx-huge")).map((e) => e.detail), [`round ${huge}`, r.error_message])
      assert.strictEqual((yield* journal.get("tx-huge"))?.round_id, "115792089237316195423570985008687907853269984665640564039457584007913129639935")
    }))

  it.live("save is one transaction: when its event cannot be written, the record is not written either", () =>
    Effect.gen(function*() {
      const url = yield* freshUrl
      const journal = yield* openJournal(url)
      const r = contractRecord("tx-a")
      yield* journal.save(r, contractEvent(r, "created"))
      // The database refuses every event from now on, after the record's upsert in the same transaction.
      yield* withSql(url, (sql) =>
        Effect.gen(function*() {
          yield* sql.unsafe(`CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS
                             $$ BEGIN RAISE EXCEPTION 'events refused by the test'; END $$`)
          yield* sql.unsafe(`CREATE TRIGGER refuse_event BEFORE INSERT ON r3mes_events
                             FOR EACH ROW EXECUTE FUNCTION refuse_event()`)
        }))
      const moved = { ...r, state: "training" as const, updated_at: "1970-01-01T00:00:02.000Z" }
      const error = yield* Effect.flip(journal.save(moved, contractEvent(moved)))
      assert.include(error.message, "events refused by the test")
      assert.deepStrictEqual(yield* journal.get("tx-a"), r)
      const fresh = contractRecord("tx-b", { chunkId: 1 })
      yield* Effect.flip(journal.save(fresh, contractEvent(fresh)))
      assert.isUndefined(yield* journal.get("tx-b"))
      assert.deepStrictEqual((yield* journal.events("tx-a")).map((e) => e.event), ["created"])
    }))

  it.live("a database of a newer miner's schema is refused, untouched", () =>
    Effect.gen(function*() {
      const url = yield* freshUrl
      yield* Effect.scoped(openJournal(url))
      yield* withSql(url, (sql) => sql`UPDATE r3mes_journal_schema SET version = ${PG_SCHEMA_VERSION + 1}`)
      const error = yield* Effect.flip(Effect.scoped(openJournal(url)))
      assert.strictEqual(error._tag, "ValidationError")
      assert.include(error.message, "newer than this miner's")
      assert.include(error.hint ?? "", "upgrade r3mes-miner")
    }))

  it.live("read only (status, stats): a database without the journal is refused and left empty; a journal is read, never written", () =>
    Effect.gen(function*() {
      const openReader = (url: string) =>
        Layer.build(PgJournal.layerReadOnly({ url })).pipe(Effect.map((c) => Context.get(c, Journal)))
      const tables = (url: string) =>
        withSql(url, (sql) => sql<{ name: string }>`SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'`)
      // A mistyped but existing database: nothing is created there.
      const empty = yield* freshUrl
      const missing = yield* Effect.flip(Effect.scoped(openReader(empty)))
      assert.strictEqual(missing._tag, "ResourceError", missing.message)
      assert.include(missing.message, "no fleet journal in the database postgres://r3mes@127.0.0.1")
      assert.include(missing.hint ?? "", "R3MES_FLEET_DATABASE_URL")
      assertNoPassword(missing)
      assert.deepStrictEqual(yield* tables(empty), [])
      // The fleet's journal: read like the runner's own; a write is refused by the server itself.
      const url = yield* freshUrl
      const runner = yield* openJournal(url)
      const r = contractRecord("tx-a")
      yield* runner.save(r, contractEvent(r, "created"))
      const reader = yield* openReader(url)
      assert.deepStrictEqual(yield* reader.get("tx-a"), r)
      assert.deepStrictEqual((yield* reader.list({})).map((x) => x.transaction_id), ["tx-a"])
      const moved = { ...r, state: "training" as const }
      const refused = yield* Effect.flip(reader.save(moved, contractEvent(moved)))
      assert.include(refused.message + String(refused.cause ?? ""), "read-only")
      assert.deepStrictEqual(yield* runner.get("tx-a"), r)
      // Another schema version: refused with the way out, the database untouched.
      yield* withSql(url, (sql) => sql`UPDATE r3mes_journal_schema SET version = ${PG_SCHEMA_VERSION - 1}`)
      const older = yield* Effect.flip(Effect.scoped(openReader(url)))
      assert.strictEqual(older._tag, "ValidationError")
      assert.include(older.hint ?? "", "migrates the journal")
      assert.strictEqual(
        (yield* withSql(url, (sql) => sql<{ version: number }>`SELECT version FROM r3mes_journal_schema`))[0]?.version,
        PG_SCHEMA_VERSION - 1
      )
    }))

  it.live("a client that vanished inside a transaction (no FIN) does not keep its row locks: the server ends the session", () =>
    Effect.gen(function*() {
      const url = yield* freshUrl
      const journal = yield* openJournal(url)
      const r = contractRecord("tx-a")
      yield* journal.save(r, contractEvent(r, "created"))
      const proxy = yield* Effect.acquireRelease(Effect.promise(() => startTcpProxy(running().port)), (p) => Effect.promise(() => p.close()))
      const { sql } = yield* openPgPool({ url: proxy.via(url), idleInTransactionTimeout: "2 seconds", maxConnections: 1 }, "journal")
      // A runner's transaction holding the record's row, when its machine goes away.
      const locked = yield* Deferred.make<void>()
      yield* Effect.forkScoped(Effect.ignore(sql.withTransaction(
        sql`SELECT 1 FROM r3mes_transactions WHERE transaction_id = 'tx-a' FOR UPDATE`.pipe(
          Effect.andThen(Deferred.succeed(locked, undefined)),
          Effect.andThen(Effect.never)
        )
      )))
      yield* Deferred.await(locked)
      proxy.vanish()
      const started = Date.now()
      // Another runner writing that row waits for the lock; without the timeout it would wait for hours.
      const moved = { ...r, state: "training" as const }
      yield* journal.save(moved, contractEvent(moved)).pipe(Effect.timeout("12 seconds"))
      const waited = Date.now() - started
      console.log(`the row was free ${waited} ms after its client vanished (idle-in-transaction timeout 2 s)`)
      assert.deepStrictEqual(yield* journal.get("tx-a"), moved)
    }).pipe(Effect.scoped), 60_000)

  it.live("a runner frozen inside a transaction past the timeout: the session is ended, and that is a retryable error", () =>
    Effect.gen(function*() {
      const url = yield* freshUrl
      const { sql, target } = yield* openPgPool({ url, idleInTransactionTimeout: "1 second", maxConnections: 1 }, "journal")
      const failed = yield* Effect.flip(lostConnectionAsFailure(sql.withTransaction(
        sql`SELECT 1`.pipe(Effect.andThen(Effect.sleep("2 seconds")), Effect.andThen(sql`SELECT 2`))
      )))
      const error = pgError(failed, "saving tx-a", target)
      assert.strictEqual(error._tag, "NetworkError", error.message)
      assert.isTrue(isRetryable(error))
      // The pool goes on with a new session.
      assert.deepStrictEqual(yield* sql<{ n: number }>`SELECT 3 AS n`.pipe(Effect.orDie), [{ n: 3 }])
    }).pipe(Effect.scoped), 30_000)

  it.live("a wrong password is an AuthenticationError naming the setting, without either password", () =>
    Effect.gen(function*() {
      const url = new URL(yield* freshUrl)
      url.password = "wrong-secret-4711"
      const error = yield* Effect.flip(Effect.scoped(openJournal(url.toString())))
      assert.strictEqual(error._tag, "AuthenticationError")
      assert.include(error.hint ?? "", "R3MES_FLEET_DATABASE_URL")
      assert.notInclude(JSON.stringify({ ...error, message: error.message }), "wrong-secret-4711")
      assertNoPassword(error)
    }))

  it.live("a database that does not exist is a ValidationError whose hint says to create it", () =>
    Effect.gen(function*() {
      const url = new URL(running().url)
      url.pathname = "/no_such_db"
      const error = yield* Effect.flip(Effect.scoped(openJournal(url.toString())))
      assert.strictEqual(error._tag, "ValidationError")
      assert.include(error.hint ?? "", "createdb no_such_db")
      assertNoPassword(error)
    }))

  it.live("a connection lost inside a transaction is a failure, not a defect (the ROLLBACK fails with it)", () =>
    Effect.gen(function*() {
      const url = yield* freshUrl
      // The session ends itself in the middle of a transaction: the statement fails, then so does the ROLLBACK.
      const lost = (sql: PgClient.PgClient) => sql.withTransaction(sql`SELECT pg_terminate_backend(pg_backend_pid())`)
      const raw = yield* withSql(url, (sql) => Effect.exit(lost(sql)))
      assert.isTrue(Exit.isFailure(raw) && Cause.hasDies(raw.cause), "@effect/sql makes it a defect")
      const mapped = yield* withSql(url, (sql) => Effect.exit(lostConnectionAsFailure(lost(sql))))
      assert.isTrue(Exit.isFailure(mapped) && !Cause.hasDies(mapped.cause) && Cause.hasFails(mapped.cause))
      const error = pgError(Cause.squash((mapped as Exit.Failure<unknown, unknown>).cause), "saving", pgTarget(url, "R3MES_FLEET_DATABASE_URL") as PgTarget)
      assert.isTrue(isRetryable(error), `${error._tag}: ${error.message}`)
    }))

  it.live("Postgres stopped mid-use: a retryable NetworkError with a hint and no password; back when it is", () =>
    Effect.gen(function*() {
      const url = yield* freshUrl
      const journal = yield* openJournal(url)
      const r = contractRecord("tx-a")
      yield* journal.save(r, contractEvent(r, "created"))
      yield* Effect.promise(() => running().stop())
      const failures = [
        yield* Effect.flip(journal.save(r, contractEvent(r, "attempt"))),
        yield* Effect.flip(journal.get("tx-a")),
        yield* Effect.flip(journal.setMeta("k", "v")),
        // A runner starting while the database is down.
        yield* Effect.flip(Effect.scoped(openJournal(url)))
      ]
      for (const error of failures) {
        assert.strictEqual(error._tag, "NetworkError", error.message)
        assert.isTrue(isRetryable(error))
        assert.include(error.hint ?? "", "R3MES_FLEET_DATABASE_URL")
        assert.include(error.hint ?? "", `127.0.0.1:${running().port}`)
        assert.include(error.message, "journal (postgres://r3mes@127.0.0.1")
        assertNoPassword(error)
      }
      // The pool replaces its dead connections: the same journal works again once Postgres is back.
      yield* Effect.promise(() => running().start())
      yield* journal.save(r, contractEvent(r, "attempt"))
      assert.deepStrictEqual((yield* journal.events("tx-a")).map((e) => e.event), ["created", "attempt"])
    }).pipe(Effect.ensuring(Effect.promise(() => running().start()))), 60_000)
})
