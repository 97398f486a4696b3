/**
 * How much of the machine's training capacity becomes committed work (issue 17), in one run of ~6 min on a
 * training-dominated round spec (default: the MLP with 256 hidden units, 600 steps of 64 over 3,840 examples — about
 * 0.55 to 1.2 s a chunk on one CPU thread here, with the machine's load; the default spec trains in ~15 ms, so
 * bench/mining.ts measures the pipeline's overhead instead):
 *
 *   (a) the trainer alone: the miner's trainer (WorkerTrainer: a worker thread of this process, the miner's device and
 *       thread count, 1) one chunk after another, before, between and after the mining runs — chunks per minute, the
 *       capacity. Each mining run is compared with the runs just before and after it: the rate drifts with the
 *       machine's load over minutes.
 *   (b) the whole miner (`runMiner`, as `mine` runs it) on the embedded devnet's throughput rounds with that spec
 *       (runMiner's `throughputSpec`), at difficulty 20, with the embedded verifier (as `mine` runs by default; it
 *       recomputes every chunk in a worker of its own), then again without it — committed per minute over a steady
 *       window.
 *
 * The useful-work ratio is (b) ÷ (a). The trainer's busy fraction is its worker's event-loop utilisation over the
 * window (the worker does nothing but train). Where the rest goes: each committed transaction's steps (the records'
 * step_ms, which MiningStats' latencies are made of), proof of work and journal writes (their spans), the main
 * thread's event-loop utilisation, a sampling profile of the main thread by component (`--no-profile` leaves it
 * out), the CPU of each thread of the process and of anvil. Writes bench/results/utilisation.json.
 *
 *   npm run bench:utilisation [-- --hidden 256 --steps 600 --batch 64 --examples 3840 --window 60 --warmup 4
 *                                 --alone 20 --no-profile]
 *
 * The window of a mining run starts when its `--warmup`-th transaction finishes (session build, JIT, first round)
 * and ends at the first transaction to finish `--window` seconds later; the miner then gets the shutdown of a
 * Ctrl-C (it stops claiming and finishes what is in flight, outside the window). Every setting but the difficulty
 * is the default (R3MES_* variables are ignored). Figures, not assertions: tests never time.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import type { Profiler } from "node:inspector"
import { Session } from "node:inspector/promises"
import { cpus, loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import type { EventLoopUtilization } from "node:perf_hooks"
import type { Worker } from "node:worker_threads"
import { Effect, Layer, Tracer } from "effect"
import * as ort from "onnxruntime-node"
import { runMiner } from "../src/app/runMiner.ts"
import type { MinerConfig } from "../src/domain/MinerConfig.ts"
import { minerConfig, settingsProvider } from "../src/domain/MinerConfigSchema.ts"
import { Task } from "../src/domain/mining.ts"
import type { TransactionRecord } from "../src/domain/TransactionRecord.ts"
import { canonicalRoundSpec, defaultRoundSpec, type RoundSpecV1 } from "../src/domain/training/spec.ts"
import { WorkerTrainer } from "../src/layers/onnx/WorkerTrainer.ts"
import { FileLogger } from "../src/layers/telemetry/FileLogger.ts"
import { Trainer } from "../src/services/Trainer.ts"

const { values: args } = parseArgs({
  allowNegative: true,
  options: {
    profile: { type: "boolean", default: true },
    hidden: { type: "string", default: "256" },
    steps: { type: "string", default: "600" },
    batch: { type: "string", default: "64" },
    examples: { type: "string", default: "3840" },
    window: { type: "string", default: "60" },
    warmup: { type: "string", default: "4" },
    alone: { type: "string", default: "20" },
    difficulty: { type: "string", default: "20" },
    keep: { type: "boolean", default: false }
  }
})
const difficulty = Number(args.difficulty)
const warmup = Number(args.warmup)
const windowSeconds = Number(args.window)
const MINER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

/** The training-dominated spec: the default MLP made wider and trained longer; every chunk has its own examples. */
const benchSpec = (seed: number): RoundSpecV1 => {
  const batch = Number(args.batch)
  const steps = Number(args.steps)
  return {
    ...defaultRoundSpec(seed),
    model: { family: "mlp", hidden: Number(args.hidden) },
    steps,
    batch_size: batch,
    examples_per_chunk: Math.min(Number(args.examples), steps * batch)
  }
}
const specJson = canonicalRoundSpec(benchSpec(1))
const parameters = 784 * Number(args.hidden) + Number(args.hidden) + Number(args.hidden) * 10 + 10

// --- Spans: where the time goes (proof of work, journal writes, claims), by name, placed on performance.now(). ---

const spanMs = new Map<string, Array<{ readonly at: number; readonly ms: number }>>()
const nsToMs = (ns: bigint) => Number(ns) / 1e6
const clockOffsetMs = performance.now() - Date.now()
class TimedSpan extends Tracer.NativeSpan {
  override end(endTime: bigint, exit: Parameters<Tracer.NativeSpan["end"]>[1]): void {
    super.end(endTime, exit)
    const list = spanMs.get(this.name) ?? []
    list.push({ at: nsToMs(endTime) + clockOffsetMs, ms: nsToMs(endTime - this.startTime) })
    spanMs.set(this.name, list)
  }
}
const tracer = Tracer.make({ span: (options) => new TimedSpan(options) })

// --- The main thread's time by component: V8's sampling profiler over each window. ---

const inspector = new Session()
inspector.connect()
await inspector.post("Profiler.enable")
// 2 ms: ~15,000 samples over a 40 s window, at a cost that does not show next to the figures' own spread.
await inspector.post("Profiler.setSamplingInterval", { interval: 2000 })

/** Where a sample's time goes: the first frame from the leaf up whose file says the component. */
const components: ReadonlyArray<readonly [string, RegExp]> = [
  ["trainer JS (data, SGD update, envelope)", /src\/(layers\/onnx|domain\/training)\/|onnxruntime-/],
  ["proof of work (main-thread side)", /src\/(layers\/pow|domain\/pow)/],
  [
    "gradient store (Helia, blockstore/datastore-fs)",
    /src\/layers\/ipfs\/|node_modules\/(helia|@helia|blockstore-|datastore-|steno|ipfs-unixfs|interface-|multiformats|cborg|@ipld|it-|uint8arrays|libp2p|@libp2p|@chainsafe)/
  ],
  ["chain (viem, signing, RPC)", /src\/layers\/chain\/|node_modules\/(viem|@noble|ox|abitype)\//],
  ["journal (SQLite)", /src\/layers\/journal\//],
  ["verifier", /src\/(services\/verification|services\/Verifier|app\/embeddedVerifier)/],
  ["mining core (src/services, src/domain)", /src\/(services|domain)\//],
  ["Effect runtime", /node_modules\/effect\//]
]
const profileShares = (profile: Profiler.Profile): Record<string, number> => {
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
  const componentOf = new Map<number, string>()
  const classify = (id: number): string => {
    const leaf = nodes.get(id)!.callFrame.functionName
    if (leaf === "(idle)") return "idle"
    if (leaf === "(garbage collector)") return "garbage collection"
    if (leaf === "(program)") return "(program: V8 and native, no JS frame)"
    // Work resumed by the event loop (an I/O completion, a fetch's response) has no caller of ours on its stack:
    // Node's own module on it says what it was.
    let internal: string | undefined
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const { functionName, url } = nodes.get(at)!.callFrame
      if (url.startsWith("node:internal/deps/undici")) internal ??= "chain (viem, signing, RPC)"
      if (url.startsWith("node:internal/fs")) internal ??= "file I/O without a caller (store blocks, WAL sync)"
      if (url === "" || url.startsWith("node:")) continue
      if (url.endsWith("bench/utilisation.ts")) return functionName === "run" ? "ONNX session runs" : "this benchmark"
      const found = components.find(([, pattern]) => pattern.test(url))
      if (found !== undefined) return found[0]
    }
    return internal ?? "other (Node internals: streams, timers, microtasks…)"
  }
  const ms: Record<string, number> = {}
  let total = 0
  profile.samples!.forEach((id, i) => {
    const delta = profile.timeDeltas![i]! / 1000
    let component = componentOf.get(id)
    if (component === undefined) componentOf.set(id, component = classify(id))
    ms[component] = (ms[component] ?? 0) + delta
    total += delta
  })
  return Object.fromEntries(Object.entries(ms).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, v / total]))
}

// --- CPU: this process (all threads) and its children (anvil). ---

const childCpuMs = (): number => {
  let total = 0
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (Number(fields[1]) !== process.pid) continue
      total += ((Number(fields[11]) + Number(fields[12])) / 100) * 1000
    } catch {
      // the process ended meanwhile
    }
  }
  return total
}
/** CPU ms of each of this process's threads, by thread id, with its name (MainThread, WorkerThread, V8Worker…). */
const threadCpuMs = (): Map<string, { readonly name: string; readonly ms: number }> => {
  const threads = new Map<string, { readonly name: string; readonly ms: number }>()
  for (const tid of readdirSync("/proc/self/task")) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      threads.set(tid, {
        name: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")),
        ms: ((Number(fields[11]) + Number(fields[12])) / 100) * 1000
      })
    } catch {
      // the thread ended meanwhile
    }
  }
  return threads
}
interface Usage {
  readonly threads: ReturnType<typeof threadCpuMs>
  readonly at: number
  readonly cpu: NodeJS.CpuUsage
  readonly children: number
  readonly elu: ReturnType<typeof performance.eventLoopUtilization>
}
const usage = (): Usage => ({
  threads: threadCpuMs(),
  at: performance.now(),
  cpu: process.cpuUsage(),
  children: childCpuMs(),
  elu: performance.eventLoopUtilization()
})
const cores = cpus().length
const between = (from: Usage, to: Usage) => {
  const ms = to.at - from.at
  return {
    processCores: (to.cpu.user + to.cpu.system - from.cpu.user - from.cpu.system) / 1000 / ms,
    childCores: (to.children - from.children) / ms,
    elu: performance.eventLoopUtilization(to.elu, from.elu).utilization,
    /** Cores used by each thread over the interval, busiest first (threads of one name summed past the top 6). */
    threadCores: [...to.threads]
      .map(([tid, t]) => ({ tid, name: t.name, cores: (t.ms - (from.threads.get(tid)?.ms ?? 0)) / ms }))
      .filter((t) => t.cores >= 0.01)
      .sort((a, b) => b.cores - a.cores)
  }
}

// --- (a) The trainer alone. ---

const config = (dataDir: string): Promise<MinerConfig> =>
  Effect.runPromise(
    minerConfig.parse(settingsProvider({
      env: {},
      overrides: {
        R3MES_DATA_DIR: dataDir,
        R3MES_LOG_FILE: join(dataDir, "miner.log"),
        R3MES_STATS_PORT: "0",
        R3MES_POW_DIFFICULTY: String(difficulty)
      }
    }))
  )

const trainAlone = (device: MinerConfig["device"], seconds: number) => {
  const workers: Array<Worker> = []
  return Effect.runPromise(
    Effect.gen(function*() {
      const trainer = yield* Trainer
      let chunkId = 0
      const trainOne = () =>
        trainer.train(
          new Task({ roundId: 1n, chunkId: chunkId++, modelCid: "", spec: specJson, difficulty, leaseExpiry: 0, deadline: 0 }),
          MINER
        )
      // Warm-up: the session's build and the first runs.
      for (let i = 0; i < 3; i++) yield* trainOne()
      const from = usage()
      const workerFrom = workers.at(-1)!.performance.eventLoopUtilization()
      const chunkMs: Array<number> = []
      while (from.at + seconds * 1000 > performance.now()) {
        const started = performance.now()
        yield* trainOne()
        chunkMs.push(performance.now() - started)
      }
      const busy = workers.at(-1)!.performance.eventLoopUtilization(workerFrom).utilization
      const to = usage()
      const ms = to.at - from.at
      return { chunks: chunkMs.length, ms, chunkMs, busy, ...between(from, to) }
    }).pipe(Effect.provide(WorkerTrainer.layer({ executionProvider: device, onWorker: (w) => workers.push(w) })))
  )
}

// --- (b) The whole miner, its trainer's time recorded. ---

/** [start, end] of every `train` call of the miner's trainer, in ms of performance.now() (end NaN while running). */
const timedTrainer = <E, R>(layer: Layer.Layer<Trainer, E, R>, calls: Array<[number, number]>) =>
  Layer.effect(
    Trainer,
    Effect.gen(function*() {
      const inner = yield* Trainer
      return Trainer.of({
        ...inner,
        train: (task, miner, reproduce) =>
          Effect.suspend(() => {
            const call: [number, number] = [performance.now(), Number.NaN]
            calls.push(call)
            return inner.train(task, miner, reproduce).pipe(Effect.ensuring(Effect.sync(() => (call[1] = performance.now()))))
          })
      })
    })
  ).pipe(Layer.provide(layer))

/** The time inside train calls within [from, to]: summed over calls, and covered by at least one (their union). */
const trainerTime = (calls: ReadonlyArray<readonly [number, number]>, from: number, to: number) => {
  const clipped = calls
    .map(([s, e]) => [Math.max(s, from), Math.min(Number.isNaN(e) ? to : e, to)] as const)
    .filter(([s, e]) => e > s)
    .sort((a, b) => a[0] - b[0])
  let sum = 0
  let union = 0
  let coveredTo = from
  for (const [s, e] of clipped) {
    sum += e - s
    if (e > coveredTo) {
      union += e - Math.max(s, coveredTo)
      coveredTo = e
    }
  }
  return { sum, union }
}

const mean = (values: ReadonlyArray<number>) =>
  values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length

const mine = async (verifier: boolean) => {
  const dataDir = mkdtempSync(join(tmpdir(), "r3mes-bench-utilisation-"))
  const settings = await config(dataDir)
  const calls: Array<[number, number]> = []
  const minerWorkers: Array<Worker> = []
  let workerStart: EventLoopUtilization | undefined
  let workerBusy: number | undefined
  const finished: Array<{ readonly at: number; readonly record: TransactionRecord }> = []
  const verdictsAt: Array<number> = []
  let first: Usage | undefined
  let last: Usage | undefined
  let profile: Promise<{ readonly profile: Profiler.Profile }> | undefined
  const run = await Effect.runPromise(
    runMiner(settings, {
      iterations: undefined,
      embeddedVerifier: verifier,
      learningRounds: false,
      throughputSpec: benchSpec,
      // The miner's trainer as production builds it (app/adapters.ts: a worker thread), with a hand on its worker:
      // the worker's event-loop utilisation over the window is the trainer's busy fraction.
      adapters: (adapters) => ({
        ...adapters,
        trainer: timedTrainer(
          WorkerTrainer.layerWithModelStore({ executionProvider: settings.device, onWorker: (w) => minerWorkers.push(w) }),
          calls
        )
      }),
      onVerdict: () => Effect.sync(() => void verdictsAt.push(performance.now())),
      onFinished: (record) =>
        Effect.sync(() => {
          finished.push({ at: performance.now(), record })
          if (finished.length === warmup) {
            first = usage()
            workerStart = minerWorkers.at(-1)?.performance.eventLoopUtilization()
            if (args.profile) void inspector.post("Profiler.start")
          }
          // The window ends before the drain: the shutdown `mine` gets from Ctrl-C stops claiming, and the
          // transactions in flight finish with the pipeline emptying, not in steady state.
          if (first !== undefined && last === undefined && performance.now() - first.at >= windowSeconds * 1000) {
            last = usage()
            const w = minerWorkers.at(-1)
            if (w !== undefined && workerStart !== undefined) workerBusy = w.performance.eventLoopUtilization(workerStart).utilization
            if (args.profile) profile = inspector.post("Profiler.stop")
            setImmediate(() => process.emit("SIGINT"))
          }
          if (finished.length % 20 === 0) process.stderr.write(`  ${finished.length} transactions\n`)
        })
    }).pipe(
      Effect.provide(FileLogger.layerFromConfig(settings, { console: "stderr", consoleLevel: "Error" })),
      Effect.provideService(Tracer.Tracer, tracer)
    )
  )
  if (args.keep) process.stderr.write(`  data dir kept: ${dataDir}\n`)
  else rmSync(dataDir, { recursive: true, force: true })
  const from = first!.at
  const to = last!.at
  const windowMs = to - from
  const inWindow = finished.filter((f) => f.at > from && f.at <= to)
  const committed = inWindow.filter((f) => f.record.state === "committed")
  const trainer = trainerTime(calls, from, to)
  const spans = (name: string) => (spanMs.get(name) ?? []).filter((s) => s.at > from && s.at <= to).map((s) => s.ms)
  const stepMean = (step: keyof TransactionRecord["step_ms"]) =>
    mean(committed.flatMap(({ record }) => (record.step_ms[step] === null ? [] : [record.step_ms[step]!])))
  const powMs = mean(spans("PowSolver.solve"))
  const n = Math.max(1, committed.length)
  const mainThread = profile === undefined ? undefined : profileShares((await profile).profile)
  return {
    mainThread,
    verifier,
    windowMs,
    transactions: inWindow.length,
    committed: committed.length,
    notCommitted: finished.filter((f) => f.record.state !== "committed"),
    committedPerMinute: (committed.length / windowMs) * 60_000,
    // The worker's busy time: ONNX runs and the trainer's JavaScript.
    trainerBusy: workerBusy ?? Number.NaN,
    trainerInFlight: trainer.union / windowMs,
    trainerSum: trainer.sum / windowMs,
    trainCalls: calls.filter(([s, e]) => e > from && s <= to).length,
    verdictsPerMinute: (verdictsAt.filter((at) => at > from && at <= to).length / windowMs) * 60_000,
    verdicts: run.verdicts,
    maxActive: settings.maxActiveTransactions,
    device: settings.device,
    // Latencies of each committed transaction's steps (they overlap between transactions), and per-committed shares
    // of the spans summed over the window (proof of work and journal writes also overlap with training).
    steps: {
      training: stepMean("training"),
      ipfs_upload: stepMean("ipfs_upload"),
      pow: powMs,
      submit_chain: stepMean("blockchain_submit") - powMs,
      task_complete: stepMean("task_complete"),
      claim: mean(spans("TaskSource.next"))
    },
    perCommitted: {
      training: trainer.sum / n,
      pow: spans("PowSolver.solve").reduce((a, b) => a + b, 0) / n,
      journal: spans("SqliteJournal.save").reduce((a, b) => a + b, 0) / n,
      journal_writes: spans("SqliteJournal.save").length / n,
      journal_meta: spans("SqliteJournal.setMeta").reduce((a, b) => a + b, 0) / n
    },
    ...between(first!, last!)
  }
}

// --- The run. ---

const loadBefore = loadavg()
const started = performance.now()
const probeConfig = await config(mkdtempSync(join(tmpdir(), "r3mes-bench-utilisation-probe-")))
process.stderr.write(`trainer alone, ${specJson}\n`)
// Before and after the mining runs, and their mean as the capacity: on a shared machine the rate drifts with the
// load over a run's minutes (162 to 276 ms a chunk between two runs of one evening).
const aloneSeconds = Number(args.alone)
const aloneBefore = await trainAlone(probeConfig.device, aloneSeconds)
process.stderr.write(`mining with the embedded verifier…\n`)
const withVerifier = await mine(true)
process.stderr.write(`trainer alone again\n`)
const aloneBetween = await trainAlone(probeConfig.device, aloneSeconds)
process.stderr.write(`mining without the verifier…\n`)
const withoutVerifier = await mine(false)
process.stderr.write(`trainer alone again\n`)
const aloneAfter = await trainAlone(probeConfig.device, aloneSeconds)
rmSync(probeConfig.dataDir, { recursive: true, force: true })
type Alone = typeof aloneBefore
/** Runs of the trainer alone merged: rates and fractions weighted by their durations. */
const merged = (...runs: ReadonlyArray<Alone>) => {
  const ms = runs.reduce((a, r) => a + r.ms, 0)
  const weighted = (f: (r: Alone) => number) => runs.reduce((a, r) => a + f(r) * r.ms, 0) / ms
  return {
    chunks: runs.reduce((a, r) => a + r.chunks, 0),
    ms,
    chunkMs: runs.flatMap((r) => r.chunkMs),
    busy: weighted((r) => r.busy),
    processCores: weighted((r) => r.processCores),
    elu: weighted((r) => r.elu)
  }
}
const alone = merged(aloneBefore, aloneBetween, aloneAfter)
const perMinute = (a: { readonly chunks: number; readonly ms: number }) => (a.chunks / a.ms) * 60_000
const trainPerMinute = perMinute(alone)
/** Each mining run's capacity: the trainer alone just before and just after it (the rate drifts over minutes). */
const capacityOf = (r: typeof withVerifier) => perMinute(r.verifier ? merged(aloneBefore, aloneBetween) : merged(aloneBetween, aloneAfter))
const usefulWork = (r: typeof withVerifier) => r.committedPerMinute / capacityOf(r)
const ended = performance.now()
const loadAfter = loadavg()

// --- Figures. ---

const fmt = (ms: number) => (Number.isNaN(ms) ? "-" : ms >= 100 ? `${ms.toFixed(0)} ms` : `${ms.toFixed(1)} ms`)
const pct = (x: number) => `${(x * 100).toFixed(1)} %`
const row = (label: string, ...values: ReadonlyArray<string>) =>
  console.log(`  ${label.padEnd(58)}${values.map((v) => v.padStart(16)).join("")}`)
const sortedMs = [...alone.chunkMs].sort((a, b) => a - b)

console.log(
  `Useful work — spec ${specJson} (${parameters} parameters, ${((parameters * 4) / 1e6).toFixed(2)} MB gradient), ` +
    `difficulty ${difficulty}, device ${probeConfig.device}, 1 intra-op thread, max ${probeConfig.maxActiveTransactions} in flight, ` +
    `${cores} × ${cpus()[0]?.model ?? "cpu"}, Node ${process.version}, onnxruntime-node ${ort.env.versions.node}`
)
console.log("  (a) trainer alone")
row(
  `chunks per minute (${alone.chunks} chunks in ${(alone.ms / 1000).toFixed(1)} s; before / between / after)`,
  `${trainPerMinute.toFixed(1)}  (${[aloneBefore, aloneBetween, aloneAfter].map((a) => perMinute(a).toFixed(1)).join(" / ")})`
)
row(
  "ms per chunk: mean / p50 / p95",
  [mean(alone.chunkMs), sortedMs[Math.floor(sortedMs.length / 2)]!, sortedMs[Math.ceil(sortedMs.length * 0.95) - 1]!]
    .map(fmt)
    .join(" / ")
)
row("CPU of the process (cores) / main thread's event-loop use", `${alone.processCores.toFixed(2)} / ${pct(alone.elu)}`)
const threadsLine = (threads: ReadonlyArray<{ readonly name: string; readonly cores: number }>) =>
  threads.slice(0, 6).map((t) => `${t.name} ${t.cores.toFixed(2)}`).join(", ")
console.log(`    busiest threads (cores), trainer alone between the runs: ${threadsLine(aloneBetween.threadCores)}`)
row("the trainer's worker busy (event-loop use)", pct(alone.busy))
console.log(`  (b) mining on the embedded devnet${"".padEnd(26)}${"verifier on".padStart(16)}${"verifier off".padStart(16)}`)
const both = <A>(f: (run: typeof withVerifier) => A) => [withVerifier, withoutVerifier].map(f)
row("window (s) / transactions in it", ...both((r) => `${(r.windowMs / 1000).toFixed(1)} / ${r.transactions}`))
row("committed per minute", ...both((r) => r.committedPerMinute.toFixed(1)))
row("trainer alone just before and after the run, per minute", ...both((r) => capacityOf(r).toFixed(1)))
row("USEFUL-WORK RATIO (committed ÷ trainer alone around it)", ...both((r) => usefulWork(r).toFixed(3)))
// The verifier recomputes every chunk: two trainers, each needing what the trainer alone used (its worker and the GC
// threads), share the machine's cores — the ratio cannot pass that however small the rest of the pipeline is.
const verifierBound = Math.min(1, cores / (2 * alone.processCores))
row("  bound with the verifier: cores ÷ (2 × the trainer alone's cores)", `${verifierBound.toFixed(2)}`, "-")
row("TRAINER BUSY FRACTION (the miner's trainer worker, ÷ window)", ...both((r) => r.trainerBusy.toFixed(3)))
row("  same, trainer alone", ...both(() => alone.busy.toFixed(3)))
row("  a miner's train call in flight ÷ window", ...both((r) => r.trainerInFlight.toFixed(3)))
row("  train calls' wall time summed ÷ window (>1: overlap)", ...both((r) => r.trainerSum.toFixed(3)))
// Below 1 the verifier falls behind: its recomputation shares the two cores with the miner, and its backlog grows for
// as long as the run lasts.
row(
  "verifier's verdicts per minute (÷ committed)",
  ...both((r) => (r.verifier ? `${r.verdictsPerMinute.toFixed(1)} (${(r.verdictsPerMinute / r.committedPerMinute).toFixed(2)})` : "-"))
)
row("main thread's event-loop use", ...both((r) => pct(r.elu)))
row("CPU: miner process (cores, of " + cores + ") / anvil", ...both((r) => `${r.processCores.toFixed(2)} / ${r.childCores.toFixed(2)}`))
for (const r of [withVerifier, withoutVerifier]) {
  console.log(`    busiest threads (cores), verifier ${r.verifier ? "on" : "off"}: ${threadsLine(r.threadCores)}`)
}
row("wall time per committed transaction", ...both((r) => fmt(r.windowMs / Math.max(1, r.committed))))
row("  main thread busy per committed transaction", ...both((r) => fmt((r.elu * r.windowMs) / Math.max(1, r.committed))))
row("  vs one chunk trained alone", ...both(() => fmt(alone.ms / alone.chunks)))
console.log("  each committed transaction's steps (mean latency; overlapping between transactions)")
for (const [key, label] of [
  ["claim", "claim (TaskSource.next)"],
  ["training", "training"],
  ["ipfs_upload", "upload/pin (CID, add)"],
  ["pow", "proof of work"],
  ["submit_chain", "submit/chain (sign, send, receipt; without PoW)"],
  ["task_complete", "task completion"]
] as const) row(`  ${label}`, ...both((r) => fmt(r.steps[key])))
console.log("  per committed transaction, summed over the window")
row("  time inside the miner's train calls", ...both((r) => fmt(r.perCommitted.training)))
row("  proof of work", ...both((r) => fmt(r.perCommitted.pow)))
row("  journal record writes (SqliteJournal.save) / count", ...both((r) => `${fmt(r.perCommitted.journal)} / ${r.perCommitted.journal_writes.toFixed(1)}`))
row("  journal meta writes (SqliteJournal.setMeta: verifier)", ...both((r) => fmt(r.perCommitted.journal_meta)))
const shares = [withVerifier.mainThread, withoutVerifier.mainThread]
if (shares[0] !== undefined && shares[1] !== undefined) {
  console.log("  the main thread over the window, by component (sampling profile; a sample goes to its leaf's nearest")
  console.log("  caller in a known file): share of the window, and ms per committed transaction")
  const names = [...new Set([...Object.keys(shares[0]), ...Object.keys(shares[1])])]
  for (const name of names) {
    row(
      `  ${name}`,
      ...[withVerifier, withoutVerifier].map((r) => {
        const share = r.mainThread?.[name] ?? 0
        return `${pct(share)} ${fmt((share * r.windowMs) / Math.max(1, r.committed)).padStart(7)}`
      })
    )
  }
}
row("whole run", `${((ended - started) / 1000).toFixed(1)} s`)
row("load average before / after (1 min)", `${loadBefore[0]!.toFixed(2)} / ${loadAfter[0]!.toFixed(2)}`)
for (const r of [withVerifier, withoutVerifier]) {
  if (r.notCommitted.length > 0) {
    const e = r.notCommitted[0]!.record
    console.log(`  verifier ${r.verifier ? "on" : "off"}: ${r.notCommitted.length} not committed, e.g. ${e.state}: ${e.error_message}`)
  }
}
if (withVerifier.verdicts !== undefined) console.log(`  verdicts (verifier on): ${JSON.stringify(withVerifier.verdicts)}`)

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits
const figures = (r: typeof withVerifier) => ({
  committed_per_minute: round(r.committedPerMinute),
  train_only_per_minute_around: round(capacityOf(r)),
  useful_work_ratio: round(usefulWork(r), 3),
  trainer_busy_fraction: round(r.trainerBusy, 3),
  trainer_call_in_flight_fraction: round(r.trainerInFlight, 3),
  trainer_call_time_fraction: round(r.trainerSum, 3),
  window_seconds: round(r.windowMs / 1000),
  committed: r.committed,
  transactions: r.transactions,
  event_loop_utilization: round(r.elu, 3),
  process_cpu_cores: round(r.processCores, 2),
  anvil_cpu_cores: round(r.childCores, 2),
  thread_cores: r.threadCores.slice(0, 8).map((t) => ({ name: t.name, cores: round(t.cores, 2) })),
  verdicts_per_minute: r.verifier ? round(r.verdictsPerMinute) : null,
  main_thread_shares: r.mainThread === undefined
    ? null
    : Object.fromEntries(Object.entries(r.mainThread).map(([k, v]) => [k, round(v, 3)])),
  main_thread_ms_per_transaction: r.mainThread === undefined
    ? null
    : Object.fromEntries(Object.entries(r.mainThread).map(([k, v]) => [k, round((v * r.windowMs) / Math.max(1, r.committed))])),
  step_mean_ms: Object.fromEntries(Object.entries(r.steps).map(([k, v]) => [k, round(v)])),
  overhead_ms_per_transaction: {
    wall: round(r.windowMs / Math.max(1, r.committed)),
    main_thread_busy: round((r.elu * r.windowMs) / Math.max(1, r.committed)),
    training: round(r.perCommitted.training),
    ipfs_upload: round(r.steps.ipfs_upload),
    pow: round(r.perCommitted.pow),
    submit_chain: round(r.steps.submit_chain),
    task_complete: round(r.steps.task_complete),
    journal: round(r.perCommitted.journal),
    journal_writes: round(r.perCommitted.journal_writes),
    journal_meta: round(r.perCommitted.journal_meta)
  }
})
const on = figures(withVerifier)
const result = {
  spec: JSON.parse(specJson) as unknown,
  spec_parameters: parameters,
  difficulty,
  train_only_per_minute: round(trainPerMinute),
  train_only_per_minute_before_between_after: [aloneBefore, aloneBetween, aloneAfter].map((a) => round(perMinute(a))),
  train_only_ms_per_chunk: round(alone.ms / alone.chunks),
  train_only_event_loop_utilization: round(alone.elu, 3),
  train_only_busy_fraction: round(alone.busy, 3),
  ...on,
  train_only_process_cores: round(alone.processCores, 2),
  verifier_on_cpu_bound: round(verifierBound, 3),
  verifier_off: figures(withoutVerifier),
  machine: {
    cores,
    cpu: cpus()[0]?.model ?? "cpu",
    node: process.version,
    onnxruntime_node: ort.env.versions.node,
    device: probeConfig.device,
    intra_op_threads: 1,
    max_active_transactions: probeConfig.maxActiveTransactions,
    load_before: round(loadBefore[0]!, 2),
    load_after: round(loadAfter[0]!, 2)
  },
  run_seconds: round((ended - started) / 1000)
}
const resultsDir = new URL("./results/", import.meta.url)
mkdirSync(resultsDir, { recursive: true })
writeFileSync(new URL("utilisation.json", resultsDir), `${JSON.stringify(result, null, 2)}\n`)
console.log("  wrote bench/results/utilisation.json")
