import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { errorCategories } from "../domain/errors.ts"
import { type LatencySummary, ratePerMinute, summarizeLatency } from "../domain/statistics.ts"
import type { TransactionRecord } from "../domain/TransactionRecord.ts"
import { isTerminal, type Step, steps, TransactionState } from "../domain/TransactionState.ts"
import type { CoordinatorStatistics } from "../services/MiningCoordinator.ts"
import { logToStderr, runCliEffect } from "./errors.ts"
import {
  askMinerOrJournal,
  describeSource,
  formatAge,
  loadMonitorTarget,
  type MonitorTarget,
  monitorFlags,
  noteJsonSource,
  printJson,
  type Source,
  table
} from "./status.ts"

/** The sliding window of the miner's rates (MiningStats): one minute. */
const windowMs = 60_000

/**
 * The statistics of `/stats`'s `atomic_coordinator` that the journal's records can give: counts, rates, latencies,
 * errors, retries and compensations. What only a live process knows (uptime, peak active, PoW hash rate, circuit
 * breakers, recovery runs) is left out rather than guessed. Rates are over the minute ending at the journal's last
 * update (`window_ends_at`), so a stopped miner's last minute of work still reads as a rate.
 */
export const journalStatistics = (records: ReadonlyArray<TransactionRecord>) => {
  const distribution = Object.fromEntries(TransactionState.literals.map((s) => [s, 0])) as Record<TransactionState, number>
  const errors: Record<string, number> = Object.fromEntries(errorCategories.map((c) => [c, 0]))
  const samples = Object.fromEntries([...steps, "total"].map((s) => [s, [] as Array<number>])) as Record<
    Step | "total",
    Array<number>
  >
  const retries = Object.fromEntries([...steps, "total"].map((s) => [s, 0])) as Record<Step | "total", number>
  const finishedAt: Array<number> = []
  const committedAt: Array<number> = []
  let taskCompletionFailures = 0
  let compensationsDone = 0
  let compensationsFailed = 0
  let first = Infinity
  let last = -Infinity

  for (const r of records) {
    const created = Date.parse(r.created_at)
    const updated = Date.parse(r.updated_at)
    first = Math.min(first, created)
    last = Math.max(last, updated)
    distribution[r.state]++
    for (const step of steps) {
      const ms = r.step_ms[step]
      if (ms !== null) samples[step].push(ms)
      const retried = Math.max(0, r.attempts[step] - 1)
      retries[step] += retried
      retries.total += retried
    }
    for (const action of r.rollback_actions) {
      if (action.status === "done") compensationsDone++
      else compensationsFailed++
    }
    if (!isTerminal(r.state)) continue
    finishedAt.push(updated)
    samples.total.push(updated - created)
    if (r.state === "committed") {
      committedAt.push(updated)
      if (!r.task_completed) taskCompletionFailures++
    } else {
      // As MiningStats counts them: the category of what ended a transaction that did not commit.
      const category = r.error_category ?? "unknown"
      errors[category] = (errors[category] ?? 0) + 1
    }
  }

  const finished = finishedAt.length
  const rate = (n: number) => (finished === 0 ? 0 : n / finished)
  const perMinute = (timestamps: ReadonlyArray<number>) =>
    records.length === 0 ? 0 : ratePerMinute(timestamps, last, windowMs, first)
  return {
    total_transactions: records.length,
    active_transactions: records.length - finished,
    committed: distribution.committed,
    failed: distribution.failed,
    rolled_back: distribution.rolled_back,
    success_rate: rate(distribution.committed),
    failure_rate: rate(distribution.failed),
    rollback_rate: rate(distribution.rolled_back),
    task_completion_failures: taskCompletionFailures,
    window_seconds: windowMs / 1000,
    window_ends_at: records.length === 0 ? null : new Date(last).toISOString(),
    transactions_per_minute: perMinute(finishedAt),
    committed_per_minute: perMinute(committedAt),
    latency_ms: Object.fromEntries(
      [...steps, "total" as const].map((s) => [s, summarizeLatency(samples[s])])
    ) as Record<Step | "total", LatencySummary>,
    error_breakdown: errors,
    state_distribution: distribution,
    retries,
    rollbacks: {
      transactions: distribution.rolled_back,
      compensations_done: compensationsDone,
      compensations_failed: compensationsFailed
    }
  }
}

export type JournalStatistics = ReturnType<typeof journalStatistics>

/** Either side's `atomic_coordinator`: the journal's keys always, the live ones when a miner answered. */
type StatisticsView = JournalStatistics & Partial<Omit<CoordinatorStatistics, keyof JournalStatistics>>

const percent = (rate: number) => `${(rate * 100).toFixed(1)}%`
const ms = (value: number | null) => (value === null ? "-" : value < 10 ? value.toFixed(1) : String(Math.round(value)))
const nonZero = (counts: Readonly<Record<string, number>>) =>
  Object.entries(counts).filter(([, n]) => n > 0).map(([name, n]) => `${name} ${n}`).join(", ") || "none"

export const renderStatistics = (
  s: StatisticsView,
  source: Source,
  miner: Readonly<Record<string, unknown>> | undefined
): string => {
  const live = source._tag === "api"
  const rows: Array<[string, string]> = [
    ["transactions", String(s.total_transactions)],
    [live ? "active" : "not finished", `${s.active_transactions}${live ? ` (peak ${s.peak_active ?? "-"})` : " (in flight, or left for recovery)"}`],
    ["committed", `${s.committed} (${percent(s.success_rate)})`],
    ["failed", `${s.failed} (${percent(s.failure_rate)})`],
    ["rolled back", `${s.rolled_back} (${percent(s.rollback_rate)})`],
    ["task not completed", String(s.task_completion_failures)],
    [
      "per minute",
      `${s.transactions_per_minute.toFixed(1)} finished, ${s.committed_per_minute.toFixed(1)} committed (last ${s.window_seconds} s${
        s.window_ends_at === undefined || s.window_ends_at === null ? "" : ` to ${s.window_ends_at}`
      })`
    ],
    ["states", nonZero(s.state_distribution)],
    ["errors", nonZero(s.error_breakdown)],
    ["retries", nonZero(s.retries)],
    [
      "compensations",
      `${s.rollbacks.compensations_done} done, ${s.rollbacks.compensations_failed} failed`
    ]
  ]
  if (s.circuit_breakers !== undefined) {
    rows.push(["circuit breakers", Object.entries(s.circuit_breakers).map(([k, v]) => `${k} ${v}`).join(", ")])
  }
  if (s.pow !== undefined) {
    const rate = s.pow.hashes_per_second === null ? "-" : `${Math.round(s.pow.hashes_per_second).toLocaleString("en")} H/s`
    rows.push(["proofs of work", `${s.pow.solved} solved, ${rate}`])
  }
  if (s.recovery !== undefined) {
    rows.push([
      "recovery",
      `${s.recovery.transactions} transactions (committed ${s.recovery.committed}, rolled back ${s.recovery.rolled_back}, failed ${s.recovery.failed}), ${s.recovery.orphan_pins_released} orphan pins released`
    ])
  }
  const width = Math.max(...rows.map(([name]) => name.length))
  const heading = live && miner !== undefined
    ? `source: ${describeSource(source)}, version ${String(miner["version"] ?? "-")}, up ${
      typeof miner["uptime_seconds"] === "number" ? formatAge(miner["uptime_seconds"]) : "-"
    }`
    : `source: ${describeSource(source)}`
  return [
    heading,
    "",
    ...rows.map(([name, value]) => `  ${name.padEnd(width)}  ${value}`),
    "",
    "  Latency (ms)",
    table(
      ["STEP", "COUNT", "MEAN", "P50", "P95", "P99", "MAX"],
      [...steps, "total" as const].map((step) => {
        const l = s.latency_ms[step]
        return [step, String(l.count), ms(l.mean_ms), ms(l.p50_ms), ms(l.p95_ms), ms(l.p99_ms), ms(l.max_ms)]
      }),
      { indent: "  ", right: [1, 2, 3, 4, 5, 6] }
    )
  ].join("\n")
}

const json = Flag.Boolean("json").pipe(
  Flag.withDescription(
    "Print GET /stats's JSON with \"source\": \"api\" added; from the journal, {source: \"journal\", journal, " +
      "atomic_coordinator} with the keys the records can give."
  ),
  Flag.withDefault(false)
)

const showStatistics = Effect.fnUntraced(function*(target: MonitorTarget, options: { readonly json: boolean }) {
  const found = yield* askMinerOrJournal(target, {
    path: "/stats",
    recognize: (body) => typeof body["atomic_coordinator"] === "object" && body["atomic_coordinator"] !== null,
    fromJournal: (journal) => Effect.map(journal.list({}), (records) => Option.some({ atomic_coordinator: journalStatistics(records) }))
  })
  const body = Option.getOrElse(found.value, () => ({})) as {
    readonly atomic_coordinator: StatisticsView
    readonly miner?: Readonly<Record<string, unknown>>
  }
  if (options.json) {
    yield* noteJsonSource(found.source)
    return yield* printJson(
      found.source._tag === "api"
        ? { source: "api", ...body }
        : { source: "journal", journal: found.source.path, ...body }
    )
  }
  yield* Console.log(renderStatistics(body.atomic_coordinator, found.source, body.miner))
})

export const statsCommand = Command.make(
  "stats",
  { settings: monitorFlags, json },
  Effect.fnUntraced(function*(input) {
    const target = yield* loadMonitorTarget(input.settings)
    yield* runCliEffect(showStatistics(target, { json: input.json }))
  }, logToStderr)
).pipe(
  Command.withDescription(
    "Show the miner's statistics: transactions by state, success / failure / rollback rates, errors by category, " +
      "latency percentiles per step, transactions per minute, retries. Asks the running miner's monitoring API " +
      "(GET /stats on --stats-host:--stats-port); when none answers within 2 s, computes them from the journal in " +
      "--data-dir (never creating it). Exit codes: 0 shown, 1 no miner and no journal, 2 invalid usage."
  ),
  Command.withExamples([
    { command: "r3mes-miner stats", description: "The running miner's statistics, else the journal's" },
    { command: "r3mes-miner stats --json --stats-port 9090", description: "As JSON, from a miner on port 9090" }
  ])
)
