import { Metric } from "effect"

/**
 * The miner's metrics: the state of its statistics (StatisticsModel.ts) and what `/metrics` shows. Their values live
 * in the registry of one MiningStats, never in the process-wide default one, so two miners (or two tests) in one
 * process never add to each other's counts. Names are a public contract (dashboards, alerts): rename none.
 */

/** Per-step latency percentiles cover at most this many recent samples per step (bounded memory). */
export const latencySampleSize = 2048

/**
 * Per-step latency percentiles cover the last hour, at most `latencySampleSize` samples. A real round trains for
 * seconds to minutes per chunk: an hour then holds 60 to a few hundred samples, enough for a p95, and a slow IPFS
 * or chain enters the percentiles, and leaves them once fixed, within the hour. On the embedded devnet (about 1,600
 * commits a minute, README benchmarks) the sample cap binds first: the last minute or so. Counts, sums and maxima
 * stay totals since start, as Prometheus summaries have them.
 */
export const latencyWindow = "1 hour"

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

export const transactionsStartedTotal = Metric.counter("r3mes_transactions_started_total", {
  description: "Mining transactions created, or resumed from the journal at start",
  incremental: true
})
export const peakActiveTransactions = Metric.gauge("r3mes_peak_active_transactions", {
  description: "Most transactions in flight at once since start"
})
export const transactionsInState = Metric.gauge("r3mes_transactions_in_state", {
  description: "Transactions of this run by their current state"
})
export const stepLatency = Metric.summaryWithTimestamp("r3mes_step_latency_milliseconds", {
  description: "Latency of each mining step and of whole transactions (step=total); quantiles over the last hour",
  maxAge: latencyWindow,
  maxSize: latencySampleSize,
  quantiles: [0.5, 0.95, 0.99]
})
export const suspendedTotal = Metric.counter("r3mes_transactions_suspended_total", {
  description: "Transactions stopped past the commit point by a shutdown, left for the next start",
  incremental: true
})
export const chainLostTotal = Metric.counter("r3mes_chain_lost_total", {
  description: "Committed transactions the chain no longer holds (reset or reorg)",
  incremental: true
})
export const commitsLostTotal = Metric.counter("r3mes_commits_lost_total", {
  description: "Transactions committed by this run, then found gone from the chain",
  incremental: true
})
export const taskCompletionFailuresTotal = Metric.counter("r3mes_task_completion_failures_total", {
  description: "Committed transactions whose task completion failed (non-critical)",
  incremental: true
})
export const compensationsDoneTotal = Metric.counter("r3mes_compensations_done_total", {
  description: "Compensations that ran during rollback",
  incremental: true
})
export const powSolvedTotal = Metric.counter("r3mes_pow_solved_total", {
  description: "Proofs of work found",
  incremental: true
})
export const powSecondsTotal = Metric.counter("r3mes_pow_seconds_total", {
  description: "Time spent searching proofs of work",
  incremental: true
})
export const recoveryRunsTotal = Metric.counter("r3mes_recovery_runs_total", {
  description: "Crash recoveries run at start",
  incremental: true
})
export const recoveredTotal = Metric.counter("r3mes_recovered_transactions_total", {
  description: "Transactions crash recovery took up, by outcome (outcome=all for every one)",
  incremental: true
})
export const orphanPinsReleasedTotal = Metric.counter("r3mes_orphan_pins_released_total", {
  description: "Pins no transaction referenced, released by crash recovery",
  incremental: true
})
