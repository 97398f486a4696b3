import { assert } from "@effect/vitest"
import { Effect, type Layer, type Scope } from "effect"
import type { MiningError } from "../../src/domain/errors.ts"
import { newRecord, type TransactionRecord } from "../../src/domain/TransactionRecord.ts"
import type { TransactionState } from "../../src/domain/TransactionState.ts"
import { Journal, type JournalEvent } from "../../src/services/Journal.ts"

/**
 * The Journal contract, one suite run against every journal (SqliteJournal, and InMemoryJournal that users test
 * their harnesses with): the same answers to the same calls, so a test passing on the fake means something for the
 * real one.
 */

/** What @effect/vitest's `it.effect` / `it.live` are: a test registration for effects needing R. */
type Register<R> = <A, E>(name: string, self: () => Effect.Effect<A, E, R | Scope.Scope>, timeout?: number) => void

export const contractRecord = (
  id: string,
  options: { readonly chunkId?: number; readonly createdMs?: number; readonly key?: string; readonly state?: TransactionState } = {}
): TransactionRecord => {
  const chunkId = options.chunkId ?? 0
  const record = newRecord({
    transactionId: id,
    key: options.key ?? `k-${chunkId}`,
    roundId: 1n,
    chunkId,
    nowMs: options.createdMs ?? 1_000
  })
  return options.state === undefined ? record : { ...record, state: options.state }
}

export const contractEvent = (
  r: TransactionRecord,
  event = "state_changed",
  detail: string | null = null
): Omit<JournalEvent, "transaction_id"> => ({ at: r.updated_at, state: r.state, event, detail })

const ids = (records: ReadonlyArray<TransactionRecord>) => records.map((r) => r.transaction_id)

/** `makeLayer` gives a fresh, empty journal each time it is called. */
export const journalContract = <R>(register: Register<R>, makeLayer: () => Layer.Layer<Journal, MiningError>) => {
  const withJournal = <A>(f: (journal: Journal["Service"]) => Effect.Effect<A, MiningError>) =>
    Journal.use(f).pipe(Effect.provide(makeLayer()))

  register("save then get returns the record exactly as saved; unknown ids are undefined", () =>
    withJournal((journal) =>
      Effect.gen(function*() {
        // Every kind of field: nulls, numbers, booleans, nested objects and arrays.
        const r: TransactionRecord = {
          ...contractRecord("tx-a", { state: "rolled_back" }),
          gradient_hash: `0x${"ab".repeat(32)}`,
          loss_before: 2.302585,
          loss_after: 2.1,
          block_number: 42,
          task_completed: true,
          failed_step: "blockchain_submit",
          error_category: "network",
          error_message: "connection reset \"quoted\" ✓",
          rollback_actions: [{ action: "unpin", target: "QmX", status: "done", error: null, at: "1970-01-01T00:00:01.000Z" }],
          attempts: { training: 1, ipfs_upload: 1, blockchain_submit: 3, task_complete: 0 },
          progress: { training: true, ipfs_upload: true, blockchain_submit: false, task_complete: false },
          step_ms: { training: 12.5, ipfs_upload: 3, blockchain_submit: null, task_complete: null }
        }
        yield* journal.save(r, contractEvent(r, "created"))
        assert.deepStrictEqual(yield* journal.get("tx-a"), r)
        assert.isUndefined(yield* journal.get("tx-missing"))
      })
    ))

  register("save replaces the record and appends its event: the history is every event, in order", () =>
    withJournal((journal) =>
      Effect.gen(function*() {
        const r = contractRecord("tx-a")
        yield* journal.save(r, contractEvent(r, "created", "round 1 chunk 0"))
        const other = contractRecord("tx-b", { chunkId: 1 })
        yield* journal.save(other, contractEvent(other, "created"))
        const moved = { ...r, state: "training" as const, updated_at: "1970-01-01T00:00:02.000Z" }
        yield* journal.save(moved, contractEvent(moved))
        yield* journal.save(moved, contractEvent(moved, "attempt", "training attempt 1"))
        assert.deepStrictEqual(yield* journal.get("tx-a"), moved)
        assert.deepStrictEqual(yield* journal.events("tx-a"), [
          { transaction_id: "tx-a", at: r.updated_at, state: "pending", event: "created", detail: "round 1 chunk 0" },
          { transaction_id: "tx-a", at: moved.updated_at, state: "training", event: "state_changed", detail: null },
          { transaction_id: "tx-a", at: moved.updated_at, state: "training", event: "attempt", detail: "training attempt 1" }
        ])
        assert.deepStrictEqual((yield* journal.events("tx-b")).map((e) => e.event), ["created"])
        assert.deepStrictEqual(yield* journal.events("tx-missing"), [])
      })
    ))

  register("findByKey returns the newest transaction of a key (by created_at, then the latest created)", () =>
    withJournal((journal) =>
      Effect.gen(function*() {
        const newest = contractRecord("tx-new", { createdMs: 3_000, key: "same" })
        const older = contractRecord("tx-old", { createdMs: 1_000, key: "same", state: "rolled_back" })
        // Saved newest first, and the older one saved again last: neither order nor updates make it newer.
        yield* journal.save(newest, contractEvent(newest))
        yield* journal.save(older, contractEvent(older))
        yield* journal.save(older, contractEvent(older, "rollback_action"))
        assert.strictEqual((yield* journal.findByKey("same"))?.transaction_id, "tx-new")
        // Same created_at: the one created later wins.
        const twin = contractRecord("tx-twin", { createdMs: 3_000, key: "same" })
        yield* journal.save(twin, contractEvent(twin))
        assert.strictEqual((yield* journal.findByKey("same"))?.transaction_id, "tx-twin")
        // Saving the earlier twin again keeps its creation rank: an update is not a creation.
        yield* journal.save(newest, contractEvent(newest, "attempt"))
        assert.strictEqual((yield* journal.findByKey("same"))?.transaction_id, "tx-twin")
        assert.deepStrictEqual(ids(yield* journal.list({})), ["tx-twin", "tx-new", "tx-old"])
        assert.isUndefined(yield* journal.findByKey("other"))
      })
    ))

  register("list is newest first, filters by state, then cuts to the limit", () =>
    withJournal((journal) =>
      Effect.gen(function*() {
        assert.deepStrictEqual(yield* journal.list({}), [])
        // Saved out of creation order; tx-2b shares tx-2's created_at and was created after it.
        const order = [3, 0, 4, 2, 1]
        for (const i of order) {
          const r = contractRecord(`tx-${i}`, { chunkId: i, createdMs: 1_000 * (i + 1), state: i % 2 === 0 ? "committed" : "failed" })
          yield* journal.save(r, contractEvent(r))
        }
        const twin = contractRecord("tx-2b", { chunkId: 9, createdMs: 3_000, state: "committed" })
        yield* journal.save(twin, contractEvent(twin))
        assert.deepStrictEqual(ids(yield* journal.list({})), ["tx-4", "tx-3", "tx-2b", "tx-2", "tx-1", "tx-0"])
        assert.deepStrictEqual(ids(yield* journal.list({ state: "committed" })), ["tx-4", "tx-2b", "tx-2", "tx-0"])
        assert.deepStrictEqual(ids(yield* journal.list({ state: "failed", limit: 1 })), ["tx-3"])
        assert.deepStrictEqual(ids(yield* journal.list({ limit: 2 })), ["tx-4", "tx-3"])
        assert.deepStrictEqual(ids(yield* journal.list({ limit: 100 })).length, 6)
        assert.deepStrictEqual(yield* journal.list({ limit: 0 }), [])
        assert.deepStrictEqual(yield* journal.list({ state: "training" }), [])
        // A state change moves a record between filters, not in the order.
        const moved = { ...contractRecord("tx-0", { chunkId: 0, createdMs: 1_000 }), state: "rolled_back" as const }
        yield* journal.save(moved, contractEvent(moved))
        assert.deepStrictEqual(ids(yield* journal.list({ state: "rolled_back" })), ["tx-0"])
        assert.deepStrictEqual(ids(yield* journal.list({})).at(-1), "tx-0")
      })
    ))

  register("list: updatedAfter keeps the records updated after an instant, with the other filters", () =>
    withJournal((journal) =>
      Effect.gen(function*() {
        const at = (ms: number) => new Date(ms).toISOString()
        for (const [i, updatedMs] of [[0, 5_000], [1, 9_000], [2, 7_000]] as const) {
          const r = { ...contractRecord(`tx-${i}`, { chunkId: i, createdMs: 1_000 * (i + 1), state: "committed" }), updated_at: at(updatedMs) }
          yield* journal.save(r, contractEvent(r))
        }
        assert.deepStrictEqual(ids(yield* journal.list({ updatedAfter: at(6_000) })), ["tx-2", "tx-1"])
        assert.deepStrictEqual(ids(yield* journal.list({ state: "committed", updatedAfter: at(7_000) })), ["tx-1"])
        assert.deepStrictEqual(ids(yield* journal.list({ state: "failed", updatedAfter: at(0) })), [])
        assert.deepStrictEqual(ids(yield* journal.list({ updatedAfter: at(0), limit: 1 })), ["tx-2"])
      })
    ))

  register("meta: undefined until set, then the latest value of each key", () =>
    withJournal((journal) =>
      Effect.gen(function*() {
        assert.isUndefined(yield* journal.getMeta("chain.genesis_hash"))
        yield* journal.setMeta("chain.genesis_hash", "0xaaa")
        yield* journal.setMeta("registry.code_hash", "0xbbb")
        yield* journal.setMeta("chain.genesis_hash", "0xccc")
        yield* journal.setMeta("empty", "")
        assert.strictEqual(yield* journal.getMeta("chain.genesis_hash"), "0xccc")
        assert.strictEqual(yield* journal.getMeta("registry.code_hash"), "0xbbb")
        assert.strictEqual(yield* journal.getMeta("empty"), "")
        assert.isUndefined(yield* journal.getMeta("Chain.genesis_hash"))
        // Meta lives beside the transactions, not among them.
        assert.deepStrictEqual(yield* journal.list({}), [])
      })
    ))
}
