import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Redacted } from "effect"
import { isRetryable, NetworkError, type MiningError } from "../../src/domain/errors.ts"
import { PgNonceLedger } from "../../src/layers/chain/PgNonceLedger.ts"
import { PG_SCHEMA_VERSION, pgMigrations } from "../../src/layers/postgres/pgMigrations.ts"
import { NonceLedger } from "../../src/services/NonceLedger.ts"
import { InMemoryNonceLedger, makeNonceLedgerStore } from "../../src/testing/InMemoryNonceLedger.ts"
import { ACCOUNT, CHAIN, contractReservation, nonceLedgerContract } from "../support/nonceLedgerContract.ts"
import { assertNoPassword as assertPasswordHidden, findPostgres, type PostgresServer, serverForTests, withSql } from "../support/postgres.ts"

describe("NonceLedger contract: InMemoryNonceLedger", () => {
  nonceLedgerContract(it.effect, () =>
    Effect.sync(() => {
      const store = makeNonceLedgerStore()
      return () => InMemoryNonceLedger.layer({ store })
    }))
})

describe("InMemoryNonceLedger fault injection", () => {
  const down = new NetworkError({ message: "nonce ledger: database down", service: "postgres" })

  it.effect("failFirst writes nothing; failAfter writes and loses the answer, and the retry succeeds; calls counted", () =>
    Effect.gen(function*() {
      const ledger = yield* NonceLedger
      const control = yield* InMemoryNonceLedger
      const r = contractReservation("a")
      yield* control.setFaults({ reserve: { failFirst: { times: 1, error: down } } })
      assert.strictEqual((yield* Effect.flip(ledger.reserve(ACCOUNT, CHAIN, 0, r)))._tag, "NetworkError")
      assert.isUndefined(yield* ledger.get(ACCOUNT, CHAIN, 0))
      yield* control.setFaults({ reserve: { failAfter: { times: 1, error: down } } })
      assert.strictEqual((yield* Effect.flip(ledger.reserve(ACCOUNT, CHAIN, 0, r)))._tag, "NetworkError")
      assert.strictEqual((yield* ledger.get(ACCOUNT, CHAIN, 0))?.transactionHash, r.transactionHash)
      yield* ledger.reserve(ACCOUNT, CHAIN, 0, r)
      assert.strictEqual(yield* control.calls("reserve"), 3)
      assert.deepStrictEqual((yield* control.all).map((e) => e.nonce), [0])
    }).pipe(Effect.provide(InMemoryNonceLedger.layer())))

  it.effect("runners sharing a store keep their own faults", () =>
    Effect.gen(function*() {
      const store = makeNonceLedgerStore()
      const build = (layer: Layer.Layer<NonceLedger | InMemoryNonceLedger>) =>
        Layer.build(layer).pipe(Effect.map((c) => [Context.get(c, NonceLedger), Context.get(c, InMemoryNonceLedger)] as const))
      const [a] = yield* build(InMemoryNonceLedger.layer({ store, faults: { next: { alwaysFail: down } } }))
      const [b, controlB] = yield* build(InMemoryNonceLedger.layer({ store }))
      yield* b.reserve(ACCOUNT, CHAIN, 0, contractReservation("b"))
      assert.strictEqual((yield* Effect.flip(a.next(ACCOUNT, CHAIN)))._tag, "NetworkError")
      assert.strictEqual(yield* b.next(ACCOUNT, CHAIN), 1)
      assert.strictEqual((yield* a.get(ACCOUNT, CHAIN, 0))?.holder, "runner-a")
      assert.strictEqual(yield* controlB.calls("next"), 1)
    }))
})

const postgres = findPostgres()
if ("skip" in postgres) console.warn(`PgNonceLedger tests skipped: ${postgres.skip}`)

/** The file's server, once its describe block started it. */
let running: () => PostgresServer = () => {
  throw new Error("no Postgres server: tests run inside the describe block")
}
const freshUrl = Effect.promise(() => running().freshDatabase())

const openLedger = (url: string) =>
  Layer.build(PgNonceLedger.layer({ url })).pipe(Effect.map((c) => Context.get(c, NonceLedger)))

const assertNoPassword = (error: MiningError) => assertPasswordHidden(error, running().password)

describe.skipIf("skip" in postgres)("PgNonceLedger", () => {
  running = serverForTests(postgres)

  // it.live: the driver's timeouts and pool run on the real clock. Each runner is its own pool.
  describe("NonceLedger contract", () => {
    nonceLedgerContract(it.live, () => Effect.map(freshUrl, (url) => () => PgNonceLedger.layer({ url, maxConnections: 2 })))
  })

  it.live("layerClient on a shared pool sees the rows of a ledger with its own pool", () =>
    Effect.gen(function*() {
      const url = yield* freshUrl
      const shared = yield* Layer.build(
        PgNonceLedger.layerClient().pipe(Layer.provide(PgClient.layer({ url: Redacted.make(url) })))
      ).pipe(Effect.map((c) => Context.get(c, NonceLedger)))
      const own = yield* openLedger(url)
      const r = contractReservation("a")
      yield* shared.reserve(ACCOUNT, CHAIN, 0, r)
      assert.strictEqual((yield* own.get(ACCOUNT, CHAIN, 0))?.transactionHash, r.transactionHash)
    }))

  it.live("a fleet database of journal schema 1 (before the ledger) is upgraded in place, its journal rows kept", () =>
    Effect.gen(function*() {
      const url = yield* freshUrl
      yield* withSql(url, (sql) =>
        Effect.gen(function*() {
          for (const statement of pgMigrations[0]!) yield* sql.unsafe(statement)
          yield* sql.unsafe("CREATE TABLE r3mes_journal_schema (version integer NOT NULL)")
          yield* sql`INSERT INTO r3mes_journal_schema (version) VALUES (1)`
          yield* sql`INSERT INTO r3mes_meta (key, value) VALUES ('chain.genesis_hash', '0xaaa')`
        }))
      const ledger = yield* openLedger(url)
      yield* ledger.reserve(ACCOUNT, CHAIN, 0, contractReservation("a"))
      assert.strictEqual(yield* ledger.next(ACCOUNT, CHAIN), 1)
      const [version] = yield* withSql(url, (sql) => sql<{ version: number }>`SELECT version FROM r3mes_journal_schema`)
      assert.strictEqual(version?.version, PG_SCHEMA_VERSION)
      const meta = yield* withSql(url, (sql) => sql<{ value: string }>`SELECT value FROM r3mes_meta`)
      assert.deepStrictEqual(meta.map((m) => m.value), ["0xaaa"])
    }))

  it.live("the primary key is the fence: a second row at a nonce is refused by Postgres itself", () =>
    Effect.gen(function*() {
      const url = yield* freshUrl
      const ledger = yield* openLedger(url)
      yield* ledger.reserve(ACCOUNT, CHAIN, 0, contractReservation("a"))
      const error = yield* withSql(url, (sql) =>
        Effect.flip(sql`INSERT INTO r3mes_nonces (chain_id, account, nonce, transaction_hash, signed_bytes, holder)
          VALUES (${CHAIN}, ${ACCOUNT.toLowerCase()}, 0, '0x00', '\\x00', 'intruder')`))
      assert.include(String((error.reason.cause as { message?: string } | undefined)?.message ?? error.message), "duplicate key")
    }))

  it.live("Postgres stopped mid-use: a retryable NetworkError with a hint and no password; back when it is", () =>
    Effect.gen(function*() {
      const url = yield* freshUrl
      const ledger = yield* openLedger(url)
      const r = contractReservation("a")
      yield* ledger.reserve(ACCOUNT, CHAIN, 0, r)
      yield* Effect.promise(() => running().stop())
      const failures = [
        yield* Effect.flip(ledger.reserve(ACCOUNT, CHAIN, 1, contractReservation("b"))),
        yield* Effect.flip(ledger.replace(ACCOUNT, CHAIN, 0, { transactionHash: r.transactionHash, holder: r.holder }, contractReservation("c"))),
        yield* Effect.flip(ledger.next(ACCOUNT, CHAIN)),
        yield* Effect.flip(ledger.get(ACCOUNT, CHAIN, 0)),
        yield* Effect.flip(ledger.list(ACCOUNT, CHAIN)),
        // A runner starting while the database is down.
        yield* Effect.flip(Effect.scoped(openLedger(url)))
      ]
      for (const error of failures) {
        assert.strictEqual(error._tag, "NetworkError", error.message)
        assert.isTrue(isRetryable(error as MiningError))
        assert.include((error as MiningError).hint ?? "", "R3MES_FLEET_DATABASE_URL")
        assert.include((error as MiningError).hint ?? "", `127.0.0.1:${running().port}`)
        assert.include(error.message, "nonce ledger")
        assertNoPassword(error as MiningError)
      }
      // The pool replaces its dead connections: the same ledger works again, and nothing was written meanwhile.
      yield* Effect.promise(() => running().start())
      assert.strictEqual(yield* ledger.next(ACCOUNT, CHAIN), 1)
      assert.strictEqual((yield* ledger.get(ACCOUNT, CHAIN, 0))?.transactionHash, r.transactionHash)
      yield* ledger.reserve(ACCOUNT, CHAIN, 1, contractReservation("b"))
      assert.strictEqual(yield* ledger.next(ACCOUNT, CHAIN), 2)
    }).pipe(Effect.ensuring(Effect.promise(() => running().start()))), 60_000)
})
