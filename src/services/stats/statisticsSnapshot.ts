import { errorCategories, type ErrorCategory } from "../../domain/errors.ts"
import { latencyFromSummary, type LatencySummary, ratePerMinute, rateWindowMs } from "../../domain/statistics.ts"
import { type Step, steps, type TransactionState, TransactionState as TransactionStates } from "../../domain/TransactionState.ts"
import * as M from "./metrics.ts"
import { type LatencyKey, latencyKeys, type StatisticsModel } from "./StatisticsModel.ts"

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

const mapKeys = <K extends string, V>(keys: ReadonlyArray<K>, f: (key: K) => V) =>
  Object.fromEntries(keys.map((key) => [key, f(key)])) as Record<K, V>

/**
 * The snapshot of a model as of `nowMs`, read from its metrics: rates over the window ending at `nowMs`, latency
 * percentiles over the samples of the latency window ending at `nowMs` (so a journal replayed days later, read at
 * its last update, still has them).
 */
export const statisticsSnapshot = (model: StatisticsModel, nowMs: number): StatisticsSnapshot => {
  const { count, level, series } = model
  // Committed, then lost by the chain: a commit of this run that now counts as rolled back.
  const lost = count(M.commitsLostTotal)
  const committed = count(series.finished.committed) - lost
  const failed = count(series.finished.failed)
  const rolledBack = count(series.finished.rolled_back) + lost
  const finished = committed + failed + rolledBack
  const rate = (n: number) => (finished === 0 ? 0 : n / finished)
  const retries = mapKeys(steps, (step) => count(series.retries[step]))
  const powSeconds = count(M.powSecondsTotal)
  const hashes = count(M.powHashesTotal)
  return {
    started_at: new Date(model.startedAtMs).toISOString(),
    uptime_seconds: (nowMs - model.startedAtMs) / 1000,
    total_transactions: count(M.transactionsStartedTotal),
    active_transactions: level(M.activeTransactions),
    peak_active: level(M.peakActiveTransactions),
    committed,
    failed,
    rolled_back: rolledBack,
    suspended: count(M.suspendedTotal),
    chain_lost: count(M.chainLostTotal),
    success_rate: rate(committed),
    failure_rate: rate(failed),
    rollback_rate: rate(rolledBack),
    task_completion_failures: count(M.taskCompletionFailuresTotal),
    window_seconds: rateWindowMs / 1000,
    transactions_per_minute: ratePerMinute(model.finishedAt, nowMs, model.startedAtMs),
    committed_per_minute: ratePerMinute(model.committedAt, nowMs, model.startedAtMs),
    latency_ms: mapKeys<LatencyKey, LatencySummary>(
      latencyKeys,
      (key) => latencyFromSummary(model.valueAt(series.latency[key], nowMs))
    ),
    error_breakdown: mapKeys(errorCategories, (category) => count(series.errors[category])),
    state_distribution: mapKeys(TransactionStates.literals, (state) => level(series.inState[state])),
    retries: { ...retries, total: steps.reduce((sum, step) => sum + retries[step], 0) },
    rollbacks: {
      transactions: rolledBack,
      compensations_done: count(M.compensationsDoneTotal),
      compensations_failed: count(M.compensationFailuresTotal)
    },
    recovery: {
      runs: count(M.recoveryRunsTotal),
      transactions: count(series.recovered.all),
      committed: count(series.recovered.committed),
      rolled_back: count(series.recovered.rolled_back),
      failed: count(series.recovered.failed),
      orphan_pins_released: count(M.orphanPinsReleasedTotal)
    },
    pow: {
      solved: count(M.powSolvedTotal),
      hashes,
      hashes_per_second: powSeconds > 0 ? hashes / powSeconds : null
    }
  }
}
