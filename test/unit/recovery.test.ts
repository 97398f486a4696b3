import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { ValidationError } from "../../src/domain/errors.ts"
import { encodeSubmitIntent, PIN_INTENT, SUBMIT_INTENT } from "../../src/domain/intents.ts"
import { type SignedTransaction, Submission, Task } from "../../src/domain/mining.ts"
import { newRecord, type TransactionRecord } from "../../src/domain/TransactionRecord.ts"
import type { TransactionState } from "../../src/domain/TransactionState.ts"
import { Chain } from "../../src/services/Chain.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { Journal } from "../../src/services/Journal.ts"
import { MiningCoordinator } from "../../src/services/MiningCoordinator.ts"
import { TestChain } from "../../src/testing/TestChain.ts"
import { TestGradientStore } from "../../src/testing/TestGradientStore.ts"
import { TestTaskSource } from "../../src/testing/TestTaskSource.ts"
import { sha256Hex, testEnvelope } from "../../src/testing/TestTrainer.ts"
import { harness } from "../support/harness.ts"

const KEY_PREFIX = "31337:0x5fbdb2315678afecb367f032d93f642f64180aa3:0x70997970c51812dc3a010c7d01b50e0d17dc79c8"

/**
 * Writes what a miner that crashed at `state` left behind, through the ports a real run uses: the journal record
 * and its intents, and optionally the pin and the chain's submission.
 */
const crashedAt = (options: {
  readonly chunkId: number
  readonly state: TransactionState
  readonly pinned?: boolean
  readonly signed?: boolean
  readonly broadcast?: boolean
}) =>
  Effect.gen(function*() {
    const journal = yield* Journal
    const store = yield* GradientStore
    const chain = yield* Chain
    const envelope = testEnvelope(1n, options.chunkId, 512)
    const gradientHash = sha256Hex(envelope)
    const cid = yield* store.computeCid(envelope)
    let record: TransactionRecord = {
      ...newRecord({
        transactionId: `tx-crashed-${options.chunkId}`,
        key: `${KEY_PREFIX}:1:${options.chunkId}`,
        roundId: 1n,
        chunkId: options.chunkId,
        nowMs: 0
      }),
      state: options.state
    }
    const save = (event: string, detail: string | null = null) =>
      journal.save(record, { at: record.updated_at, state: record.state, event, detail })
    if (options.state === "pending" || options.state === "training") {
      yield* save("state_changed")
      return record
    }
    record = { ...record, gradient_hash: gradientHash, ipfs_hash: cid }
    yield* save(PIN_INTENT, cid)
    if (options.pinned === true) yield* store.add(envelope)
    if (options.signed === true) {
      record = { ...record, pow_nonce: "7" }
      const submission = new Submission({ roundId: 1n, chunkId: options.chunkId, cid, gradientHash, powNonce: 7n })
      let signed: SignedTransaction | undefined
      // The test chain signs deterministically: capture the signed transaction without broadcasting it…
      yield* chain.submitGradient(submission, (s) => {
        signed = s
        return Effect.fail(new ValidationError({ message: "crash before broadcast" }))
      }).pipe(Effect.ignore)
      record = { ...record, blockchain_tx_hash: signed!.hash }
      yield* save(SUBMIT_INTENT, encodeSubmitIntent(signed!))
      // …and broadcast it when the crash came after the broadcast.
      if (options.broadcast === true) yield* chain.submitGradient(submission)
    }
    return record
  })

describe("crash recovery", () => {
  it.effect("a transaction interrupted in training ends failed; nothing was uploaded", () =>
    Effect.gen(function*() {
      yield* crashedAt({ chunkId: 0, state: "training" })
      const coordinator = yield* MiningCoordinator
      const summary = yield* coordinator.recoverTransactions()
      assert.strictEqual(summary.failed, 1)
      const record = yield* (yield* Journal).get("tx-crashed-0")
      assert.strictEqual(record?.state, "failed")
      assert.strictEqual(record?.failed_step, "training")
      assert.strictEqual((yield* (yield* TestChain).submissions).length, 0)
    }).pipe(Effect.provide(harness())))

  it.effect("pinned but not submitted: rolled forward without retraining (PoW, one submission, committed)", () =>
    Effect.gen(function*() {
      yield* crashedAt({ chunkId: 1, state: "ipfs_upload", pinned: true })
      const coordinator = yield* MiningCoordinator
      const summary = yield* coordinator.recoverTransactions()
      assert.strictEqual(summary.committed, 1)
      const record = yield* (yield* Journal).get("tx-crashed-1")
      assert.strictEqual(record?.state, "committed")
      assert.isTrue(record?.task_completed)
      const submissions = yield* (yield* TestChain).submissions
      assert.strictEqual(submissions.length, 1)
      assert.strictEqual(submissions[0]?.cid, record?.ipfs_hash)
      assert.deepStrictEqual(yield* (yield* TestGradientStore).pinned, [record!.ipfs_hash!])
    }).pipe(Effect.provide(harness())))

  it.effect("pin intent journaled but the pin never happened: rolled back, nothing submitted", () =>
    Effect.gen(function*() {
      yield* crashedAt({ chunkId: 2, state: "ipfs_upload", pinned: false })
      const summary = yield* (yield* MiningCoordinator).recoverTransactions()
      assert.strictEqual(summary.rolled_back, 1)
      const record = yield* (yield* Journal).get("tx-crashed-2")
      assert.strictEqual(record?.state, "rolled_back")
      assert.strictEqual(record?.rollback_actions[0]?.action, "unpin")
      assert.strictEqual((yield* (yield* TestChain).submissions).length, 0)
    }).pipe(Effect.provide(harness())))

  it.effect("signed and broadcast before the crash: committed from the receipt, never submitted twice", () =>
    Effect.gen(function*() {
      const before = yield* crashedAt({ chunkId: 3, state: "blockchain_submit", pinned: true, signed: true, broadcast: true })
      const chain = yield* TestChain
      const callsBefore = yield* chain.calls("submitGradient")
      const summary = yield* (yield* MiningCoordinator).recoverTransactions()
      assert.strictEqual(summary.committed, 1)
      const record = yield* (yield* Journal).get("tx-crashed-3")
      assert.strictEqual(record?.state, "committed")
      assert.strictEqual(record?.blockchain_tx_hash, before.blockchain_tx_hash)
      assert.strictEqual((yield* chain.submissions).length, 1)
      assert.strictEqual(yield* chain.calls("submitGradient"), callsBefore)
      assert.isAtLeast(yield* chain.calls("transactionStatus"), 1)
      assert.strictEqual((yield* chain.transactions).length, 1, "the journaled transaction only")
    }).pipe(Effect.provide(harness())))

  it.effect("signed but not broadcast: the same signed transaction is sent, once", () =>
    Effect.gen(function*() {
      const before = yield* crashedAt({ chunkId: 4, state: "blockchain_submit", pinned: true, signed: true })
      const chain = yield* TestChain
      assert.strictEqual((yield* chain.submissions).length, 0)
      yield* (yield* MiningCoordinator).recoverTransactions()
      const record = yield* (yield* Journal).get("tx-crashed-4")
      assert.strictEqual(record?.state, "committed")
      const submissions = yield* chain.submissions
      assert.strictEqual(submissions.length, 1)
      assert.strictEqual<string | null | undefined>(submissions[0]?.receipt.txHash, before.blockchain_tx_hash)
      assert.strictEqual(submissions[0]?.powNonce, 7n)
    }).pipe(Effect.provide(harness())))

  it.effect("a transaction that can no longer go forward (round past its deadline) is compensated", () =>
    Effect.gen(function*() {
      yield* crashedAt({ chunkId: 5, state: "ipfs_upload", pinned: true })
      yield* TestClock.adjust("2 hours")
      const summary = yield* (yield* MiningCoordinator).recoverTransactions()
      assert.strictEqual(summary.rolled_back, 1)
      const record = yield* (yield* Journal).get("tx-crashed-5")
      assert.strictEqual(record?.state, "rolled_back")
      assert.strictEqual(record?.error_category, "chain_revert")
      assert.include(record?.error_message ?? "", "RoundExpired")
      assert.deepStrictEqual(yield* (yield* TestGradientStore).pinned, [])
    }).pipe(Effect.provide(harness({ chain: { rounds: [{ roundId: 1n, chunkCount: 100, difficulty: 16, deadline: 3600 }] } }))))

  it.effect("crashed after the submission, in task_complete: completed and committed", () =>
    Effect.gen(function*() {
      yield* crashedAt({ chunkId: 6, state: "task_complete", pinned: true, signed: true, broadcast: true })
      yield* (yield* MiningCoordinator).recoverTransactions()
      const record = yield* (yield* Journal).get("tx-crashed-6")
      assert.strictEqual(record?.state, "committed")
      assert.isTrue(record?.task_completed)
      assert.strictEqual((yield* (yield* TestTaskSource).completed).length, 1)
    }).pipe(Effect.provide(harness())))

  it.effect("orphan pins: released for ended transactions, committed pins kept, unknown pins only when ours", () =>
    Effect.gen(function*() {
      const journal = yield* Journal
      const store = yield* GradientStore
      const coordinator = yield* MiningCoordinator
      const committed = yield* coordinator.mine(
        new Task({ roundId: 1n, chunkId: 10, modelCid: "", spec: "{}", difficulty: 16, leaseExpiry: 0, deadline: 0 })
      )
      // A rolled-back transaction whose unpin failed left its pin behind.
      const leftover = testEnvelope(1n, 11, 256)
      const leftoverCid = yield* store.add(leftover)
      const ended: TransactionRecord = {
        ...newRecord({ transactionId: "tx-ended", key: `${KEY_PREFIX}:1:11`, roundId: 1n, chunkId: 11, nowMs: 0 }),
        state: "rolled_back",
        ipfs_hash: leftoverCid
      }
      yield* journal.save(ended, { at: ended.updated_at, state: "rolled_back", event: "state_changed", detail: null })
      const stranger = yield* store.add(new TextEncoder().encode("someone else's file"))

      const first = yield* coordinator.recoverTransactions()
      assert.deepStrictEqual(first.orphan_pins_released, [leftoverCid])
      const pinned = yield* (yield* TestGradientStore).pinned
      assert.includeMembers([...pinned], [committed.ipfs_hash!, stranger])
      const second = yield* coordinator.recoverTransactions({ releaseUnknownPins: true })
      assert.deepStrictEqual(second.orphan_pins_released, [stranger])
      assert.deepStrictEqual(yield* (yield* TestGradientStore).pinned, [committed.ipfs_hash!])
      const stats = yield* coordinator.getStatistics
      assert.strictEqual(stats.recovery.orphan_pins_released, 2)
      assert.strictEqual(stats.recovery.runs, 2)
    }).pipe(Effect.provide(harness())))
})
