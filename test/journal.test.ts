import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { newRecord, type TransactionRecord } from "../src/domain/TransactionRecord.ts"
import { SqliteJournal } from "../src/layers/journal/SqliteJournal.ts"
import { Journal } from "../src/services/Journal.ts"
import { InMemoryJournal } from "../src/testing/InMemoryJournal.ts"

const freshPath = () => join(mkdtempSync(join(tmpdir(), "r3mes-journal-")), "journal.sqlite")

const record = (id: string, chunkId: number, createdMs: number, key = `k-${chunkId}`): TransactionRecord =>
  newRecord({ transactionId: id, key, roundId: 1n, chunkId, nowMs: createdMs })

const event = (r: TransactionRecord, name = "state_changed") => ({
  at: r.updated_at,
  state: r.state,
  event: name,
  detail: null
})

/** The same behaviour is required of every Journal: the in-memory one users test with and the SQLite one. */
const journalContract = (name: string, makeLayer: () => Layer.Layer<Journal, unknown>) =>
  describe(`Journal contract: ${name}`, () => {
    it.effect("save then get returns the record; unknown ids are undefined", () =>
      Effect.gen(function*() {
        const journal = yield* Journal
        const r = record("tx-a", 0, 1_000)
        yield* journal.save(r, event(r, "created"))
        assert.deepStrictEqual(yield* journal.get("tx-a"), r)
        assert.isUndefined(yield* journal.get("tx-missing"))
      }).pipe(Effect.provide(makeLayer())))

    it.effect("save replaces the record and appends to its history, in order", () =>
      Effect.gen(function*() {
        const journal = yield* Journal
        const r = record("tx-a", 0, 1_000)
        yield* journal.save(r, event(r, "created"))
        const moved = { ...r, state: "training" as const, updated_at: "1970-01-01T00:00:02.000Z" }
        yield* journal.save(moved, event(moved))
        assert.strictEqual((yield* journal.get("tx-a"))?.state, "training")
        const history = yield* journal.events("tx-a")
        assert.deepStrictEqual(history.map((e) => [e.event, e.state]), [["created", "pending"], ["state_changed", "training"]])
        assert.strictEqual(history[0]?.transaction_id, "tx-a")
      }).pipe(Effect.provide(makeLayer())))

    it.effect("findByKey returns the newest transaction of a key", () =>
      Effect.gen(function*() {
        const journal = yield* Journal
        const first = { ...record("tx-1", 0, 1_000, "same"), state: "rolled_back" as const }
        const second = record("tx-2", 0, 2_000, "same")
        yield* journal.save(first, event(first))
        yield* journal.save(second, event(second))
        assert.strictEqual((yield* journal.findByKey("same"))?.transaction_id, "tx-2")
        assert.isUndefined(yield* journal.findByKey("other"))
      }).pipe(Effect.provide(makeLayer())))

    it.effect("list is newest first, filters by state, honours the limit", () =>
      Effect.gen(function*() {
        const journal = yield* Journal
        for (let i = 0; i < 5; i++) {
          const r = { ...record(`tx-${i}`, i, 1_000 * (i + 1)), state: i % 2 === 0 ? "committed" as const : "failed" as const }
          yield* journal.save(r, event(r))
        }
        assert.deepStrictEqual((yield* journal.list({})).map((r) => r.transaction_id), ["tx-4", "tx-3", "tx-2", "tx-1", "tx-0"])
        assert.deepStrictEqual((yield* journal.list({ state: "committed" })).map((r) => r.transaction_id), ["tx-4", "tx-2", "tx-0"])
        assert.deepStrictEqual((yield* journal.list({ state: "failed", limit: 1 })).map((r) => r.transaction_id), ["tx-3"])
      }).pipe(Effect.provide(makeLayer())))
  })

journalContract("InMemoryJournal", () => InMemoryJournal.layer())
journalContract("SqliteJournal", () => SqliteJournal.layer({ path: freshPath() }))

describe("SqliteJournal", () => {
  it.effect("records and their history survive closing and reopening the file", () =>
    Effect.gen(function*() {
      const path = freshPath()
      const r = record("tx-keep", 3, 5_000)
      yield* Effect.scoped(Effect.gen(function*() {
        const journal = yield* Journal
        yield* journal.save(r, event(r, "created"))
      }).pipe(Effect.provide(SqliteJournal.layer({ path }))))
      const reopened = yield* Effect.scoped(Effect.gen(function*() {
        const journal = yield* Journal
        return { record: yield* journal.get("tx-keep"), events: yield* journal.events("tx-keep") }
      }).pipe(Effect.provide(SqliteJournal.layer({ path }))))
      assert.deepStrictEqual(reopened.record, r)
      assert.strictEqual(reopened.events.length, 1)
    }))

  it.effect("a foreign SQLite database is refused with a clear error and left untouched", () =>
    Effect.gen(function*() {
      const path = freshPath()
      const foreign = new DatabaseSync(path)
      foreign.exec("CREATE TABLE photos (id INTEGER); INSERT INTO photos VALUES (1)")
      foreign.close()
      const before = readFileSync(path)
      const error = yield* Effect.flip(Effect.scoped(Layer.build(SqliteJournal.layer({ path }))))
      assert.strictEqual(error._tag, "ValidationError")
      assert.include(error.message, "not an r3mes journal")
      assert.deepStrictEqual(readFileSync(path), before)
    }))

  it.effect("a corrupted journal file is refused with a clear error, never silently replaced", () =>
    Effect.gen(function*() {
      const path = freshPath()
      writeFileSync(path, "this is not a database, it is a text file that happens to be here".repeat(100))
      const error = yield* Effect.flip(Effect.scoped(Layer.build(SqliteJournal.layer({ path }))))
      assert.strictEqual(error._tag, "ValidationError")
      assert.include(error.message, "corrupted or not a database")
      assert.include(readFileSync(path, "utf8"), "this is not a database")
    }))

  it.effect("a journal from a newer miner version is refused", () =>
    Effect.gen(function*() {
      const path = freshPath()
      yield* Effect.scoped(Layer.build(SqliteJournal.layer({ path })))
      const db = new DatabaseSync(path)
      db.exec("PRAGMA user_version = 99")
      db.close()
      const error = yield* Effect.flip(Effect.scoped(Layer.build(SqliteJournal.layer({ path }))))
      assert.include(error.message, "newer than this miner")
    }))
})
