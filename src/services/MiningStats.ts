import { Clock, Context, Effect, Layer, type Metric } from "effect"
import type { Step, TransactionState } from "../domain/TransactionState.ts"
import { type FinishedTransaction, makeStatisticsModel, type RecoveryOutcome } from "./stats/StatisticsModel.ts"
import { type StatisticsSnapshot, statisticsSnapshot } from "./stats/statisticsSnapshot.ts"

// The metric definitions, exported for /metrics and any other metric reader (`MiningMetrics` in the package API).
export * from "./stats/metrics.ts"
export type { FinishedTransaction, StatisticsSnapshot }

/**
 * Core service: counts what the coordinator does and answers the statistics (`/stats` `atomic_coordinator`). Its
 * state is the metrics of a registry of its own (`metricRegistry`, what `/metrics` formats), so two miners in one
 * process never share counts. Rates are over the sliding window of the last minute; latency percentiles over the
 * recent samples (stats/metrics.ts), counts and maxima over the whole run.
 */
export class MiningStats extends Context.Service<MiningStats, {
  readonly transactionCreated: Effect.Effect<void>
  /** A transaction found non-terminal in the journal at start, taken up again in `state`. */
  readonly transactionResumed: (state: TransactionState) => Effect.Effect<void>
  readonly recovered: (summary: RecoveryOutcome) => Effect.Effect<void>
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
  /** This miner's own metrics (never shared with another instance): what /metrics formats. */
  readonly metricRegistry: Metric.MetricRegistry
}>()("r3mes/services/MiningStats") {
  static readonly layer = Layer.effect(
    MiningStats,
    Effect.gen(function*() {
      const model = makeStatisticsModel(yield* Clock.currentTimeMillis)
      /** Records what happened now (the current Clock's time). */
      const now = (record: (nowMs: number) => void) => Effect.map(Clock.currentTimeMillis, record)
      return MiningStats.of({
        transactionCreated: Effect.sync(() => model.started()),
        transactionResumed: (state) => Effect.sync(() => model.started(state)),
        recovered: (summary) => Effect.sync(() => model.recovered(summary)),
        stateChanged: (from, to) => Effect.sync(() => model.stateChanged(from, to)),
        stepCompleted: (step, ms) => now((at) => model.stepCompleted(step, ms, at)),
        retried: (step, count) => Effect.sync(() => model.retried(step, count)),
        powSolved: (hashes, ms) => Effect.sync(() => model.powSolved(hashes, ms)),
        transactionFinished: (finished) => now((at) => model.finished(finished, at)),
        transactionSuspended: () => Effect.sync(() => model.suspended()),
        chainLost: Effect.sync(() => model.chainLost()),
        snapshot: Effect.map(Clock.currentTimeMillis, (at) => statisticsSnapshot(model, at)),
        metricRegistry: model.registry
      })
    })
  )
}
