import { testTask } from "../../src/testing/TestTaskSource.ts"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Metric, Option } from "effect"
import { TestClock } from "effect/testing"
import { classify } from "../../src/domain/classify.ts"
import { AuthenticationError, ChainRevertError, NetworkError, ResourceError, ValidationError } from "../../src/domain/errors.ts"
import { Submission, Task } from "../../src/domain/mining.ts"
import type { TransactionRecord } from "../../src/domain/TransactionRecord.ts"
import { Chain } from "../../src/services/Chain.ts"
import { Journal } from "../../src/services/Journal.ts"
import { MiningCoordinator } from "../../src/services/MiningCoordinator.ts"
import { activeTransactions, errorsTotal, MiningStats, stepDuration, transactionsTotal } from "../../src/services/MiningStats.ts"
import { InMemoryJournal } from "../../src/testing/InMemoryJournal.ts"
import { TestChain } from "../../src/testing/TestChain.ts"
import { TestGradientStore } from "../../src/testing/TestGradientStore.ts"
import { TestPowSolver } from "../../src/testing/TestPowSolver.ts"
import { TestTaskSource } from "../../src/testing/TestTaskSource.ts"
import { sha256Hex, TestTrainer, testEnvelope } from "../../src/testing/TestTrainer.ts"
import { harness } from "../support/harness.ts"

const task = (chunkId: number, roundId = 1n, difficulty = 16) => testTask(chunkId, { roundId, difficulty })

/** Runs a transaction in a fiber and lets virtual time pass so retry back-offs elapse. */
const mineWithTime = (t: Task, advance: Duration.Input = "10 minutes") =>
  Effect.gen(function*() {
    const coordinator = yield* MiningCoordinator
    const fiber = yield* Effect.forkChild(coordinator.mine(t))
    yield* TestClock.adjust(advance)
    return yield* Fiber.join(fiber)
  })

const network = new NetworkError({ message: "connect ECONNREFUSED 127.0.0.1:5001" })

describe("MiningCoordinator", () => {
  it.effect("createTransaction registers a pending, journaled transaction with its idempotency key", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      const record = yield* coordinator.createTransaction(task(3, 7n))
      assert.strictEqual(record.state, "pending")
      assert.strictEqual(record.round_id, "7")
      assert.strictEqual(record.chunk_id, 3)
      assert.strictEqual(
        record.key,
        "31337:0x5fbdb2315678afecb367f032d93f642f64180aa3:0x70997970c51812dc3a010c7d01b50e0d17dc79c8:7:3"
      )
      assert.deepStrictEqual(record.progress, {
        training: false,
        ipfs_upload: false,
        blockchain_submit: false,
        task_complete: false
      })
      const journal = yield* Journal
      const stored = yield* journal.get(record.transaction_id)
      assert.strictEqual(stored?.state, "pending")
      assert.strictEqual(yield* coordinator.activeCount, 1)
      // The same chunk while in flight is the same transaction, not a second one.
      const again = yield* coordinator.createTransaction(task(3, 7n))
      assert.strictEqual(again.transaction_id, record.transaction_id)
      assert.strictEqual(yield* coordinator.activeCount, 1)
    }).pipe(Effect.provide(harness())))

  it.effect("successful atomic mining commits: trained, pinned, submitted with PoW, task completed", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      const record = yield* coordinator.mine(task(0, 1n, 12))
      assert.strictEqual(record.state, "committed")
      assert.isTrue(record.task_completed)
      assert.deepStrictEqual(record.progress, {
        training: true,
        ipfs_upload: true,
        blockchain_submit: true,
        task_complete: true
      })
      assert.deepStrictEqual(record.attempts, { training: 1, ipfs_upload: 1, blockchain_submit: 1, task_complete: 1 })
      for (const ms of Object.values(record.step_ms)) assert.isNotNull(ms)
      assert.isNull(record.error_category)
      assert.deepStrictEqual(record.rollback_actions, [])

      const store = yield* TestGradientStore
      assert.deepStrictEqual(yield* store.pinned, [record.ipfs_hash!])
      const chain = yield* TestChain
      const [submission] = yield* chain.submissions
      assert.strictEqual(submission?.cid, record.ipfs_hash)
      assert.strictEqual(submission?.gradientHash, record.gradient_hash)
      assert.strictEqual(submission?.receipt.txHash, record.blockchain_tx_hash)
      assert.strictEqual(String(submission?.powNonce), record.pow_nonce)
      // The miner works at max(round difficulty, configured difficulty).
      const [powInput] = yield* (yield* TestPowSolver).inputs
      assert.strictEqual(powInput?.difficulty, 16)
      assert.strictEqual(powInput?.cid, record.ipfs_hash)
      const completed = yield* (yield* TestTaskSource).completed
      assert.strictEqual(completed.length, 1)

      const journal = yield* Journal
      assert.strictEqual((yield* journal.get(record.transaction_id))?.state, "committed")
      const history = (yield* journal.events(record.transaction_id)).map((e) => e.state)
      assert.deepStrictEqual(
        history.filter((s, i) => s !== history[i - 1]),
        ["pending", "training", "ipfs_upload", "blockchain_submit", "task_complete", "committed"]
      )
      assert.strictEqual(yield* coordinator.activeCount, 0)
    }).pipe(Effect.provide(harness())))

  it.effect("the CID is journaled as an intent before the pin happens", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      const record = yield* coordinator.mine(task(0))
      const events = yield* (yield* Journal).events(record.transaction_id)
      const intent = events.findIndex((e) => e.event === "pin_intent")
      assert.isTrue(intent > 0)
      assert.strictEqual(events[intent]?.detail, record.ipfs_hash)
      // The store saw computeCid (nothing stored) before add.
      const store = yield* TestGradientStore
      assert.strictEqual(yield* store.calls("computeCid"), 1)
      assert.deepStrictEqual((yield* store.operations).map((o) => o.op), ["add"])
    }).pipe(Effect.provide(harness())))

  it.effect("IPFS failure rolls back after retrying: nothing stays pinned", () =>
    Effect.gen(function*() {
      const record = yield* mineWithTime(task(0))
      assert.strictEqual(record.state, "rolled_back")
      assert.strictEqual(record.failed_step, "ipfs_upload")
      assert.strictEqual(record.error_category, "network")
      assert.strictEqual(record.attempts.ipfs_upload, 4) // 1 + R3MES_MAX_RETRIES (3)
      assert.isFalse(record.progress.ipfs_upload)
      const store = yield* TestGradientStore
      assert.deepStrictEqual(yield* store.pinned, [])
      assert.strictEqual(record.rollback_actions.length, 1)
      assert.strictEqual(record.rollback_actions[0]?.action, "unpin")
      assert.strictEqual(record.rollback_actions[0]?.status, "done")
      assert.strictEqual((yield* (yield* TestChain).submissions).length, 0)
    }).pipe(Effect.provide(harness({ store: { faults: { add: { alwaysFail: network } } } }))))

  it.effect("blockchain failure (insufficient funds) is not retried, rolls back and really unpins", () =>
    Effect.gen(function*() {
      const record = yield* mineWithTime(task(0))
      assert.strictEqual(record.state, "rolled_back")
      assert.strictEqual(record.failed_step, "blockchain_submit")
      assert.strictEqual(record.error_category, "authentication")
      assert.strictEqual(record.attempts.blockchain_submit, 1)
      const store = yield* TestGradientStore
      assert.deepStrictEqual(yield* store.pinned, [])
      assert.deepStrictEqual((yield* store.operations).map((o) => o.op), ["add", "unpin"])
      assert.strictEqual((yield* store.operations)[1]?.cid, record.ipfs_hash)
      assert.deepStrictEqual(record.rollback_actions.map((a) => [a.action, a.target, a.status]), [[
        "unpin",
        record.ipfs_hash,
        "done"
      ]])
    }).pipe(Effect.provide(harness({
      chain: {
        faults: {
          submitGradient: {
            alwaysFail: classify(new Error("insufficient funds for gas * price + value"))
          }
        }
      }
    }))))

  it.effect("task completion returning false is non-critical: committed with task_completed false", () =>
    Effect.gen(function*() {
      const record = yield* (yield* MiningCoordinator).mine(task(0))
      assert.strictEqual(record.state, "committed")
      assert.isFalse(record.task_completed)
      assert.isTrue(record.progress.task_complete)
      assert.strictEqual((yield* (yield* TestGradientStore).pinned).length, 1)
    }).pipe(Effect.provide(harness({ tasks: { completeResult: false } }))))

  it.effect("task completion raising is non-critical: committed, error recorded, submission kept", () =>
    Effect.gen(function*() {
      const record = yield* mineWithTime(task(0))
      assert.strictEqual(record.state, "committed")
      assert.isFalse(record.task_completed)
      assert.strictEqual(record.error_category, "validation")
      assert.strictEqual(record.attempts.task_complete, 1)
      assert.deepStrictEqual(record.rollback_actions, [])
      assert.strictEqual((yield* (yield* TestGradientStore).pinned).length, 1)
      assert.strictEqual((yield* (yield* TestChain).submissions).length, 1)
    }).pipe(Effect.provide(harness({
      tasks: { faults: { complete: { alwaysFail: new ValidationError({ message: "task server said no" }) } } }
    }))))

  it.effect("training failure ends in failed (nothing to undo) and is not retried when not retryable", () =>
    Effect.gen(function*() {
      const record = yield* mineWithTime(task(0))
      assert.strictEqual(record.state, "failed")
      assert.strictEqual(record.failed_step, "training")
      assert.strictEqual(record.error_category, "resource")
      assert.strictEqual(record.attempts.training, 1)
      assert.deepStrictEqual(record.rollback_actions, [])
      assert.strictEqual(yield* (yield* TestGradientStore).calls("computeCid"), 0)
    }).pipe(Effect.provide(harness({
      trainer: { faults: { train: { alwaysFail: new ResourceError({ message: "ONNX out of memory" }) } } }
    }))))

  it.effect("retry count and delays follow the exponential schedule (jitter 0.8..1.2, capped)", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      const store = yield* TestGradientStore
      const fiber = yield* Effect.forkChild(coordinator.mine(task(0)))
      yield* Effect.yieldNow
      assert.strictEqual(yield* store.calls("add"), 1)
      // Retry 1 waits 100 ms × [0.8, 1.2].
      yield* TestClock.adjust("79 millis")
      assert.strictEqual(yield* store.calls("add"), 1)
      yield* TestClock.adjust("42 millis")
      assert.strictEqual(yield* store.calls("add"), 2)
      // Retry 2 would wait 100 ms × 10 = 1 s (≥ 800 ms jittered) but is capped at the 300 ms max delay: the call
      // made at t2 ∈ [80, 121] ms is retried at exactly t2 + 300 ∈ [380, 421] ms.
      yield* TestClock.adjust("258 millis")
      assert.strictEqual(yield* store.calls("add"), 2)
      yield* TestClock.adjust("42 millis")
      assert.strictEqual(yield* store.calls("add"), 3)
      const record = yield* Fiber.join(fiber)
      assert.strictEqual(record.state, "committed")
      assert.strictEqual(record.attempts.ipfs_upload, 3)
      const stats = yield* coordinator.getStatistics
      assert.strictEqual(stats.retries.ipfs_upload, 2)
      assert.strictEqual(stats.retries.total, 2)
    }).pipe(Effect.provide(harness({
      config: { retryInitialDelay: Duration.millis(100), retryBackoffFactor: 10, retryMaxDelay: Duration.millis(300) },
      store: { faults: { add: { failFirst: { times: 2, error: network } } } }
    }))))

  it.effect("non-retryable errors are not retried, retryable ones stop after R3MES_MAX_RETRIES", () =>
    Effect.gen(function*() {
      const chain = yield* TestChain
      const first = yield* mineWithTime(task(0))
      assert.strictEqual(first.attempts.blockchain_submit, 1)
      assert.strictEqual(first.error_category, "chain_revert")
      yield* chain.setFaults({ submitGradient: { alwaysFail: network } })
      const second = yield* mineWithTime(task(1))
      assert.strictEqual(second.attempts.blockchain_submit, 6) // 1 + 5 retries
      assert.strictEqual(second.state, "rolled_back")
    }).pipe(Effect.provide(harness({
      config: { maxRetries: 5, circuitBreakerThreshold: 100 },
      chain: {
        faults: {
          submitGradient: {
            alwaysFail: new ChainRevertError({ message: "not enough work", errorName: "InsufficientWork", args: [] })
          }
        }
      }
    }))))

  it.effect("the transaction timeout rolls back a step that hangs", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      const fiber = yield* Effect.forkChild(coordinator.mine(task(0)))
      yield* TestClock.adjust("4 seconds")
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust("2 seconds")
      const record = yield* Fiber.join(fiber)
      assert.strictEqual(record.state, "rolled_back")
      assert.strictEqual(record.failed_step, "blockchain_submit")
      assert.strictEqual(record.error_category, "timeout")
      assert.deepStrictEqual(yield* (yield* TestGradientStore).pinned, [])
    }).pipe(Effect.provide(harness({
      config: { transactionTimeout: Duration.seconds(5) },
      chain: { faults: { submitGradient: { hang: true } } }
    }))))

  it.effect("interruption mid-step runs the compensations and journals rolled_back", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      const created = yield* coordinator.createTransaction(task(0))
      const fiber = yield* Effect.forkChild(coordinator.executeAtomicMining(created.transaction_id))
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* (yield* TestGradientStore).pinned).length, 1)
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(yield* (yield* TestGradientStore).pinned, [])
      const stored = yield* (yield* Journal).get(created.transaction_id)
      assert.strictEqual(stored?.state, "rolled_back")
      assert.strictEqual(stored?.rollback_actions[0]?.status, "done")
      assert.strictEqual(yield* coordinator.activeCount, 0)
    }).pipe(Effect.provide(harness({ chain: { faults: { submitGradient: { hang: true } } } }))))

  it.effect("a compensation that fails is recorded with its cause, never swallowed", () =>
    Effect.gen(function*() {
      const record = yield* mineWithTime(task(0))
      assert.strictEqual(record.state, "rolled_back")
      const [action] = record.rollback_actions
      assert.strictEqual(action?.status, "failed")
      assert.include(action?.error ?? "", "pin API refused")
      const stats = yield* (yield* MiningCoordinator).getStatistics
      assert.strictEqual(stats.rollbacks.compensations_failed, 1)
    }).pipe(Effect.provide(harness({
      store: { faults: { unpin: { alwaysFail: new AuthenticationError({ message: "pin API refused: 403" }) } } },
      chain: { faults: { submitGradient: { alwaysFail: new AuthenticationError({ message: "bad signature" }) } } }
    }))))

  it.effect("a gradient over the size limit is a ResourceError before anything is uploaded", () =>
    Effect.gen(function*() {
      const record = yield* mineWithTime(task(0))
      assert.strictEqual(record.state, "rolled_back")
      assert.strictEqual(record.error_category, "resource")
      assert.include(record.error_message ?? "", "over the 1 MB limit")
      const store = yield* TestGradientStore
      assert.strictEqual(yield* store.calls("computeCid"), 0)
      assert.strictEqual(yield* store.calls("add"), 0)
    }).pipe(Effect.provide(harness({ config: { maxGradientSizeMb: 1 }, trainer: { envelopeBytes: 1024 * 1024 + 1 } }))))

  it.effect("the answer of the broadcast lost after the chain acted: the chain is asked, nothing is signed twice", () =>
    Effect.gen(function*() {
      const record = yield* mineWithTime(task(0))
      assert.strictEqual(record.state, "committed")
      assert.strictEqual(record.attempts.blockchain_submit, 1)
      const chain = yield* TestChain
      const submissions = yield* chain.submissions
      assert.strictEqual(submissions.length, 1)
      assert.strictEqual((yield* chain.transactions).length, 1)
      assert.strictEqual(record.blockchain_tx_hash, submissions[0]?.receipt.txHash)
      assert.strictEqual(record.block_hash, submissions[0]?.receipt.blockHash)
      assert.strictEqual(record.rollback_actions.length, 0)
      assert.strictEqual((yield* (yield* TestGradientStore).pinned).length, 1)
    }).pipe(Effect.provide(harness({
      chain: { faults: { submitGradient: { failAfter: { times: 1, error: network } } } }
    }))))

  it.effect("AlreadySubmitted of our own chunk with the same gradient (found at simulation) is success", () =>
    Effect.gen(function*() {
      // The chain holds our submission of this very gradient from a transaction the journal never saw.
      const chain = yield* Chain
      const gradientHash = sha256Hex(testEnvelope(1n, 0, 1024))
      const earlier = yield* chain.submitGradient(
        new Submission({ roundId: 1n, chunkId: 0, cid: "QmEarlier", gradientHash, powNonce: 1n })
      )
      const record = yield* (yield* MiningCoordinator).mine(task(0))
      assert.strictEqual(record.state, "committed")
      assert.strictEqual(record.blockchain_tx_hash, earlier.txHash)
      assert.strictEqual((yield* (yield* TestChain).transactions).length, 1, "nothing signed for it")
      // Another gradient for the same chunk is a real AlreadySubmitted: rolled back.
      const other = yield* (yield* MiningCoordinator).mine(task(1))
      assert.strictEqual(other.state, "committed")
      yield* chain.submitGradient(new Submission({ roundId: 1n, chunkId: 2, cid: "QmOther", gradientHash: `0x${"ab".repeat(32)}`, powNonce: 1n }))
      const refused = yield* (yield* MiningCoordinator).mine(task(2))
      assert.strictEqual(refused.state, "rolled_back")
      assert.include(refused.error_message ?? "", "AlreadySubmitted")
    }).pipe(Effect.provide(harness())))

  it.effect("a committed chunk is not mined twice", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      const first = yield* coordinator.mine(task(0))
      const second = yield* coordinator.mine(task(0))
      assert.strictEqual(second.transaction_id, first.transaction_id)
      assert.strictEqual(yield* (yield* TestTrainer).calls("train"), 1)
    }).pipe(Effect.provide(harness())))

  it.effect("the chain circuit breaker opens after the threshold of consecutive retryable failures", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      const record = yield* mineWithTime(task(0), "1 second")
      assert.strictEqual(record.state, "rolled_back")
      // 2 real calls, then the open circuit rejects the remaining retries without calling the chain.
      assert.strictEqual(yield* (yield* TestChain).calls("submitGradient"), 2)
      assert.strictEqual(record.attempts.blockchain_submit, 6)
      assert.include(record.error_message ?? "", "circuit breaker is open")
      const stats = yield* coordinator.getStatistics
      assert.strictEqual(stats.circuit_breakers.chain, "open")
      assert.strictEqual(stats.circuit_breakers.ipfs, "closed")
    }).pipe(Effect.provide(harness({
      config: {
        maxRetries: 5,
        circuitBreakerThreshold: 2,
        circuitBreakerReset: Duration.minutes(10),
        retryInitialDelay: Duration.millis(10),
        retryMaxDelay: Duration.millis(20)
      },
      chain: { faults: { submitGradient: { alwaysFail: network } } }
    }))))

  it.effect("getTransactionStatus answers live and finished transactions, none for unknown ids", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      assert.isTrue(Option.isNone(yield* coordinator.getTransactionStatus("tx-unknown")))
      const created = yield* coordinator.createTransaction(task(0))
      yield* TestClock.adjust("3 seconds")
      const live = yield* coordinator.getTransactionStatus(created.transaction_id)
      assert.strictEqual(Option.getOrThrow(live).state, "pending")
      assert.strictEqual(Option.getOrThrow(live).age_seconds, 3)
      yield* coordinator.executeAtomicMining(created.transaction_id)
      const done = Option.getOrThrow(yield* coordinator.getTransactionStatus(created.transaction_id))
      assert.strictEqual(done.state, "committed")
      assert.strictEqual(done.ipfs_hash !== null, true)
    }).pipe(Effect.provide(harness())))

  it.effect("cleanupStaleTransactions rolls back only transactions older than maxAge", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      const old = yield* coordinator.createTransaction(task(0))
      const running = yield* Effect.forkChild(coordinator.executeAtomicMining(old.transaction_id))
      yield* TestClock.adjust("10 minutes")
      const fresh = yield* coordinator.createTransaction(task(1))
      const cleaned = yield* coordinator.cleanupStaleTransactions("5 minutes")
      assert.deepStrictEqual(cleaned, { cleaned: [old.transaction_id], awaiting_chain: [] })
      const final = yield* Fiber.join(running)
      assert.strictEqual(final.state, "rolled_back")
      assert.strictEqual(final.rollback_actions[0]?.action, "unpin")
      assert.deepStrictEqual(yield* (yield* TestGradientStore).pinned, [])
      assert.strictEqual(Option.getOrThrow(yield* coordinator.getTransactionStatus(fresh.transaction_id)).state, "pending")
      assert.strictEqual(yield* coordinator.activeCount, 1)
    }).pipe(Effect.provide(harness({
      config: { transactionTimeout: Duration.hours(1) },
      chain: { faults: { submitGradient: { hang: true } } }
    }))))

  it.effect("forceCleanupTransaction stops a running transaction and compensates; unknown ids answer false", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      assert.isFalse(yield* coordinator.forceCleanupTransaction("tx-nope"))
      const created = yield* coordinator.createTransaction(task(0))
      const running = yield* Effect.forkChild(coordinator.executeAtomicMining(created.transaction_id))
      yield* TestClock.adjust("1 second")
      assert.isTrue(yield* coordinator.forceCleanupTransaction(created.transaction_id))
      const final = yield* Fiber.join(running)
      assert.strictEqual(final.state, "rolled_back")
      assert.strictEqual(final.failed_step, "blockchain_submit")
      assert.include(final.error_message ?? "", "force-cleaned")
      assert.deepStrictEqual(yield* (yield* TestGradientStore).pinned, [])
      // A pending one (never started) is simply failed.
      const pending = yield* coordinator.createTransaction(task(1))
      assert.isTrue(yield* coordinator.forceCleanupTransaction(pending.transaction_id))
      assert.strictEqual(Option.getOrThrow(yield* coordinator.getTransactionStatus(pending.transaction_id)).state, "failed")
    }).pipe(Effect.provide(harness({ chain: { faults: { submitGradient: { hang: true } } } }))))

  it.effect("the direct API answers ResourceError beyond R3MES_MAX_ACTIVE_TRANSACTIONS under 100 concurrent calls", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      const results = yield* Effect.forEach(
        Array.from({ length: 100 }, (_, i) => i),
        (i) => Effect.result(coordinator.createTransaction(task(i))),
        { concurrency: "unbounded" }
      )
      const ok = results.filter((r) => r._tag === "Success")
      const refused = results.filter((r) => r._tag === "Failure")
      assert.strictEqual(ok.length, 10)
      assert.strictEqual(refused.length, 90)
      for (const r of refused) if (r._tag === "Failure") assert.strictEqual(r.failure._tag, "ResourceError")
      assert.strictEqual(yield* coordinator.activeCount, 10)
    }).pipe(Effect.provide(harness())))

  it.effect("statistics: rates, error breakdown by category, state distribution, latency percentiles", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      const chain = yield* TestChain
      const trainer = yield* TestTrainer
      const records: Array<TransactionRecord> = []
      for (let i = 0; i < 3; i++) records.push(yield* mineWithTime(task(i)))
      yield* trainer.setFaults({ train: { alwaysFail: new ValidationError({ message: "bad spec" }) } })
      records.push(yield* mineWithTime(task(10)))
      yield* trainer.setFaults({})
      yield* chain.setFaults({ submitGradient: { alwaysFail: new AuthenticationError({ message: "bad key" }) } })
      records.push(yield* mineWithTime(task(11)))
      records.push(yield* mineWithTime(task(12)))
      yield* coordinator.createTransaction(task(13))

      const stats = yield* coordinator.getStatistics
      assert.strictEqual(stats.total_transactions, 7)
      assert.strictEqual(stats.committed, 3)
      assert.strictEqual(stats.failed, 1)
      assert.strictEqual(stats.rolled_back, 2)
      assert.strictEqual(stats.success_rate, 0.5)
      assert.closeTo(stats.failure_rate, 1 / 6, 1e-9)
      assert.closeTo(stats.rollback_rate, 1 / 3, 1e-9)
      assert.strictEqual(stats.error_breakdown.validation, 1)
      assert.strictEqual(stats.error_breakdown.authentication, 2)
      assert.strictEqual(stats.error_breakdown.network, 0)
      assert.deepStrictEqual(stats.state_distribution, {
        pending: 1,
        training: 0,
        ipfs_upload: 0,
        blockchain_submit: 0,
        task_complete: 0,
        committed: 3,
        failed: 1,
        rolled_back: 2
      })
      assert.strictEqual(stats.active_transactions, 1)
      assert.strictEqual(stats.latency_ms.training.count, 5)
      assert.strictEqual(stats.latency_ms.task_complete.count, 3)
      assert.isNotNull(stats.latency_ms.total.p99_ms)
      assert.strictEqual(stats.rollbacks.compensations_done, 2)
    }).pipe(Effect.provide(harness())))

  it.effect("statistics are also exported as Effect metrics, in the miner's own registry", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      yield* coordinator.mine(task(0))
      yield* (yield* TestChain).setFaults({ submitGradient: { alwaysFail: new AuthenticationError({ message: "no" }) } })
      yield* coordinator.mine(task(1))
      const { metricRegistry } = yield* MiningStats
      const own = <A>(read: Effect.Effect<A>) => Effect.provideService(read, Metric.MetricRegistry, metricRegistry)
      const committed = yield* own(Metric.value(Metric.withAttributes(transactionsTotal, { state: "committed" })))
      const rolledBack = yield* own(Metric.value(Metric.withAttributes(transactionsTotal, { state: "rolled_back" })))
      assert.strictEqual(committed.count, 1)
      assert.strictEqual(rolledBack.count, 1)
      const auth = yield* own(Metric.value(Metric.withAttributes(errorsTotal, { category: "authentication" })))
      assert.strictEqual(auth.count, 1)
      const training = yield* own(Metric.value(Metric.withAttributes(stepDuration, { step: "training" })))
      assert.strictEqual(training.count, 2)
      assert.strictEqual((yield* own(Metric.value(activeTransactions))).value, 0)
      // Nothing went to the process-wide registry.
      assert.strictEqual((yield* Metric.value(Metric.withAttributes(transactionsTotal, { state: "committed" }))).count, 0)
    }).pipe(Effect.provide(harness()), Effect.provideService(Metric.MetricRegistry, new Map())))

  it.effect("transactions per minute is counted over a sliding one-minute window", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      yield* TestClock.adjust("2 minutes")
      for (let i = 0; i < 3; i++) yield* coordinator.mine(task(i))
      yield* TestClock.adjust("30 seconds")
      for (let i = 3; i < 5; i++) yield* coordinator.mine(task(i))
      assert.strictEqual((yield* coordinator.getStatistics).transactions_per_minute, 5)
      yield* TestClock.adjust("40 seconds")
      // The first three are now 70 s old: out of the window.
      const stats = yield* coordinator.getStatistics
      assert.strictEqual(stats.transactions_per_minute, 2)
      assert.strictEqual(stats.committed_per_minute, 2)
      yield* TestClock.adjust("1 minute")
      assert.strictEqual((yield* coordinator.getStatistics).transactions_per_minute, 0)
    }).pipe(Effect.provide(harness())))

  it.effect("a journal that cannot write the pin intent (disk full) stops the upload before anything is pinned", () =>
    Effect.gen(function*() {
      const journal = yield* InMemoryJournal
      yield* journal.setFaults({
        save: {
          failWhen: (i) => (i >= 3 ? classify(Object.assign(new Error("ENOSPC: no space left"), { code: "ENOSPC" })) : undefined)
        }
      })
      const record = yield* mineWithTime(task(0))
      assert.strictEqual(record.state, "rolled_back")
      assert.strictEqual(record.error_category, "resource")
      const store = yield* TestGradientStore
      assert.strictEqual(yield* store.calls("add"), 0)
      assert.deepStrictEqual(yield* store.pinned, [])
    }).pipe(Effect.provide(harness())))

  it.effect("a journal unreachable for a moment at a transaction's last word: written once it is back, not left unfinished", () =>
    Effect.gen(function*() {
      const journal = yield* InMemoryJournal
      const first = yield* mineWithTime(task(0))
      assert.strictEqual(first.state, "committed")
      const saves = yield* journal.calls("save")
      // The next transaction's last save (its end) fails three times: the database restarting.
      yield* journal.setFaults({ save: { failWhen: (i) => (i >= saves - 1 && i < saves + 2 ? network : undefined) } })
      const second = yield* mineWithTime(task(1))
      assert.strictEqual(second.state, "committed")
      const journaled = (yield* (yield* Journal).get(second.transaction_id))!
      assert.strictEqual(journaled.state, "committed", "the end is in the journal")
      assert.strictEqual(yield* journal.calls("save"), 2 * saves + 3)
    }).pipe(Effect.provide(harness())))
})
