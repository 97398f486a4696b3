import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { newRecord, type TransactionRecord } from "../../src/domain/TransactionRecord.ts"
import type { TransactionState } from "../../src/domain/TransactionState.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { Journal, unfinishedKeyTaken } from "../../src/services/Journal.ts"
import { InMemoryJournal } from "../../src/testing/InMemoryJournal.ts"
import { MiningCoordinator } from "../../src/services/MiningCoordinator.ts"
import { TestChain } from "../../src/testing/TestChain.ts"
import { TestGradientStore } from "../../src/testing/TestGradientStore.ts"
import { testTask } from "../../src/testing/TestTaskSource.ts"
import { testEnvelope } from "../../src/testing/TestTrainer.ts"
import { harness } from "../support/harness.ts"

const KEY_PREFIX = "31337:0x5fbdb2315678afecb367f032d93f642f64180aa3:0x70997970c51812dc3a010c7d01b50e0d17dc79c8"

/**
 * Issue 18: runners of a fleet share one journal (DESIGN.md "Fleet"). Each starts, recovers and releases only the
 * transactions it owns; a chunk another runner is working on is not started again.
 */

/** A record another runner (or this one) left in the shared journal, with a pin when `pinned`. */
const leftBy = (owner: string, chunkId: number, state: TransactionState, pinned = false) =>
  Effect.gen(function*() {
    const store = yield* GradientStore
    const cid = pinned ? yield* store.add(testEnvelope(1n, chunkId, 256)) : null
    const record: TransactionRecord = {
      ...newRecord({
        transactionId: `tx-${owner}-${chunkId}`,
        key: `${KEY_PREFIX}:1:${chunkId}`,
        roundId: 1n,
        chunkId,
        nowMs: 0,
        owner
      }),
      state,
      ipfs_hash: cid
    }
    yield* (yield* Journal).save(record, { at: record.updated_at, state, event: "state_changed", detail: null })
    return record
  })

const fleetRunner = harness({ journal: { owner: "runner-a" } })

describe("a fleet's shared journal", () => {
  it.effect("a transaction's record names the runner that started it", () =>
    Effect.gen(function*() {
      const record = yield* (yield* MiningCoordinator).mine(testTask(0))
      assert.strictEqual(record.state, "committed")
      assert.strictEqual(record.owner, "runner-a")
    }).pipe(Effect.provide(fleetRunner)))

  it.effect("a runner alone (no owner) writes records without one", () =>
    Effect.gen(function*() {
      const record = yield* (yield* MiningCoordinator).mine(testTask(0))
      assert.isNull(record.owner)
    }).pipe(Effect.provide(harness())))

  it.effect("recovery takes the runner's own unfinished transactions only; another runner's stay as they are", () =>
    Effect.gen(function*() {
      yield* leftBy("runner-a", 0, "training")
      const theirs = yield* leftBy("runner-b", 1, "blockchain_submit", true)
      const summary = yield* (yield* MiningCoordinator).recoverTransactions()
      assert.strictEqual(summary.recovered, 1)
      const journal = yield* Journal
      assert.strictEqual((yield* journal.get("tx-runner-a-0"))!.state, "failed")
      assert.deepStrictEqual(yield* journal.get(theirs.transaction_id), theirs)
      assert.deepStrictEqual(yield* (yield* TestGradientStore).pinned, [theirs.ipfs_hash!])
    }).pipe(Effect.provide(fleetRunner)))

  it.effect("a chunk another runner is working on is not started again; one it finished with is", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      const theirs = yield* leftBy("runner-b", 3, "training")
      const found = yield* coordinator.createTransaction(testTask(3))
      assert.strictEqual(found.transaction_id, theirs.transaction_id)
      assert.isFalse(yield* coordinator.isRunnable(found.transaction_id))
      assert.strictEqual((yield* coordinator.activeCount), 0)
      // Ended without a submission (rolled back by its runner): the chunk may be mined here.
      yield* leftBy("runner-b", 4, "rolled_back")
      const mined = yield* coordinator.mine(testTask(4))
      assert.strictEqual(mined.state, "committed")
      assert.strictEqual(mined.owner, "runner-a")
      assert.deepStrictEqual((yield* (yield* TestChain).submissions).map((s) => s.chunkId), [4])
    }).pipe(Effect.provide(fleetRunner)))

  it.effect("the fleet's journal refusing a second unfinished transaction of a chunk: not started, nothing journaled", () =>
    Effect.gen(function*() {
      // Another runner started chunk 8 between this runner's look at the journal and its first save.
      const journal = yield* InMemoryJournal
      yield* journal.setFaults({ save: { failFirst: { times: 1, error: unfinishedKeyTaken("k", "runner-b's") } } })
      const coordinator = yield* MiningCoordinator
      const record = yield* coordinator.createTransaction(testTask(8))
      assert.isFalse(yield* coordinator.isRunnable(record.transaction_id))
      assert.strictEqual(yield* coordinator.activeCount, 0)
      assert.deepStrictEqual(yield* journal.all, [])
      assert.strictEqual((yield* coordinator.getStatistics).total_transactions, 0)
      // The next start of it (the other runner gave up) goes ahead.
      assert.strictEqual((yield* coordinator.mine(testTask(8))).state, "committed")
    }).pipe(Effect.provide(fleetRunner)))

  it.effect("a transaction taken over by another runner stops at its next write: nothing undone, nothing sent", () =>
    Effect.gen(function*() {
      // This runner was thought dead (its name's lock free: a partition dropped its session) and its transaction
      // handed to runner-b while it waited to broadcast. Its pin may be runner-b's to use now: never unpinned here.
      const chain = yield* TestChain
      const journal = yield* InMemoryJournal
      const coordinator = yield* MiningCoordinator
      yield* chain.setFaults({ submitGradient: { latency: "10 seconds" } })
      const created = yield* coordinator.createTransaction(testTask(9))
      const fiber = yield* Effect.forkChild(coordinator.executeAtomicMining(created.transaction_id))
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* journal.all)[0]?.state, "blockchain_submit")
      yield* journal.takeOver(created.transaction_id, "runner-b")
      yield* TestClock.adjust("10 seconds")
      const stopped = yield* Fiber.join(fiber)
      assert.strictEqual(stopped.state, "blockchain_submit")
      const theirs = (yield* (yield* Journal).get(created.transaction_id))!
      assert.strictEqual(theirs.owner, "runner-b")
      assert.strictEqual(theirs.state, "blockchain_submit")
      assert.deepStrictEqual(theirs.rollback_actions, [])
      assert.deepStrictEqual(yield* (yield* TestGradientStore).pinned, [theirs.ipfs_hash!])
      assert.deepStrictEqual(yield* chain.transactions, [], "nothing signed was journaled, nothing sent")
      assert.strictEqual(yield* coordinator.activeCount, 0)
    }).pipe(Effect.provide(fleetRunner)))

  it.effect("orphan pins: a runner releases what its own ended transactions left, never another runner's", () =>
    Effect.gen(function*() {
      const ours = yield* leftBy("runner-a", 5, "rolled_back", true)
      const theirsEnded = yield* leftBy("runner-b", 6, "rolled_back", true)
      // Our ended record's CID is also another runner's transaction's, in flight: kept.
      const shared = yield* leftBy("runner-a", 7, "rolled_back", true)
      const store = yield* GradientStore
      const inFlightThere: TransactionRecord = { ...(yield* leftBy("runner-b", 7, "ipfs_upload")), ipfs_hash: shared.ipfs_hash }
      yield* (yield* Journal).save(inFlightThere, { at: "1970-01-01T00:00:01.000Z", state: "ipfs_upload", event: "pin_intent", detail: null })
      yield* store.add(testEnvelope(1n, 7, 256))
      const summary = yield* (yield* MiningCoordinator).recoverTransactions()
      assert.deepStrictEqual(summary.orphan_pins_released, [ours.ipfs_hash!])
      assert.sameMembers([...(yield* (yield* TestGradientStore).pinned)], [theirsEnded.ipfs_hash!, shared.ipfs_hash!])
    }).pipe(Effect.provide(fleetRunner)))
})
