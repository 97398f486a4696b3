import { Clock, Context, Effect, Layer, Metric } from "effect"
import { type ErrorCategory, errorCategories } from "../domain/errors.ts"
import { type LatencySummary, pruneWindow, ratePerMinute, SampleRing, summarizeLatency } from "../domain/statistics.ts"
import { type Step, steps, type TransactionState, TransactionState as TransactionStates } from "../domain/TransactionState.ts"

const windowMs = 60_000
const sampleCapacity = 2048
const allStates = TransactionStates.literals

/** The statistics of the coordinator, as `/stats` shows them under `atomic_coordinator`. */
export interface StatisticsSnapshot {
  readonly started_at: string
  readonly uptime_seconds: number
  readonly total_transactions: number
  readonly active_transactions: number
  readonly peak_active: number
  readonly committed: number
  readonly failed: number
  readonly rolled_back: number
  /** Stopped past the commit point by a shutdown: left in the journal for the next start to settle with the chain. */
  readonly suspended: number
  /** Committed, then found gone from the chain (reset or reorg): also counted in rolled_back. */
  readonly chain_lost: number
  readonly success_rate: number
  readonly failure_rate: number
  readonly rollback_rate: number
  readonly task_completion_failures: number
  readonly window_seconds: number
  readonly transactions_per_minute: number
  readonly committed_per_minute: number
  readonly latency_ms: Readonly<Record<Step | "total", LatencySummary>>
  readonly error_breakdown: Readonly<Record<ErrorCategory, number>>
  readonly state_distribution: Readonly<Record<TransactionState, number>>
  readonly retries: Readonly<Record<Step | "total", number>>
  readonly rollbacks: {
    readonly transactions: number
    readonly compensations_done: number
    readonly compensations_failed: number
  }
  /** What crash recovery did since start. */
  readonly recovery: {
    readonly runs: number
    readonly transactions: number
    readonly committed: number
    readonly rolled_back: number
    readonly failed: number
    readonly orphan_pins_released: number
  }
  readonly pow: { readonly solved: number; readonly hashes: number; readonly hashes_per_second: number | null }
}

export interface FinishedTransaction {
  readonly state: "committed" | "failed" | "rolled_back"
  readonly durationMs: number
  readonly errorCategory: ErrorCategory | null
  readonly taskCompleted: boolean
  readonly compensationsDone: number
  readonly compensationsFailed: number
}

// Effect metrics, exported for /metrics (Prometheus) and any other metric reader.
export const transactionsTotal = Metric.counter("r3mes_transactions_total", {
  description: "Mining transactions that reached a final state, by state",
  incremental: true
})
export const stepDuration = Metric.histogram("r3mes_step_duration_seconds", {
  description: "Latency of each mining step",
  boundaries: Metric.exponentialBoundaries({ start: 0.001, factor: 2, count: 20 })
})
export const transactionDuration = Metric.histogram("r3mes_transaction_duration_seconds", {
  description: "End-to-end latency of mining transactions",
  boundaries: Metric.exponentialBoundaries({ start: 0.01, factor: 2, count: 18 })
})
export const retriesTotal = Metric.counter("r3mes_retries_total", { description: "Step retries, by step", incremental: true })
export const errorsTotal = Metric.counter("r3mes_errors_total", {
  description: "Transactions ended by an error, by category",
  incremental: true
})
export const rollbacksTotal = Metric.counter("r3mes_rollbacks_total", { description: "Transactions rolled back", incremental: true })
export const compensationFailuresTotal = Metric.counter("r3mes_compensation_failures_total", {
  description: "Compensations that failed during rollback",
  incremental: true
})
export const activeTransactions = Metric.gauge("r3mes_active_transactions", { description: "Transactions in flight" })
export const powHashesTotal = Metric.counter("r3mes_pow_hashes_total", {
  description: "SHA-256 hashes computed by the proof-of-work search",
  incremental: true
})

/**
 * Core service: counts what the coordinator does and answers the statistics. Percentiles are over the most recent
 * samples (bounded memory for miners that run for days); rates are over a sliding window of the last minute.
 */
export class MiningStats extends Context.Service<MiningStats, {
  readonly transactionCreated: Effect.Effect<void>
  /** A transaction found non-terminal in the journal at start, taken up again in `state`. */
  readonly transactionResumed: (state: TransactionState) => Effect.Effect<void>
  readonly recovered: (summary: {
    readonly recovered: number
    readonly committed: number
    readonly rolled_back: number
    readonly failed: number
    readonly orphan_pins_released: ReadonlyArray<string>
  }) => Effect.Effect<void>
  readonly stateChanged: (from: TransactionState, to: TransactionState) => Effect.Effect<void>
  readonly stepCompleted: (step: Step, ms: number) => Effect.Effect<void>
  readonly retried: (step: Step, count: number) => Effect.Effect<void>
  readonly powSolved: (hashes: number, ms: number) => Effect.Effect<void>
  readonly transactionFinished: (finished: FinishedTransaction) => Effect.Effect<void>
  /** A transaction stopped past its commit point (shutdown): it stays `state` in the journal, for recovery. */
  readonly transactionSuspended: (state: TransactionState) => Effect.Effect<void>
  /** A committed transaction the chain no longer holds: it is rolled back now. */
  readonly chainLost: Effect.Effect<void>
  readonly snapshot: Effect.Effect<StatisticsSnapshot>
}>()("r3mes/services/MiningStats") {
  static readonly layer = Layer.effect(
    MiningStats,
    Effect.gen(function*() {
      const startedAt = yield* Clock.currentTimeMillis
      const stepSamples = Object.fromEntries(
        [...steps, "total"].map((s) => [s, new SampleRing(sampleCapacity)])
      ) as Record<Step | "total", SampleRing>
      const retries: Record<Step | "total", number> = {
        training: 0,
        ipfs_upload: 0,
        blockchain_submit: 0,
        task_complete: 0,
        total: 0
      }
      const errors = Object.fromEntries(errorCategories.map((c) => [c, 0])) as Record<ErrorCategory, number>
      const distribution = Object.fromEntries(allStates.map((s) => [s, 0])) as Record<TransactionState, number>
      const recovery = { runs: 0, recovered: 0, committed: 0, rolledBack: 0, failed: 0, orphanPins: 0 }
      const finishedAt: Array<number> = []
      const committedAt: Array<number> = []
      const totals = {
        created: 0,
        active: 0,
        peak: 0,
        committed: 0,
        failed: 0,
        rolledBack: 0,
        suspended: 0,
        chainLost: 0,
        taskCompletionFailures: 0,
        compensationsDone: 0,
        compensationsFailed: 0,
        powSolved: 0,
        powHashes: 0,
        powMs: 0
      }

      const transactionCreated = Effect.suspend(() => {
        totals.created++
        totals.active++
        totals.peak = Math.max(totals.peak, totals.active)
        distribution.pending++
        return Metric.update(activeTransactions, totals.active)
      })

      const transactionResumed = (state: TransactionState) =>
        Effect.suspend(() => {
          totals.created++
          totals.active++
          totals.peak = Math.max(totals.peak, totals.active)
          distribution[state]++
          return Metric.update(activeTransactions, totals.active)
        })

      const recovered: MiningStats["Service"]["recovered"] = (summary) =>
        Effect.sync(() => {
          recovery.runs++
          recovery.recovered += summary.recovered
          recovery.committed += summary.committed
          recovery.rolledBack += summary.rolled_back
          recovery.failed += summary.failed
          recovery.orphanPins += summary.orphan_pins_released.length
        })

      const stateChanged = (from: TransactionState, to: TransactionState) =>
        Effect.sync(() => {
          distribution[from] = Math.max(0, distribution[from] - 1)
          distribution[to]++
        })

      const stepCompleted = (step: Step, ms: number) =>
        Effect.suspend(() => {
          stepSamples[step].add(ms)
          return Metric.update(Metric.withAttributes(stepDuration, { step }), ms / 1000)
        })

      const retried = (step: Step, count: number) =>
        count <= 0 ? Effect.void : Effect.suspend(() => {
          retries[step] += count
          retries.total += count
          return Metric.update(Metric.withAttributes(retriesTotal, { step }), count)
        })

      const powSolved = (hashes: number, ms: number) =>
        Effect.suspend(() => {
          totals.powSolved++
          totals.powHashes += hashes
          totals.powMs += ms
          return Metric.update(powHashesTotal, hashes)
        })

      const transactionFinished = (finished: FinishedTransaction) =>
        Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          totals.active = Math.max(0, totals.active - 1)
          if (finished.state === "committed") {
            totals.committed++
            committedAt.push(now)
            if (!finished.taskCompleted) totals.taskCompletionFailures++
          } else if (finished.state === "failed") {
            totals.failed++
          } else {
            totals.rolledBack++
            yield* Metric.update(rollbacksTotal, 1)
          }
          totals.compensationsDone += finished.compensationsDone
          totals.compensationsFailed += finished.compensationsFailed
          if (finished.compensationsFailed > 0) yield* Metric.update(compensationFailuresTotal, finished.compensationsFailed)
          if (finished.errorCategory !== null) {
            errors[finished.errorCategory]++
            yield* Metric.update(Metric.withAttributes(errorsTotal, { category: finished.errorCategory }), 1)
          }
          finishedAt.push(now)
          pruneWindow(finishedAt, now, windowMs)
          pruneWindow(committedAt, now, windowMs)
          stepSamples.total.add(finished.durationMs)
          yield* Metric.update(Metric.withAttributes(transactionsTotal, { state: finished.state }), 1)
          yield* Metric.update(transactionDuration, finished.durationMs / 1000)
          yield* Metric.update(activeTransactions, totals.active)
        })

      const transactionSuspended = (state: TransactionState) =>
        Effect.suspend(() => {
          totals.active = Math.max(0, totals.active - 1)
          totals.suspended++
          return Metric.update(activeTransactions, totals.active)
        })

      const chainLost = Effect.suspend(() => {
        totals.chainLost++
        errors.chain_lost++
        distribution.committed = Math.max(0, distribution.committed - 1)
        distribution.rolled_back++
        if (totals.committed > 0) {
          totals.committed--
          totals.rolledBack++
        }
        return Effect.all([
          Metric.update(rollbacksTotal, 1),
          Metric.update(Metric.withAttributes(errorsTotal, { category: "chain_lost" }), 1)
        ], { discard: true })
      })

      const snapshot = Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        pruneWindow(finishedAt, now, windowMs)
        pruneWindow(committedAt, now, windowMs)
        const finished = totals.committed + totals.failed + totals.rolledBack
        const rate = (n: number) => (finished === 0 ? 0 : n / finished)
        const latency = Object.fromEntries(
          [...steps, "total" as const].map((s) => [s, summarizeLatency(stepSamples[s].values(), stepSamples[s].total)])
        ) as Record<Step | "total", LatencySummary>
        return {
          started_at: new Date(startedAt).toISOString(),
          uptime_seconds: (now - startedAt) / 1000,
          total_transactions: totals.created,
          active_transactions: totals.active,
          peak_active: totals.peak,
          committed: totals.committed,
          failed: totals.failed,
          rolled_back: totals.rolledBack,
          suspended: totals.suspended,
          chain_lost: totals.chainLost,
          success_rate: rate(totals.committed),
          failure_rate: rate(totals.failed),
          rollback_rate: rate(totals.rolledBack),
          task_completion_failures: totals.taskCompletionFailures,
          window_seconds: windowMs / 1000,
          transactions_per_minute: ratePerMinute(finishedAt, now, windowMs, startedAt),
          committed_per_minute: ratePerMinute(committedAt, now, windowMs, startedAt),
          latency_ms: latency,
          error_breakdown: { ...errors },
          state_distribution: { ...distribution },
          retries: { ...retries },
          rollbacks: {
            transactions: totals.rolledBack,
            compensations_done: totals.compensationsDone,
            compensations_failed: totals.compensationsFailed
          },
          recovery: {
            runs: recovery.runs,
            transactions: recovery.recovered,
            committed: recovery.committed,
            rolled_back: recovery.rolledBack,
            failed: recovery.failed,
            orphan_pins_released: recovery.orphanPins
          },
          pow: {
            solved: totals.powSolved,
            hashes: totals.powHashes,
            hashes_per_second: totals.powMs > 0 ? totals.powHashes / (totals.powMs / 1000) : null
          }
        } satisfies StatisticsSnapshot
      })

      return MiningStats.of({
        transactionCreated,
        transactionResumed,
        recovered,
        stateChanged,
        stepCompleted,
        retried,
        powSolved,
        transactionFinished,
        transactionSuspended,
        chainLost,
        snapshot
      })
    })
  )
}
