import { type ErrorCategory, errorCategories } from "../../domain/errors.ts"
import type { TransactionRecord } from "../../domain/TransactionRecord.ts"
import { steps } from "../../domain/TransactionState.ts"
import { makeStatisticsModel } from "./StatisticsModel.ts"
import { type StatisticsSnapshot, statisticsSnapshot } from "./statisticsSnapshot.ts"

/** The keys of `/stats`'s `atomic_coordinator` that the journal's records can give, and where their window ends. */
export type JournalStatistics =
  & Pick<
    StatisticsSnapshot,
    | "total_transactions"
    | "active_transactions"
    | "committed"
    | "failed"
    | "rolled_back"
    | "success_rate"
    | "failure_rate"
    | "rollback_rate"
    | "task_completion_failures"
    | "window_seconds"
    | "transactions_per_minute"
    | "committed_per_minute"
    | "latency_ms"
    | "error_breakdown"
    | "state_distribution"
    | "retries"
    | "rollbacks"
  >
  & { readonly window_ends_at: string | null }

/** A record's category; one this version does not know (a newer miner's journal) counts as unknown. */
const categoryOf = (category: string | null): ErrorCategory =>
  errorCategories.find((known) => known === category) ?? "unknown"

/**
 * The statistics of a miner that is not running, from its journal: the records replayed, in the order they were last
 * updated, through a fresh statistics model (the one the live miner uses), with the records' times as the times of
 * what happened. The window ends at the journal's last update, so a miner stopped days ago still shows the rates and
 * percentiles of its last minute and hour of work. What only a live process knows (uptime, peak active, PoW hash
 * rate, circuit breakers, recovery runs) is left out rather than guessed.
 */
export const journalStatistics = (records: ReadonlyArray<TransactionRecord>): JournalStatistics => {
  const timed = records
    .map((record) => ({ record, created: Date.parse(record.created_at), updated: Date.parse(record.updated_at) }))
    .sort((a, b) => a.updated - b.updated)
  const first = timed.reduce((min, t) => Math.min(min, t.created), Infinity)
  const last = timed.at(-1)?.updated ?? 0
  const model = makeStatisticsModel(timed.length === 0 ? 0 : first)

  for (const { created, record: r, updated } of timed) {
    model.started()
    if (r.state !== "pending") model.stateChanged("pending", r.state)
    for (const step of steps) {
      const ms = r.step_ms[step]
      // The journal keeps a step's duration, not when it ended: its record's last update stands for that.
      if (ms !== null) model.stepCompleted(step, ms, updated)
      model.retried(step, r.attempts[step] - 1)
    }
    const done = r.rollback_actions.filter((a) => a.status === "done").length
    const failed = r.rollback_actions.length - done
    if (r.state === "committed" || r.state === "failed" || r.state === "rolled_back") {
      model.finished({
        state: r.state,
        durationMs: updated - created,
        // As the coordinator reports them: the category of what ended a transaction that did not commit.
        errorCategory: r.state === "committed" ? null : categoryOf(r.error_category),
        taskCompleted: r.task_completed,
        compensationsDone: done,
        compensationsFailed: failed
      }, updated)
    } else {
      model.compensated(done, failed)
    }
  }

  const s = statisticsSnapshot(model, last)
  return {
    total_transactions: s.total_transactions,
    active_transactions: s.active_transactions,
    committed: s.committed,
    failed: s.failed,
    rolled_back: s.rolled_back,
    success_rate: s.success_rate,
    failure_rate: s.failure_rate,
    rollback_rate: s.rollback_rate,
    task_completion_failures: s.task_completion_failures,
    window_seconds: s.window_seconds,
    window_ends_at: timed.length === 0 ? null : new Date(last).toISOString(),
    transactions_per_minute: s.transactions_per_minute,
    committed_per_minute: s.committed_per_minute,
    latency_ms: s.latency_ms,
    error_breakdown: s.error_breakdown,
    state_distribution: s.state_distribution,
    retries: s.retries,
    rollbacks: s.rollbacks
  }
}
