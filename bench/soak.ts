/**
 * Soak: the miner's core (`minerLayer`: MiningLoop, MiningCoordinator, MiningStats, ServiceBreakers) run as an
 * endless miner is (no `iterations`; stopped once `--transactions` have finished), on the real SQLite journal in a
 * temporary data dir and in-memory ports whose own state stays bounded (bench/soakPorts.ts), with the live clock.
 * Does the resident set stay flat once the miner is warm? Writes bench/results/soak.json.
 *
 *   npm run bench:soak [-- --transactions 20000 --sample-every 250 --faults mix|none --ports soak|testing
 *                          --loop endless|bounded --max-active 10 --heap-snapshots DIR --keep]
 *
 * Every `--sample-every` finished transactions the garbage is collected (`--expose-gc`: the bench restarts itself
 * with it) and the resident set, the V8 heap and the journal's size are read. The run is split into four quarters
 * by transaction count; each quarter's peak resident set is the kernel's high-water mark (VmHWM, reset at each
 * quarter's start through /proc/self/clear_refs; where that is refused, the highest sample). The first quarter
 * holds the warm-up (JIT, SQLite's page cache, and V8's young generation growing to its cap: ~20–30 s into a run
 * the committed heap steps from ~100 to ~170 MB and the resident set by ~45 MB, once): the figures that matter are
 * the last quarter's peak over the second's, and the heap's slope over the last three quarters (bytes kept per
 * transaction). `--heap-snapshots DIR` writes V8 heap snapshots at the end of the second and the last quarter, to
 * diff; writing one grows the resident set by tens of MB, so such a run's RSS figures are not comparable.
 *
 * `--loop bounded` runs `MiningLoop.run({ iterations })` instead, as `r3mes-miner mine --iterations N` does: its
 * summary then keeps every final record (the CLI's `--json` report lists them), which shows as heap growth.
 *
 * `--ports testing` runs the same soak on src/testing's fakes (TestChain, TestGradientStore, TestTrainer,
 * TestPowSolver, TestTaskSource), which keep every submission, pin, block, claim and solve for tests to inspect:
 * the difference is their share of the growth. `--faults mix` (default) fails a few calls of each port, never twice
 * in a row, so retries, rollbacks with compensation and non-critical task failures run too.
 *
 * Figures, not assertions: tests never time.
 */
import { spawnSync } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs"
import { cpus, loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { getHeapSpaceStatistics, getHeapStatistics, writeHeapSnapshot } from "node:v8"
import { Deferred, Effect, Logger } from "effect"
import { type MiningError, NetworkError, ResourceError, ValidationError } from "../src/domain/errors.ts"
import type { TransactionRecord } from "../src/domain/TransactionRecord.ts"
import { SqliteJournal } from "../src/layers/journal/SqliteJournal.ts"
import { type MinerAdapters, minerLayer } from "../src/app/minerLayer.ts"
import { MiningCoordinator } from "../src/services/MiningCoordinator.ts"
import { MiningLoop } from "../src/services/MiningLoop.ts"
import { TestChain } from "../src/testing/TestChain.ts"
import { testMinerConfig } from "../src/testing/testConfig.ts"
import { TestGradientStore } from "../src/testing/TestGradientStore.ts"
import { TestPowSolver } from "../src/testing/TestPowSolver.ts"
import { TestTaskSource } from "../src/testing/TestTaskSource.ts"
import { TestTrainer } from "../src/testing/TestTrainer.ts"
import { makeSoakPorts, mixedFaults, noFaults, type SoakFaults, type SoakPortsState } from "./soakPorts.ts"
import { residentBytes, resetPeak } from "./procMemory.ts"

const { values: args } = parseArgs({
  options: {
    transactions: { type: "string", default: "20000" },
    "sample-every": { type: "string", default: "250" },
    faults: { type: "string", default: "mix" },
    ports: { type: "string", default: "soak" },
    loop: { type: "string", default: "endless" },
    "max-active": { type: "string", default: "10" },
    "heap-snapshots": { type: "string" },
    keep: { type: "boolean", default: false }
  }
})

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) {
  // Measured after a full collection only: restart with the collector exposed, same arguments.
  const run = spawnSync(process.execPath, ["--expose-gc", fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: "inherit"
  })
  process.exit(run.status ?? 1)
}
const collect = gc!

const target = Number(args.transactions)
const sampleEvery = Number(args["sample-every"])
const maxActive = Number(args["max-active"])
const portsKind = args.ports
const faultsKind = args.faults
if (!Number.isInteger(target) || target < 4 * sampleEvery || target % (4 * sampleEvery) !== 0) {
  throw new Error(`--transactions must be a multiple of 4 × --sample-every (${4 * sampleEvery})`)
}
if (portsKind !== "soak" && portsKind !== "testing") throw new Error("--ports is soak or testing")
if (faultsKind !== "mix" && faultsKind !== "none") throw new Error("--faults is mix or none")
const loopKind = args.loop
if (loopKind !== "endless" && loopKind !== "bounded") throw new Error("--loop is endless or bounded")
const faults: SoakFaults = faultsKind === "mix" ? mixedFaults : noFaults

// --- Memory readings. ---


const dataDir = mkdtempSync(join(tmpdir(), "r3mes-bench-soak-"))
const journalPath = join(dataDir, "journal.sqlite")
const fileSize = (path: string) => {
  try {
    return statSync(path).size
  } catch {
    return 0
  }
}
const journalBytes = () => fileSize(journalPath) + fileSize(`${journalPath}-wal`)

interface Sample {
  readonly transactions: number
  readonly seconds: number
  readonly rss: number
  readonly heap_used: number
  /** The V8 heap's committed size (its young generation grows and shrinks with the allocation rate). */
  readonly heap_total: number
  readonly new_space: number
  readonly malloced: number
  readonly external: number
  readonly array_buffers: number
  readonly journal_bytes: number
}

interface Quarter {
  readonly quarter: number
  readonly transactions: number
  readonly seconds: number
  readonly tx_per_second: number
  /** The kernel's high-water mark over the quarter (or the highest sample, see `peak_source`). */
  readonly peak_rss: number
  /** The highest resident set sampled after a full collection. */
  readonly max_sampled_rss: number
  readonly max_heap_used: number
  /** Heap used after a full collection, at the quarter's end. */
  readonly end_heap_used: number
  /** The V8 heap's committed size at the quarter's end: it steps up once when the young generation reaches its cap. */
  readonly end_heap_total: number
}

const samples: Array<Sample> = []
const quarters: Array<Quarter> = []
const snapshots: Array<string> = []
const exactPeak = resetPeak()
const started = performance.now()
let quarterStarted = started
let finished = 0
const states = { committed: 0, failed: 0, rolled_back: 0, other: 0, task_not_completed: 0 }
const logs = { Info: 0, Warn: 0, Error: 0, other: 0 }
const firstErrors: Array<string> = []

const sample = () => {
  collect()
  const memory = process.memoryUsage()
  const s: Sample = {
    transactions: finished,
    seconds: (performance.now() - started) / 1000,
    rss: memory.rss,
    heap_used: memory.heapUsed,
    heap_total: memory.heapTotal,
    new_space: getHeapSpaceStatistics().find((space) => space.space_name === "new_space")?.space_size ?? 0,
    malloced: getHeapStatistics().malloced_memory,
    external: memory.external,
    array_buffers: memory.arrayBuffers,
    journal_bytes: journalBytes()
  }
  samples.push(s)
  const quarterSize = target / 4
  if (finished % quarterSize === 0) {
    const q = finished / quarterSize
    const inQuarter = samples.filter((x) => x.transactions > finished - quarterSize && x.transactions <= finished)
    const now = performance.now()
    const maxSampled = Math.max(...inQuarter.map((x) => x.rss))
    quarters.push({
      quarter: q,
      transactions: quarterSize,
      seconds: (now - quarterStarted) / 1000,
      tx_per_second: quarterSize / ((now - quarterStarted) / 1000),
      peak_rss: exactPeak ? residentBytes("VmHWM") : maxSampled,
      max_sampled_rss: maxSampled,
      max_heap_used: Math.max(...inQuarter.map((x) => x.heap_used)),
      end_heap_used: s.heap_used,
      end_heap_total: s.heap_total
    })
    process.stderr.write(
      `  quarter ${q}: ${finished}/${target} transactions, rss ${(s.rss / 1e6).toFixed(1)} MB, ` +
        `heap ${(s.heap_used / 1e6).toFixed(1)} MB\n`
    )
    if (args["heap-snapshots"] !== undefined && (q === 2 || q === 4)) {
      mkdirSync(args["heap-snapshots"], { recursive: true })
      snapshots.push(writeHeapSnapshot(join(args["heap-snapshots"], `soak-q${q}.heapsnapshot`)))
    }
    if (exactPeak) resetPeak()
    quarterStarted = performance.now()
  }
}

// --- The ports. ---

const config = testMinerConfig({ dataDir, maxActiveTransactions: maxActive })
const journal = SqliteJournal.layer({ path: journalPath })

/** The same faults as the soak ports', by call number, through src/testing's fault plans. */
const every = (n: number, error: () => MiningError) => (n === 0 ? {} : {
  failWhen: (callIndex: number) => ((callIndex + 1) % n === 0 ? error() : undefined)
})

const soakPorts = portsKind === "soak" ? makeSoakPorts({ faults }) : undefined
const adapters: MinerAdapters<MiningError> = soakPorts !== undefined
  ? { ...soakPorts, journal }
  : {
    chain: TestChain.layer({
      rounds: [{ roundId: 1n, chunkCount: 2 * target + 1000, difficulty: 16, deadline: 4_102_444_800 }],
      faults: {
        submitGradient: every(faults.submitRetryEvery, () =>
          new NetworkError({ message: "soak: connection reset before signing", service: "chain" }))
      }
    }),
    taskSource: TestTaskSource.layer({
      faults: {
        complete: every(faults.completeFailEvery, () => new NetworkError({ message: "soak: task completion lost", service: "chain" }))
      }
    }),
    gradientStore: TestGradientStore.layer({
      faults: { add: every(faults.uploadRollbackEvery, () => new ValidationError({ message: "soak: the store refused the content" })) }
    }),
    trainer: TestTrainer.layer({
      faults: {
        train: every(faults.trainFailEvery, () => new ResourceError({ message: "soak: out of memory while training", resource: "memory" }))
      }
    }),
    powSolver: TestPowSolver.layer(),
    journal
  }

// Every log line goes through the logging pipeline (annotations and all), counted, not written.
const countingLogger = Logger.make((options) => {
  const level = options.logLevel
  if (level === "Info" || level === "Warn" || level === "Error") logs[level]++
  else logs.other++
  if (level === "Error" && firstErrors.length < 3) {
    firstErrors.push((options.message as ReadonlyArray<unknown>).map(String).join(" ").slice(0, 200))
  }
})

// --- The run. ---

const onFinished = (stop: Deferred.Deferred<void>) => (record: TransactionRecord) =>
  Effect.suspend(() => {
    finished++
    if (record.state === "committed" || record.state === "failed" || record.state === "rolled_back") states[record.state]++
    else states.other++
    if (record.state === "committed" && !record.task_completed) states.task_not_completed++
    if (finished % sampleEvery === 0 && finished <= target) sample()
    return finished === target ? Deferred.succeed(stop, undefined) : Effect.void
  })

const loadBefore = loadavg()
const outcome = await Effect.runPromise(
  Effect.gen(function*() {
    const coordinator = yield* MiningCoordinator
    const loop = yield* MiningLoop
    // As `r3mes-miner mine` starts: the journal against the chain, then recovery (nothing to do in a fresh dir).
    yield* coordinator.auditChain
    yield* coordinator.recoverTransactions({ orphanGrace: "0 seconds", releaseUnknownPins: true })
    const stop = yield* Deferred.make<void>()
    const summary = yield* loop.run(
      loopKind === "endless"
        ? { stop: Deferred.await(stop), onFinished: onFinished(stop) }
        // As `mine --iterations N` runs: the loop's summary keeps every final record by default.
        : { iterations: target, onFinished: onFinished(stop) }
    )
    const statistics = yield* coordinator.getStatistics
    return { summary, statistics }
  }).pipe(
    Effect.provide(minerLayer(config, adapters)),
    Effect.provide(Logger.layer([countingLogger]))
  )
)
const ended = performance.now()
const loadAfter = loadavg()
const fakes: SoakPortsState | undefined = soakPorts?.state()

// What the journal holds once the miner has closed it: every finished transaction, with its history.
const db = new DatabaseSync(journalPath, { readOnly: true })
const count = (sql: string) => (db.prepare(sql).get() as { n: number }).n
const journalRows = {
  transactions: count("SELECT count(*) AS n FROM transactions"),
  committed: count("SELECT count(*) AS n FROM transactions WHERE state = 'committed'"),
  events: count("SELECT count(*) AS n FROM events")
}
db.close()
const journalFinal = journalBytes()

// --- Figures. ---

/** Least-squares slope of heap used (after collection) per transaction, over the samples past the first quarter. */
const heapSlope = (() => {
  const points = samples.filter((s) => s.transactions > target / 4 && s.transactions <= target)
  const n = points.length
  const mx = points.reduce((a, p) => a + p.transactions, 0) / n
  const my = points.reduce((a, p) => a + p.heap_used, 0) / n
  const sxy = points.reduce((a, p) => a + (p.transactions - mx) * (p.heap_used - my), 0)
  const sxx = points.reduce((a, p) => a + (p.transactions - mx) ** 2, 0)
  return sxx === 0 ? 0 : sxy / sxx
})()

const q = (i: number) => quarters[i]!
const ratio = q(3).peak_rss / q(1).peak_rss
const heapRatio = q(3).max_heap_used / q(1).max_heap_used
const seconds = (ended - started) / 1000
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`
const row = (label: string, value: string, extra = "") => console.log(`  ${label.padEnd(50)}${value.padStart(26)}  ${extra}`)

console.log(
  `Soak — minerLayer on the SQLite journal and ${portsKind === "soak" ? "bounded soak ports (bench/soakPorts.ts)" : "src/testing's ports"}, ` +
    `faults ${faultsKind}, ${loopKind} loop, max ${maxActive} in flight, live clock, ${cpus().length} cores, Node ${process.version}`
)
row(
  "transactions finished",
  String(finished),
  `${states.committed} committed (${states.task_not_completed} task not completed), ${states.rolled_back} rolled back, ` +
    `${states.failed} failed${states.other > 0 ? `, ${states.other} other` : ""}`
)
row("wall time / rate", `${seconds.toFixed(1)} s / ${(finished / seconds).toFixed(0)} tx/s`)
console.log("  quarter   transactions     tx/s    peak RSS   max RSS after GC   max heap after GC   V8 heap committed")
for (const quarter of quarters) {
  console.log(
    `  Q${quarter.quarter}      ${String(quarter.transactions * quarter.quarter).padStart(12)}  ${quarter.tx_per_second.toFixed(0).padStart(7)}` +
      `  ${mb(quarter.peak_rss).padStart(10)}  ${mb(quarter.max_sampled_rss).padStart(17)}  ${mb(quarter.max_heap_used).padStart(18)}` +
      `  ${mb(quarter.end_heap_total).padStart(18)}`
  )
}
row(
  "peak RSS last quarter / second quarter",
  `${ratio.toFixed(3)}`,
  `${ratio <= 1.1 ? "flat (≤ 1.10)" : "NOT flat (> 1.10)"}; ${exactPeak ? "VmHWM per quarter" : "highest sample per quarter"}`
)
row("heap after GC last quarter / second quarter", heapRatio.toFixed(3))
row("heap slope over Q2–Q4 (after GC)", `${heapSlope.toFixed(1)} B/tx`, `${mb(heapSlope * target)} per ${target} tx`)
row("journal file (+ WAL) at the end", mb(journalFinal), `${(journalFinal / finished).toFixed(0)} B/tx`)
row(
  "journal rows",
  `${journalRows.transactions} tx / ${journalRows.events} events`,
  `${journalRows.committed} committed`
)
if (fakes !== undefined) {
  row(
    "soak ports' memory",
    `${fakes.rememberedSubmissions} submissions kept`,
    `of ${fakes.submitted}; ${fakes.pinned} pinned, ${fakes.unpinned} unpinned, none kept; round ${fakes.round}`
  )
}
row("log lines (info / warn / error)", `${logs.Info} / ${logs.Warn} / ${logs.Error}`)
if (firstErrors.length > 0) row("  e.g.", "", firstErrors[0]!)
row("loop summary keeps (records)", String(outcome.summary.records.length))
row("load average before / after (1 min)", `${loadBefore[0]!.toFixed(2)} / ${loadAfter[0]!.toFixed(2)}`)
for (const path of snapshots) row("heap snapshot", "", path)

const result = {
  ports: portsKind,
  faults: faultsKind,
  loop: loopKind,
  max_active_transactions: maxActive,
  transactions: finished,
  committed: states.committed,
  rolled_back: states.rolled_back,
  failed: states.failed,
  task_not_completed: states.task_not_completed,
  wall_seconds: Math.round(seconds * 10) / 10,
  tx_per_second: Math.round(finished / seconds),
  peak_rss_ratio_q4_q2: Math.round(ratio * 1000) / 1000,
  flat: ratio <= 1.1,
  peak_source: exactPeak ? "VmHWM" : "sampled",
  heap_ratio_q4_q2: Math.round(heapRatio * 1000) / 1000,
  heap_slope_bytes_per_tx: Math.round(heapSlope * 10) / 10,
  quarters: quarters.map((x) => ({
    ...x,
    seconds: Math.round(x.seconds * 10) / 10,
    tx_per_second: Math.round(x.tx_per_second)
  })),
  journal_bytes: journalFinal,
  journal_rows: journalRows,
  loop_summary_records: outcome.summary.records.length,
  statistics: {
    committed: outcome.statistics.committed,
    rolled_back: outcome.statistics.rolled_back,
    failed: outcome.statistics.failed,
    retries: outcome.statistics.retries.total
  },
  log_lines: logs,
  load_average_1min: [Math.round(loadBefore[0]! * 100) / 100, Math.round(loadAfter[0]! * 100) / 100],
  sample_every: sampleEvery,
  samples: samples.map((s) => ({ ...s, seconds: Math.round(s.seconds * 10) / 10 }))
}
const resultsDir = new URL("./results/", import.meta.url)
mkdirSync(resultsDir, { recursive: true })
// Only the headline configuration writes soak.json; the comparisons write beside it.
const resultFile = portsKind === "testing" ? "soak-testing-ports.json" : loopKind === "bounded" ? "soak-bounded-loop.json" : "soak.json"
writeFileSync(new URL(resultFile, resultsDir), `${JSON.stringify(result, null, 2)}\n`)
console.log(`  wrote bench/results/${resultFile}`)
if (args.keep) console.log(`  data dir kept: ${dataDir}`)
else rmSync(dataDir, { recursive: true, force: true })
