import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { steps } from "../domain/TransactionState.ts"
import type { CoordinatorStatistics } from "../services/MiningCoordinator.ts"
import { journalStatistics, type JournalStatistics } from "../services/stats/journalStatistics.ts"
import { logToStderr, runCliEffect } from "./errors.ts"
import {
  askMinerOrJournal,
  describeSource,
  loadMonitorTarget,
  type MonitorTarget,
  monitorFlags,
  noteJsonSource,
  printJson,
  type Source
} from "./monitorClient.ts"
import { formatAge, table } from "./render.ts"

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

/** GET /stats, or its journal part: the API keeps `atomic_coordinator` open-ended, the renderer reads what it knows. */
interface StatisticsBody {
  readonly atomic_coordinator: StatisticsView
  readonly miner?: Readonly<Record<string, unknown>>
}

const showStatistics = Effect.fnUntraced(function*(target: MonitorTarget, options: { readonly json: boolean }) {
  const found = yield* askMinerOrJournal(target, {
    path: "/stats",
    ask: (client) => Effect.map(client.stats(), (stats) => stats as unknown as StatisticsBody),
    fromJournal: (journal) =>
      Effect.map(journal.list({}), (records) => Option.some<StatisticsBody>({ atomic_coordinator: journalStatistics(records) }))
  })
  const body = Option.getOrElse(found.value, () => ({}) as StatisticsBody)
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
      "(GET /stats on --stats-host:--stats-port); when none answers within 2 s, computes them from the journal, never creating it: a fleet's in " +
      "Postgres with --fleet-database-url (R3MES_FLEET_DATABASE_URL), else the one in --data-dir. Exit codes: 0 shown, 1 no miner and no journal, 2 invalid usage."
  ),
  Command.withExamples([
    { command: "r3mes-miner stats", description: "The running miner's statistics, else the journal's" },
    { command: "r3mes-miner stats --json --stats-port 9090", description: "As JSON, from a miner on port 9090" }
  ])
)
