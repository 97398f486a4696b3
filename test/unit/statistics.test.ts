import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Metric } from "effect"
import { TestClock } from "effect/testing"
import { AuthenticationError, NetworkError, ValidationError } from "../../src/domain/errors.ts"
import type { Task } from "../../src/domain/mining.ts"
import { newRecord, type TransactionRecord } from "../../src/domain/TransactionRecord.ts"
import { MiningCoordinator } from "../../src/services/MiningCoordinator.ts"
import { MiningStats, transactionsTotal } from "../../src/services/MiningStats.ts"
import { journalStatistics } from "../../src/services/stats/journalStatistics.ts"
import { InMemoryJournal } from "../../src/testing/InMemoryJournal.ts"
import { TestChain } from "../../src/testing/TestChain.ts"
import { TestTrainer } from "../../src/testing/TestTrainer.ts"
import { testTask } from "../../src/testing/TestTaskSource.ts"
import { harness } from "../support/harness.ts"

const task = (chunkId: number) => testTask(chunkId, { roundId: 1n, difficulty: 16 })

/** Runs a transaction in a fiber and lets virtual time pass so latencies and retry back-offs elapse. */
const mineWithTime = (t: Task, advance: Duration.Input) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild((yield* MiningCoordinator).mine(t))
    yield* TestClock.adjust(advance)
    return yield* Fiber.join(fiber)
  })

const network = new NetworkError({ message: "connect ECONNREFUSED 127.0.0.1:8545" })

describe("statistics", () => {
  it.effect("the journal view and the live snapshot of the same history give the same statistics", () =>
    Effect.gen(function*() {
      const trainer = yield* TestTrainer
      const chain = yield* TestChain
      for (let i = 0; i < 12; i++) {
        yield* trainer.setFaults({ train: { latency: Duration.millis(200 + 150 * ((i * 7) % 12)) } })
        yield* mineWithTime(task(i), "1 minute")
      }
      yield* trainer.setFaults({ train: { alwaysFail: new ValidationError({ message: "bad spec" }) } })
      yield* mineWithTime(task(20), "1 minute")
      yield* trainer.setFaults({})
      yield* chain.setFaults({ submitGradient: { failFirst: { times: 2, error: network } } })
      yield* mineWithTime(task(21), "1 minute")
      yield* chain.setFaults({ submitGradient: { alwaysFail: new AuthenticationError({ message: "bad key" }) } })
      yield* mineWithTime(task(22), "1 minute")
      yield* chain.setFaults({})
      // The last one ends now, so the live window and the journal's (ending at its last update) are the same.
      yield* (yield* MiningCoordinator).mine(task(23))
      yield* (yield* MiningCoordinator).createTransaction(task(24))

      const live = yield* (yield* MiningStats).snapshot
      const fromJournal = journalStatistics(yield* (yield* InMemoryJournal).all)
      const { window_ends_at, ...shared } = fromJournal
      assert.isString(window_ends_at)
      const liveShared = Object.fromEntries(Object.keys(shared).map((key) => [key, live[key as keyof typeof live]]))
      // The journal's timestamps are whole milliseconds; the live clock is not.
      const wholeMs = (s: typeof shared) => ({
        ...s,
        latency_ms: { ...s.latency_ms, total: { ...s.latency_ms.total, mean_ms: Math.round(s.latency_ms.total.mean_ms!) } }
      })
      assert.deepStrictEqual(wholeMs(shared), wholeMs(liveShared as typeof shared))
      // The history is what the test made it: not an empty agreement.
      assert.deepStrictEqual([live.committed, live.failed, live.rolled_back, live.active_transactions], [14, 1, 1, 1])
      assert.strictEqual(live.retries.blockchain_submit, 2)
      assert.strictEqual(live.latency_ms.training.count, 15)
      assert.strictEqual(live.latency_ms.training.max_ms, 1850)
      assert.isAbove(live.latency_ms.training.p95_ms!, live.latency_ms.training.p50_ms!)
      assert.isAbove(live.transactions_per_minute, 0)
    }).pipe(Effect.provide(harness())))

  it.effect("counts never leak between two miners in one process, nor into the default registry", () =>
    Effect.gen(function*() {
      const record = Effect.gen(function*() {
        const stats = yield* MiningStats
        yield* stats.transactionCreated
        yield* stats.stepCompleted("training", 40)
        yield* stats.transactionFinished({
          state: "committed",
          durationMs: 50,
          errorCategory: null,
          taskCompleted: true,
          compensationsDone: 0,
          compensationsFailed: 0
        })
        return stats
      })
      const first = yield* record.pipe(Effect.provide(MiningStats.layer))
      const second = yield* Effect.provide(Effect.service(MiningStats), MiningStats.layer)
      assert.notStrictEqual(first.metricRegistry, second.metricRegistry)
      assert.strictEqual((yield* first.snapshot).committed, 1)
      const other = yield* second.snapshot
      assert.deepStrictEqual([other.committed, other.total_transactions, other.latency_ms.training.count], [0, 0, 0])
      const globally = yield* Metric.value(Metric.withAttributes(transactionsTotal, { state: "committed" }))
      assert.strictEqual(globally.count, 0)
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())))

  it.effect("peak active, suspensions, and a chain loss of this run or of an earlier one", () =>
    Effect.gen(function*() {
      const stats = yield* MiningStats
      const commit = stats.transactionFinished({
        state: "committed",
        durationMs: 10,
        errorCategory: null,
        taskCompleted: false,
        compensationsDone: 0,
        compensationsFailed: 0
      })
      // A commit of an earlier run found lost at start: never counted as committed here, so nothing to take back.
      yield* stats.chainLost
      yield* stats.transactionCreated
      yield* stats.transactionCreated
      yield* stats.transactionResumed("blockchain_submit")
      yield* stats.stateChanged("pending", "committed")
      yield* commit
      yield* stats.transactionSuspended("blockchain_submit")
      yield* stats.chainLost
      const s = yield* stats.snapshot
      assert.deepStrictEqual(
        [s.total_transactions, s.active_transactions, s.peak_active, s.suspended],
        [3, 1, 3, 1]
      )
      assert.deepStrictEqual([s.committed, s.rolled_back, s.chain_lost, s.error_breakdown.chain_lost], [0, 1, 2, 2])
      assert.strictEqual(s.task_completion_failures, 1)
      assert.strictEqual(s.state_distribution.rolled_back, 2)
    }).pipe(Effect.provide(MiningStats.layer)))

  it("the journal of a miner stopped long ago keeps its percentiles, over the hour before its last update", () => {
    const at = (ms: number) => new Date(Date.UTC(2025, 0, 1) + ms).toISOString()
    const committed = (id: number, startMs: number, trainingMs: number): TransactionRecord => ({
      ...newRecord({ transactionId: `tx-${id}`, key: `k-${id}`, roundId: 1n, chunkId: id, nowMs: 0 }),
      state: "committed",
      created_at: at(startMs),
      updated_at: at(startMs + trainingMs + 1000),
      task_completed: true,
      attempts: { training: 1, ipfs_upload: 1, blockchain_submit: 1, task_complete: 1 },
      step_ms: { training: trainingMs, ipfs_upload: 100, blockchain_submit: 500, task_complete: 200 }
    })
    // One slow transaction two hours before the others: counted, but out of the percentiles' window.
    const records = [
      committed(1, 0, 90_000),
      ...Array.from({ length: 10 }, (_, i) => committed(2 + i, 7_200_000 + i * 10_000, 1000 + i * 100))
    ]
    const s = journalStatistics(records)
    assert.strictEqual(s.latency_ms.training.count, 11)
    assert.strictEqual(s.latency_ms.training.max_ms, 90_000)
    assert.strictEqual(s.latency_ms.training.p99_ms, 1900)
    assert.strictEqual(s.latency_ms.training.p50_ms, 1400)
    assert.strictEqual(s.window_ends_at, at(7_200_000 + 90_000 + 1900 + 1000))
    assert.deepStrictEqual(journalStatistics([]).latency_ms.total, {
      count: 0,
      mean_ms: null,
      p50_ms: null,
      p95_ms: null,
      p99_ms: null,
      max_ms: null
    })
  })
})
