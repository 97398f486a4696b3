/**
 * Committed mining transactions per minute, end to end: the whole miner (`runMiner`, as `r3mes-miner mine` runs
 * it: embedded anvil devnet, embedded Helia, ONNX trainer, SQLite journal, fast PoW solver) in this process, on a
 * fresh temporary data dir, at difficulty 20 with the devnet's default round model. Writes bench/results/mining.json.
 *
 *   npm run bench:mining [-- --iterations 200 --warmup 20 --difficulty 20 --max-active 10 --keep]
 *
 * The first `--warmup` transactions (model compilation, JIT, first round) are not counted: the rate is the number
 * of transactions committed after the warm-up's last one finished, over the time from then to the last one.
 * Latency is end to end, from the start of the claim to the final state (the record's own created → final time,
 * which leaves out the claim, is shown too). Where the time goes comes from each record's step_ms and from the
 * durations of the miner's spans (a tracer in this process records them), and the concurrency reached from the
 * number of transactions in flight over the measured window. Every other setting is the default (R3MES_* variables
 * of the environment are ignored, so a run measures the miner as shipped).
 *
 * The rate over each fifth of the window shows whether it holds: on longer runs (`--iterations 1500`) it falls as
 * the devnet's chain grows, because anvil's automine takes longer per block the more blocks it holds (1.4 ms at
 * the start, ~20 ms after 5,000 blocks; foundry-rs/foundry#6124).
 *
 * Figures, not assertions: tests never time.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { cpus, loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { Effect, Tracer } from "effect"
import type { TransactionRecord } from "../src/domain/TransactionRecord.ts"
import { minerConfig, settingsProvider } from "../src/domain/MinerConfigSchema.ts"
import { runMiner } from "../src/app/runMiner.ts"
import { FileLogger } from "../src/layers/telemetry/FileLogger.ts"

const { values: args } = parseArgs({
  options: {
    iterations: { type: "string", default: "200" },
    warmup: { type: "string", default: "20" },
    difficulty: { type: "string", default: "20" },
    "max-active": { type: "string" },
    keep: { type: "boolean", default: false }
  }
})
const measured = Number(args.iterations)
const warmup = Number(args.warmup)
const difficulty = Number(args.difficulty)

// --- Where the time goes: every span's duration, by name, and the transactions in flight over time. ---

const spanMs = new Map<string, Array<{ readonly at: number; readonly ms: number }>>()
/** Start of each claim (TaskSource.next), by "round/chunk" once the claim knows its chunk. */
const claimStarted = new Map<string, number>()
/** (time, transactions in flight) at every change, in ms of performance.now(). */
const inFlight: Array<readonly [number, number]> = [[performance.now(), 0]]
let active = 0
const nsToMs = (ns: bigint) => Number(ns) / 1e6
// The tracer's clock and performance.now() share no origin: spans are placed on the performance.now() axis by
// the offset between the two taken once here.
const clockOffsetMs = performance.now() - Date.now()

class TimedSpan extends Tracer.NativeSpan {
  override end(endTime: bigint, exit: Parameters<Tracer.NativeSpan["end"]>[1]): void {
    super.end(endTime, exit)
    const at = nsToMs(endTime) + clockOffsetMs
    const ms = nsToMs(endTime - this.startTime)
    const list = spanMs.get(this.name) ?? []
    list.push({ at, ms })
    spanMs.set(this.name, list)
    if (this.name === "TaskSource.next") {
      const round = this.attributes.get("r3mes.round_id")
      const chunk = this.attributes.get("r3mes.chunk_id")
      if (round !== undefined) claimStarted.set(`${round}/${chunk}`, nsToMs(this.startTime) + clockOffsetMs)
    }
    if (this.name === "MiningCoordinator.executeAtomicMining") inFlight.push([performance.now(), --active])
  }
}

const tracer = Tracer.make({
  span(options) {
    if (options.name === "MiningCoordinator.executeAtomicMining") inFlight.push([performance.now(), ++active])
    return new TimedSpan(options)
  }
})

// --- CPU: this process (miner, Helia, ONNX, PoW workers) and its children (anvil). ---

const clockTicks = 100
const childCpuMs = (): number => {
  let total = 0
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (Number(fields[1]) !== process.pid) continue
      total += ((Number(fields[11]) + Number(fields[12])) / clockTicks) * 1000
    } catch {
      // the process ended meanwhile
    }
  }
  return total
}

// --- The run. ---

const dataDir = mkdtempSync(join(tmpdir(), "r3mes-bench-mining-"))
const config = await Effect.runPromise(
  minerConfig.parse(settingsProvider({
    env: {},
    overrides: {
      R3MES_DATA_DIR: dataDir,
      R3MES_LOG_FILE: join(dataDir, "miner.log"),
      R3MES_STATS_PORT: "0",
      R3MES_POW_DIFFICULTY: String(difficulty),
      ...(args["max-active"] === undefined ? {} : { R3MES_MAX_ACTIVE_TRANSACTIONS: args["max-active"] })
    }
  }))
)

const total = warmup + measured
const finished: Array<{ readonly at: number; readonly record: TransactionRecord }> = []
interface Usage {
  readonly at: number
  readonly cpu: NodeJS.CpuUsage
  readonly children: number
  readonly elu: ReturnType<typeof performance.eventLoopUtilization>
}
const usage = (): Usage => ({
  at: performance.now(),
  cpu: process.cpuUsage(),
  children: childCpuMs(),
  elu: performance.eventLoopUtilization()
})
// Taken when the warm-up's last transaction and the run's last one finish (anvil is gone once runMiner returns).
let windowStartUsage: Usage | undefined
let windowEndUsage: Usage | undefined
const loadBefore = loadavg()
const started = performance.now()
let startedUp = 0

const run = await Effect.runPromise(
  runMiner(config, {
    iterations: total,
    // The miner's own throughput: the embedded verifier would recompute every chunk on the same two cores.
    embeddedVerifier: false,
    // …and the pipeline alone: learning rounds of 8 chunks drain the miner's pipeline at every round's aggregate.
    learningRounds: false,
    onStarted: () => Effect.sync(() => (startedUp = performance.now())),
    onFinished: (record) =>
      Effect.sync(() => {
        finished.push({ at: performance.now(), record })
        if (finished.length === warmup) windowStartUsage = usage()
        if (finished.length === total) windowEndUsage = usage()
        if (finished.length % 50 === 0) process.stderr.write(`  ${finished.length}/${total} transactions\n`)
      })
  }).pipe(
    Effect.provide(FileLogger.layerFromConfig(config, { console: "stderr", consoleLevel: "Error" })),
    Effect.provideService(Tracer.Tracer, tracer)
  )
)
const ended = performance.now()
const loadAfter = loadavg()
const first = windowStartUsage!
const last = windowEndUsage!
const cpuMs = (last.cpu.user + last.cpu.system - first.cpu.user - first.cpu.system) / 1000
const childrenMs = last.children - first.children
const elu = performance.eventLoopUtilization(last.elu, first.elu)

// --- Figures. ---

const percentile = (values: ReadonlyArray<number>, p: number): number => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

const windowStart = first.at
const windowEnd = last.at
const windowMs = windowEnd - windowStart
const counted = finished.slice(warmup)
const committed = counted.filter((f) => f.record.state === "committed")
const committedPerMinute = (committed.length / windowMs) * 60_000

const endToEnd = committed.flatMap(({ at, record }) => {
  const claim = claimStarted.get(`${record.round_id}/${record.chunk_id}`)
  return claim === undefined ? [] : [at - claim]
})
const recordMs = committed.map(({ record }) => Date.parse(record.updated_at) - Date.parse(record.created_at))
const steps = ["training", "ipfs_upload", "blockchain_submit", "task_complete"] as const
const stepMs = (step: (typeof steps)[number]) =>
  committed.flatMap(({ record }) => (record.step_ms[step] === null ? [] : [record.step_ms[step]!]))

/** Time-weighted mean and maximum of the transactions in flight over the window. */
const concurrency = (() => {
  let weighted = 0
  let max = 0
  let level = 0
  let previous = windowStart
  for (const [at, count] of inFlight) {
    if (at <= windowStart) {
      level = count
      continue
    }
    if (at > windowEnd) break
    weighted += level * (at - previous)
    max = Math.max(max, level, count)
    previous = at
    level = count
  }
  weighted += level * (windowEnd - previous)
  return { mean: weighted / windowMs, max }
})()

const spanFigures = (name: string) => {
  const list = (spanMs.get(name) ?? []).filter((s) => s.at >= windowStart && s.at <= windowEnd).map((s) => s.ms)
  return { count: list.length, p50: percentile(list, 50), p95: percentile(list, 95), sum: list.reduce((a, b) => a + b, 0) }
}

const fmt = (ms: number) => (Number.isNaN(ms) ? "-" : ms >= 100 ? `${ms.toFixed(0)} ms` : `${ms.toFixed(1)} ms`)
const row = (label: string, value: string, extra = "") => console.log(`  ${label.padEnd(58)}${value.padStart(16)}  ${extra}`)

console.log(
  `Mining end to end — embedded devnet, difficulty ${difficulty}, default model, ` +
    `max ${config.maxActiveTransactions} in flight, ${cpus().length} cores, Node ${process.version}`
)
row(
  `committed per minute (${committed.length} of ${counted.length} after ${warmup} warm-up)`,
  committedPerMinute.toFixed(1),
  `${(committedPerMinute / 60).toFixed(2)} tx/s over ${(windowMs / 1000).toFixed(1)} s`
)
// The rate over each fifth of the window: a rate that falls as the run goes on shows here, not in the mean.
const fifths = Array.from({ length: 5 }, (_, i) => {
  const from = windowStart + (windowMs * i) / 5
  const to = windowStart + (windowMs * (i + 1)) / 5
  return (committed.filter((f) => f.at > from && f.at <= to).length / (to - from)) * 60_000
})
row("  over each fifth of the window", fifths.map((r) => r.toFixed(0)).join(" "))
row("latency p50 / p95 (claim start → committed)", `${fmt(percentile(endToEnd, 50))} / ${fmt(percentile(endToEnd, 95))}`)
row("latency p50 / p95 (record: created → committed)", `${fmt(percentile(recordMs, 50))} / ${fmt(percentile(recordMs, 95))}`)
row("transactions in flight: mean / max", `${concurrency.mean.toFixed(2)} / ${concurrency.max}`)
console.log("  per step (records' step_ms)                                        p50 /  p95")
for (const step of steps) {
  const values = stepMs(step)
  row(`  ${step}`, `${fmt(percentile(values, 50))} / ${fmt(percentile(values, 95))}`)
}
console.log("  spans in the window                                                p50 /  p95   count   busy")
for (
  const name of [
    "TaskSource.next",
    "Chain.rounds",
    "Chain.claimChunk",
    "MiningCoordinator.createTransaction",
    "Trainer.train",
    "HeliaStore.add",
    "PowSolver.solve",
    "Chain.submitGradient",
    "Chain.completeChunk"
  ]
) {
  const s = spanFigures(name)
  if (s.count === 0) continue
  // busy: the span's total time over the window's — 1.00 means one of them was running all the time.
  row(`  ${name}`, `${fmt(s.p50)} / ${fmt(s.p95)}`, `${String(s.count).padStart(5)}  ${(s.sum / windowMs).toFixed(2)}`)
}
const cores = cpus().length
row("CPU: miner process (all threads), share of all cores", `${((cpuMs / windowMs / cores) * 100).toFixed(0)} %`)
row("CPU: anvil (child processes), share of all cores", `${((childrenMs / windowMs / cores) * 100).toFixed(0)} %`)
row("event loop utilization (main thread)", `${(elu.utilization * 100).toFixed(0)} %`)
row("start-up (devnet, Helia, journal, recovery)", fmt(startedUp - started))
row("whole run", `${((ended - started) / 1000).toFixed(1)} s`)
// Other work on the machine shows here first: the figures above are only comparable at a similar load.
row("load average before / after (1 min)", `${loadBefore[0]!.toFixed(2)} / ${loadAfter[0]!.toFixed(2)}`)

const notCommitted = finished.filter((f) => f.record.state !== "committed")
if (notCommitted.length > 0) {
  console.log(`  ${notCommitted.length} not committed, e.g. ${notCommitted[0]!.record.state}: ${notCommitted[0]!.record.error_message}`)
}
if (run.summary.transactions !== total) console.log(`  (the loop ran ${run.summary.transactions} transactions, not ${total})`)

const round = (ms: number) => Math.round(ms * 10) / 10
const result = {
  difficulty,
  committed_per_minute: round(committedPerMinute),
  p50_ms: round(percentile(endToEnd, 50)),
  p95_ms: round(percentile(endToEnd, 95)),
  transactions: counted.length,
  committed: committed.length,
  warmup,
  window_seconds: round(windowMs / 1000),
  max_active_transactions: config.maxActiveTransactions,
  in_flight_mean: round(concurrency.mean),
  in_flight_max: concurrency.max,
  record_p50_ms: round(percentile(recordMs, 50)),
  record_p95_ms: round(percentile(recordMs, 95)),
  step_p50_ms: Object.fromEntries(steps.map((step) => [step, round(percentile(stepMs(step), 50))])),
  claim_p50_ms: round(spanFigures("TaskSource.next").p50),
  committed_per_minute_by_fifth: fifths.map((r) => Math.round(r))
}
const resultsDir = new URL("./results/", import.meta.url)
mkdirSync(resultsDir, { recursive: true })
writeFileSync(new URL("mining.json", resultsDir), `${JSON.stringify(result, null, 2)}\n`)
console.log("  wrote bench/results/mining.json")
if (args.keep) console.log(`  data dir kept: ${dataDir}`)
else rmSync(dataDir, { recursive: true, force: true })
