import { mkdtempSync, writeFileSync } from "node:fs"
import { type FileHandle, open } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { newRecord, type TransactionRecord } from "../../src/domain/TransactionRecord.ts"
import { SqliteJournal } from "../../src/layers/journal/SqliteJournal.ts"
import { Journal } from "../../src/services/Journal.ts"

const freshPath = () => join(mkdtempSync(join(tmpdir(), "r3mes-journal-sync-")), "journal.sqlite")

const record = (id: string, chunkId: number): TransactionRecord =>
  newRecord({ transactionId: id, key: `k-${chunkId}`, roundId: 1n, chunkId, nowMs: 1_000 + chunkId })

const event = (r: TransactionRecord) => ({ at: r.updated_at, state: r.state, event: "created", detail: null })

/**
 * Replaces FileHandle#datasync (how the journal syncs its WAL) for the duration of an effect: each call is recorded
 * with the file it syncs and waits for `release()`, or fails when `fail` is set.
 */
const withControlledDatasync = <A, E, R>(
  body: (control: {
    readonly calls: () => ReadonlyArray<string>
    readonly release: () => void
    fail: Error | undefined
  }) => Effect.Effect<A, E, R>
) =>
  Effect.gen(function*() {
    const probePath = join(mkdtempSync(join(tmpdir(), "r3mes-probe-")), "probe")
    writeFileSync(probePath, "")
    const probe = yield* Effect.promise(() => open(probePath, "r"))
    const proto = Object.getPrototypeOf(probe) as { datasync: FileHandle["datasync"] }
    yield* Effect.promise(() => probe.close())
    const original = proto.datasync
    const calls: Array<string> = []
    const waiting: Array<() => void> = []
    const control = {
      calls: () => calls,
      release: () => waiting.splice(0).forEach((resolve) => resolve()),
      fail: undefined as Error | undefined
    }
    return yield* Effect.acquireUseRelease(
      Effect.sync(() => {
        proto.datasync = function(this: FileHandle) {
          calls.push(String((this as unknown as { fd: number }).fd))
          if (control.fail !== undefined) return Promise.reject(control.fail)
          return new Promise<void>((resolve) => waiting.push(resolve)).then(() => original.call(this))
        }
      }),
      () => body(control),
      () =>
        Effect.sync(() => {
          proto.datasync = original
          control.release()
        })
    )
  })

/** Polls (real time) until `condition` holds. */
const eventually = (condition: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 500 && !condition(); i++) yield* Effect.sleep("2 millis")
    assert.isTrue(condition(), "condition not reached")
  })

describe("SqliteJournal durability", () => {
  it.live("a save returns only after a sync of the WAL that started after its commit", () =>
    withControlledDatasync((control) =>
      Effect.gen(function*() {
        const journal = yield* Journal
        const r = record("tx-a", 0)
        const saving = yield* Effect.forkChild(journal.save(r, event(r)))
        yield* eventually(() => control.calls().length === 1)
        assert.isUndefined(saving.pollUnsafe(), "the save waits for the sync")
        // Committed already: readers see it while it is being synced.
        assert.deepStrictEqual(yield* journal.get("tx-a"), r)
        control.release()
        yield* Fiber.join(saving)
        assert.strictEqual(control.calls().length, 1)
      }).pipe(Effect.provide(SqliteJournal.layer({ path: freshPath() })))
    ))

  it.live("concurrent saves share syncs: one under way, one more for every commit made meanwhile", () =>
    withControlledDatasync((control) =>
      Effect.gen(function*() {
        const journal = yield* Journal
        const first = record("tx-0", 0)
        const firstSave = yield* Effect.forkChild(journal.save(first, event(first)))
        yield* eventually(() => control.calls().length === 1)
        // Committed while the first sync runs: that sync may have missed them, so they wait for the next one.
        const others = Array.from({ length: 20 }, (_, i) => record(`tx-${i + 1}`, i + 1))
        const otherSaves = yield* Effect.forkChild(
          Effect.forEach(others, (r) => journal.save(r, event(r)), { concurrency: "unbounded", discard: true })
        )
        // All committed (readable), and given time to reach their sync.
        for (let i = 0; i < 500 && (yield* journal.list({})).length < 21; i++) yield* Effect.sleep("2 millis")
        yield* Effect.sleep("50 millis")
        assert.strictEqual(control.calls().length, 1)
        control.release()
        yield* Fiber.join(firstSave)
        yield* eventually(() => control.calls().length === 2)
        assert.isUndefined(otherSaves.pollUnsafe(), "the later commits wait for the second sync")
        control.release()
        yield* Fiber.join(otherSaves)
        assert.strictEqual(control.calls().length, 2, "21 saves, 2 syncs")
        assert.strictEqual((yield* journal.list({})).length, 21)
      }).pipe(Effect.provide(SqliteJournal.layer({ path: freshPath() })))
    ))

  it.live("a failed sync fails the save with a typed error", () =>
    withControlledDatasync((control) =>
      Effect.gen(function*() {
        const journal = yield* Journal
        control.fail = Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" })
        const r = record("tx-a", 0)
        const error = yield* Effect.flip(journal.save(r, event(r)))
        assert.include(error.message, "syncing tx-a to disk")
        control.fail = undefined
        const again = yield* Effect.forkChild(journal.save(r, event(r)))
        yield* eventually(() => control.calls().length === 2)
        control.release()
        yield* Fiber.join(again)
      }).pipe(Effect.provide(SqliteJournal.layer({ path: freshPath() })))
    ))

  it.live("setMeta, like save, returns only after a sync of the WAL that started after its commit", () =>
    withControlledDatasync((control) =>
      Effect.gen(function*() {
        const journal = yield* Journal
        const setting = yield* Effect.forkChild(journal.setMeta("chain.genesis_hash", "0xfeed"))
        yield* eventually(() => control.calls().length === 1)
        assert.isUndefined(setting.pollUnsafe(), "setMeta waits for the sync")
        assert.strictEqual(yield* journal.getMeta("chain.genesis_hash"), "0xfeed")
        control.release()
        yield* Fiber.join(setting)
        control.fail = Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" })
        const error = yield* Effect.flip(journal.setMeta("chain.genesis_hash", "0xbeef"))
        assert.include(error.message, "syncing meta chain.genesis_hash to disk")
      }).pipe(Effect.provide(SqliteJournal.layer({ path: freshPath() })))
    ))
})
