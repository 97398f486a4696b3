import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { ResourceError } from "../../src/domain/errors.ts"
import { SCHEMA_VERSION } from "../../src/layers/journal/database.ts"
import { migrations } from "../../src/layers/journal/migrations.ts"
import { SqliteJournal } from "../../src/layers/journal/SqliteJournal.ts"
import { Journal } from "../../src/services/Journal.ts"
import { InMemoryJournal } from "../../src/testing/InMemoryJournal.ts"
import { contractEvent, contractRecord, journalContract } from "../support/journalContract.ts"

const freshPath = () => join(mkdtempSync(join(tmpdir(), "r3mes-journal-")), "journal.sqlite")

describe("Journal contract: InMemoryJournal", () => {
  journalContract(it.effect, () => InMemoryJournal.layer())
})

describe("Journal contract: SqliteJournal", () => {
  journalContract(it.effect, () => SqliteJournal.layer({ path: freshPath() }))
})

describe("InMemoryJournal fault injection", () => {
  const diskFull = new ResourceError({ message: "journal: disk full", resource: "disk" })

  it.effect("a failing save writes nothing; a failing setMeta neither; calls are counted", () =>
    Effect.gen(function*() {
      const journal = yield* Journal
      const control = yield* InMemoryJournal
      const r = contractRecord("tx-a")
      yield* control.setFaults({ save: { alwaysFail: diskFull }, setMeta: { failFirst: { times: 1, error: diskFull } } })
      assert.strictEqual((yield* Effect.flip(journal.save(r, contractEvent(r)))).message, "journal: disk full")
      assert.isUndefined(yield* journal.get("tx-a"))
      assert.deepStrictEqual(yield* journal.events("tx-a"), [])
      assert.strictEqual((yield* Effect.flip(journal.setMeta("k", "v")))._tag, "ResourceError")
      assert.isUndefined(yield* journal.getMeta("k"))
      yield* journal.setMeta("k", "v")
      assert.strictEqual(yield* journal.getMeta("k"), "v")
      assert.strictEqual(yield* control.calls("save"), 1)
      assert.strictEqual(yield* control.calls("setMeta"), 2)
      assert.strictEqual(yield* control.calls("getMeta"), 2)
    }).pipe(Effect.provide(InMemoryJournal.layer())))

  it.effect("failAfter: the write happened but the caller is told it failed (the lost answer)", () =>
    Effect.gen(function*() {
      const journal = yield* Journal
      const r = contractRecord("tx-a")
      assert.strictEqual((yield* Effect.flip(journal.save(r, contractEvent(r))))._tag, "ResourceError")
      assert.deepStrictEqual(yield* journal.get("tx-a"), r)
      assert.strictEqual((yield* Effect.flip(journal.setMeta("k", "v")))._tag, "ResourceError")
      assert.strictEqual(yield* journal.getMeta("k"), "v")
      const error = yield* Effect.flip(journal.getMeta("k"))
      assert.strictEqual(error.message, "journal: disk full")
    }).pipe(Effect.provide(InMemoryJournal.layer({
      faults: {
        save: { failAfter: { times: 1, error: diskFull } },
        setMeta: { failAfter: { times: 1, error: diskFull } },
        getMeta: { failWhen: (i) => (i === 1 ? diskFull : undefined) }
      }
    }))))

  it.effect("records and meta given up front are there from the first call", () =>
    Effect.gen(function*() {
      const journal = yield* Journal
      assert.strictEqual((yield* journal.get("tx-left"))?.state, "ipfs_upload")
      assert.strictEqual(yield* journal.getMeta("chain.genesis_hash"), "0xold")
    }).pipe(Effect.provide(InMemoryJournal.layer({
      records: [contractRecord("tx-left", { state: "ipfs_upload" })],
      meta: { "chain.genesis_hash": "0xold" }
    }))))
})

const openAndClose = (path: string) => Effect.scoped(Layer.build(SqliteJournal.layer({ path })))

describe("SqliteJournal", () => {
  it.effect("records, their history and meta survive closing and reopening the file", () =>
    Effect.gen(function*() {
      const path = freshPath()
      const r = contractRecord("tx-keep", { chunkId: 3, createdMs: 5_000 })
      yield* Effect.scoped(Effect.gen(function*() {
        const journal = yield* Journal
        yield* journal.save(r, contractEvent(r, "created"))
        yield* journal.setMeta("chain.genesis_hash", "0xfeed")
      }).pipe(Effect.provide(SqliteJournal.layer({ path }))))
      const reopened = yield* Effect.scoped(Effect.gen(function*() {
        const journal = yield* Journal
        return {
          record: yield* journal.get("tx-keep"),
          events: yield* journal.events("tx-keep"),
          meta: yield* journal.getMeta("chain.genesis_hash")
        }
      }).pipe(Effect.provide(SqliteJournal.layer({ path }))))
      assert.deepStrictEqual(reopened.record, r)
      assert.strictEqual(reopened.events.length, 1)
      assert.strictEqual(reopened.meta, "0xfeed")
    }))

  it.effect("a journal of an earlier version (no meta table) is migrated, its records kept", () =>
    Effect.gen(function*() {
      const path = freshPath()
      // What the previous release created: migration 1 only.
      const old = new DatabaseSync(path)
      old.exec("PRAGMA journal_mode = WAL")
      old.exec(migrations[0]!)
      old.exec(`PRAGMA user_version = 1; PRAGMA application_id = ${0x52334d4a}`)
      const r = contractRecord("tx-old")
      old.prepare(
        "INSERT INTO transactions (transaction_id, key, state, created_at, updated_at, round_id, chunk_id, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
      ).run(r.transaction_id, r.key, r.state, r.created_at, r.updated_at, r.round_id, r.chunk_id, JSON.stringify(r))
      old.close()

      // A reader leaves it as it is, and has no meta to show.
      const read = yield* Effect.scoped(Effect.gen(function*() {
        const journal = yield* Journal
        return { record: yield* journal.get("tx-old"), meta: yield* journal.getMeta("x") }
      }).pipe(Effect.provide(SqliteJournal.layer({ path, readOnly: true }))))
      assert.deepStrictEqual(read, { record: r, meta: undefined })

      yield* Effect.scoped(Effect.gen(function*() {
        const journal = yield* Journal
        assert.deepStrictEqual(yield* journal.get("tx-old"), r)
        yield* journal.setMeta("x", "y")
        assert.strictEqual(yield* journal.getMeta("x"), "y")
      }).pipe(Effect.provide(SqliteJournal.layer({ path }))))
      const db = new DatabaseSync(path, { readOnly: true })
      assert.strictEqual((db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version, SCHEMA_VERSION)
      db.close()
    }))

  it.effect("a foreign SQLite database is refused with a clear error and left untouched", () =>
    Effect.gen(function*() {
      const path = freshPath()
      const foreign = new DatabaseSync(path)
      foreign.exec("CREATE TABLE photos (id INTEGER); INSERT INTO photos VALUES (1)")
      foreign.close()
      const before = readFileSync(path)
      const error = yield* Effect.flip(openAndClose(path))
      assert.strictEqual(error._tag, "ValidationError")
      assert.include(error.message, "not an r3mes journal")
      assert.deepStrictEqual(readFileSync(path), before)
    }))

  it.effect("a file that is not a database is refused, untouched, with the hint that loses nothing", () =>
    Effect.gen(function*() {
      const path = freshPath()
      writeFileSync(path, "this is not a database, it is a text file that happens to be here".repeat(100))
      const error = yield* Effect.flip(openAndClose(path))
      assert.strictEqual(error._tag, "ValidationError")
      assert.include(error.message, "corrupted or not a database")
      assert.include(error.hint, "`r3mes-miner journal rebuild`")
      assert.include(error.hint, "left untouched")
      assert.notMatch(error.hint ?? "", /move (the file|it) aside/)
      assert.include(readFileSync(path, "utf8"), "this is not a database")
    }))

  it.effect("a journal from a newer miner version is refused", () =>
    Effect.gen(function*() {
      const path = freshPath()
      yield* openAndClose(path)
      const db = new DatabaseSync(path)
      db.exec("PRAGMA user_version = 99")
      db.close()
      const error = yield* Effect.flip(openAndClose(path))
      assert.include(error.message, "newer than this miner")
    }))
})

describe("SqliteJournal read-only (status, stats, journal check)", () => {
  it.effect("never creates a journal: a missing one is a ResourceError, and the directory stays empty", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "r3mes-journal-ro-"))
      const path = join(dir, "journal.sqlite")
      const error = yield* Effect.flip(Effect.scoped(Layer.build(SqliteJournal.layer({ path, readOnly: true }))))
      assert.strictEqual(error._tag, "ResourceError")
      assert.include(error.message, "no journal at")
      assert.deepStrictEqual(readdirSync(dir), [])
    }))

  it.effect("reads beside the miner's open journal (no lock taken), sees its later writes, refuses to write", () =>
    Effect.gen(function*() {
      const path = freshPath()
      const writer = Context.get(yield* Layer.build(SqliteJournal.layer({ path })), Journal)
      const r = contractRecord("tx-a")
      yield* writer.save(r, contractEvent(r))
      yield* writer.setMeta("m", "1")
      yield* Effect.scoped(Effect.gen(function*() {
        const reader = yield* Journal
        assert.deepStrictEqual(yield* reader.get("tx-a"), r)
        assert.strictEqual(yield* reader.getMeta("m"), "1")
        const later = contractRecord("tx-b", { chunkId: 1, createdMs: 2_000 })
        yield* writer.save(later, contractEvent(later))
        assert.deepStrictEqual((yield* reader.list({})).map((x) => x.transaction_id), ["tx-b", "tx-a"])
        const refused = yield* Effect.flip(reader.save(r, contractEvent(r)))
        assert.include(refused.message, "open read-only")
        assert.strictEqual((yield* Effect.flip(reader.setMeta("m", "2")))._tag, "ValidationError")
      }).pipe(Effect.provide(SqliteJournal.layer({ path, readOnly: true }))))
      assert.strictEqual(yield* writer.getMeta("m"), "1")
      assert.isTrue(existsSync(`${path}.lock`))
    }).pipe(Effect.scoped))
})
