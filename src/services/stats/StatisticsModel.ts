import { Clock, Context, Effect, Metric } from "effect"
import { type ErrorCategory, errorCategories } from "../../domain/errors.ts"
import { pruneWindow } from "../../domain/statistics.ts"
import { type Step, steps, TransactionState } from "../../domain/TransactionState.ts"
import * as M from "./metrics.ts"

export interface FinishedTransaction {
  readonly state: "committed" | "failed" | "rolled_back"
  readonly durationMs: number
  readonly errorCategory: ErrorCategory | null
  readonly taskCompleted: boolean
  readonly compensationsDone: number
  readonly compensationsFailed: number
}

export interface RecoveryOutcome {
  readonly recovered: number
  readonly committed: number
  readonly rolled_back: number
  readonly failed: number
  readonly orphan_pins_released: ReadonlyArray<string>
}

type FinalState = FinishedTransaction["state"]
const finalStates: ReadonlyArray<FinalState> = ["committed", "failed", "rolled_back"]
export type LatencyKey = Step | "total"
export const latencyKeys: ReadonlyArray<LatencyKey> = [...steps, "total"]

const labelled = <K extends string, I, S>(metric: Metric.Metric<I, S>, label: string, keys: ReadonlyArray<K>) =>
  Object.fromEntries(keys.map((key) => [key, Metric.withAttributes(metric, { [label]: key })])) as Record<
    K,
    Metric.Metric<I, S>
  >

/** The series of one model, each addressed once (a series per label value, as /metrics shows them). */
const series = {
  finished: labelled(M.transactionsTotal, "state", finalStates),
  inState: labelled(M.transactionsInState, "state", TransactionState.literals),
  errors: labelled(M.errorsTotal, "category", errorCategories),
  retries: labelled(M.retriesTotal, "step", steps),
  stepDuration: labelled(M.stepDuration, "step", steps),
  latency: labelled(M.stepLatency, "step", latencyKeys),
  recovered: labelled(M.recoveredTotal, "outcome", ["all", ...finalStates])
}

/** A clock stopped at `nowMs`: summaries read their recent window as of that instant. */
const clockAt = (nowMs: number): Clock.Clock => ({
  currentTimeMillisUnsafe: () => nowMs,
  currentTimeMillis: Effect.succeed(nowMs),
  currentTimeNanosUnsafe: () => BigInt(nowMs) * 1_000_000n,
  currentTimeNanos: Effect.succeed(BigInt(nowMs) * 1_000_000n),
  monotonicTimeNanosUnsafe: () => BigInt(nowMs) * 1_000_000n,
  monotonicTimeNanos: Effect.succeed(BigInt(nowMs) * 1_000_000n),
  sleep: () => Effect.void
})

/**
 * The one statistics model of the miner: what happened, recorded into Effect metrics held in a registry of its own.
 * The live miner (MiningStats) records as things happen; `stats` without a running miner replays the journal's
 * records into a fresh model (journalStatistics.ts), so both answer from the same code.
 *
 * Each record is one synchronous step on the metrics (through the registry's context), not a chain of effects:
 * the peak of active transactions and the chain-lost correction read a value and write another, and must not
 * interleave with a concurrent record; and the journal view stays a plain function over the records.
 */
export const makeStatisticsModel = (startedAtMs: number) => {
  const registry: Metric.MetricRegistry = new Map()
  const context = Context.make(Metric.MetricRegistry, registry)
  // Rates need event times, which no metric keeps: the finish times of the last window, ascending.
  const finishedAt: Array<number> = []
  const committedAt: Array<number> = []

  const add = <S>(metric: Metric.Metric<number, S>, n: number) => metric.updateUnsafe(n, context)
  const set = (metric: Metric.Metric<number, Metric.GaugeState<number>>, n: number) => metric.updateUnsafe(n, context)
  const count = (metric: Metric.Metric<number, Metric.CounterState<number>>) => metric.valueUnsafe(context).count
  const level = (metric: Metric.Metric<number, Metric.GaugeState<number>>) => metric.valueUnsafe(context).value

  /** Reads a metric of this model; a summary's quantiles are those of its window ending at `nowMs`. */
  const valueAt = <I, S>(metric: Metric.Metric<I, S>, nowMs: number): S =>
    metric.valueUnsafe(Context.add(context, Clock.Clock, clockAt(nowMs)))

  const moveState = (from: TransactionState | null, to: TransactionState) => {
    if (from !== null) set(series.inState[from], Math.max(0, level(series.inState[from]) - 1))
    set(series.inState[to], level(series.inState[to]) + 1)
  }

  const setActive = (active: number) => {
    set(M.activeTransactions, active)
    if (active > level(M.peakActiveTransactions)) set(M.peakActiveTransactions, active)
  }

  const compensated = (done: number, failed: number): void => {
    add(M.compensationsDoneTotal, done)
    add(M.compensationFailuresTotal, failed)
  }

  // Every labelled series exists from the start, at zero: /metrics shows "none yet" as 0, not as a missing series.
  for (const group of Object.values(series)) for (const metric of Object.values(group)) metric.valueUnsafe(context)
  for (const metric of [M.activeTransactions, M.peakActiveTransactions]) set(metric, 0)

  return {
    registry,
    startedAtMs,
    finishedAt,
    committedAt,
    valueAt,

    /** A transaction created (in `pending`), or resumed from the journal at start in `state`. */
    started(state: TransactionState = "pending"): void {
      add(M.transactionsStartedTotal, 1)
      moveState(null, state)
      setActive(level(M.activeTransactions) + 1)
    },

    stateChanged(from: TransactionState, to: TransactionState): void {
      moveState(from, to)
    },

    stepCompleted(step: Step, ms: number, atMs: number): void {
      add(series.stepDuration[step], ms / 1000)
      series.latency[step].updateUnsafe([ms, atMs], context)
    },

    retried(step: Step, times: number): void {
      if (times > 0) add(series.retries[step], times)
    },

    powSolved(hashes: number, ms: number): void {
      add(M.powSolvedTotal, 1)
      add(M.powHashesTotal, hashes)
      add(M.powSecondsTotal, ms / 1000)
    },

    compensated,

    finished(finished: FinishedTransaction, atMs: number): void {
      setActive(Math.max(0, level(M.activeTransactions) - 1))
      add(series.finished[finished.state], 1)
      if (finished.state === "committed") {
        committedAt.push(atMs)
        if (!finished.taskCompleted) add(M.taskCompletionFailuresTotal, 1)
      }
      if (finished.state === "rolled_back") add(M.rollbacksTotal, 1)
      compensated(finished.compensationsDone, finished.compensationsFailed)
      if (finished.errorCategory !== null) add(series.errors[finished.errorCategory], 1)
      finishedAt.push(atMs)
      pruneWindow(finishedAt, atMs)
      pruneWindow(committedAt, atMs)
      series.latency.total.updateUnsafe([finished.durationMs, atMs], context)
      add(M.transactionDuration, finished.durationMs / 1000)
    },

    /** Stopped past the commit point by a shutdown: it stays in the journal for the next start. */
    suspended(): void {
      setActive(Math.max(0, level(M.activeTransactions) - 1))
      add(M.suspendedTotal, 1)
    },

    /** A committed transaction the chain no longer holds, now rolled back. */
    chainLost(): void {
      add(M.chainLostTotal, 1)
      add(series.errors.chain_lost, 1)
      add(M.rollbacksTotal, 1)
      moveState("committed", "rolled_back")
      // Only a commit of this run moves from committed to rolled back; one of an earlier run was never counted here.
      if (count(series.finished.committed) - count(M.commitsLostTotal) > 0) add(M.commitsLostTotal, 1)
    },

    recovered(outcome: RecoveryOutcome): void {
      add(M.recoveryRunsTotal, 1)
      add(series.recovered.all, outcome.recovered)
      add(series.recovered.committed, outcome.committed)
      add(series.recovered.rolled_back, outcome.rolled_back)
      add(series.recovered.failed, outcome.failed)
      add(M.orphanPinsReleasedTotal, outcome.orphan_pins_released.length)
    },

    count,
    level,
    series
  }
}

export type StatisticsModel = ReturnType<typeof makeStatisticsModel>
