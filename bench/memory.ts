/**
 * Peak memory of a 100 MB gradient: its tensors encoded into an R3GR envelope (the ONNX trainer's own code), hashed, its
 * CID computed and the envelope added to the embedded IPFS store (HeliaStore, as the coordinator's upload step
 * does). Writes bench/results/memory.json.
 *
 *   npm run bench:memory [-- --mb 100]
 *
 * The measurement runs in a child process of its own (started with --expose-gc), so nothing else lives in its heap.
 * There, once the store is open, a small gradient has gone through the same path (code loaded, caches warm) and the
 * 100 MB of tensors exist, the garbage is collected, the resident set is read (VmRSS) and the kernel's peak-RSS mark
 * is reset (`echo 5 > /proc/self/clear_refs`); after each phase the peak (VmHWM) is read. The growth is that peak
 * minus the resident set before: every byte the phases held at once, whether V8 heap, buffers or native memory.
 *
 * Target (issue 17): ≤ 1.3× the gradient, i.e. about one extra copy. That copy is the envelope itself (its tensors
 * are copied into it once, "encode"); the hash, the CID and the add stream over it without copies of their own
 * (src/layers/ipfs/unixfsFile.ts: the CID hashes each chunk where it lies, the add writes every leaf from one reused
 * block buffer and its pin reads back only the parent nodes). With ipfs-unixfs-importer's blocks they added
 * 0.54–0.65× of short-lived buffers (1.54–1.65× in all).
 *
 * The parent also times the embedded store's start in its own process (test/integration/ipfs-helia.test.ts checks it opens no
 * socket, untimed): a first start, which loads helia's modules, and a second one on the same repository.
 *
 * Figures, not assertions: tests never time.
 */
import { spawnSync } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { Effect, Layer } from "effect"
import { type EnvelopeHeader, FORMAT } from "../src/domain/gradientEnvelope.ts"
import { HeliaStore } from "../src/layers/ipfs/HeliaStore.ts"
import { sha256Hex } from "../src/layers/sha256Hex.ts"
import { pseudoGradientEnvelope } from "../src/layers/onnx/OnnxTrainer.ts"
import { GradientStore } from "../src/services/GradientStore.ts"
import { residentBytes, resetPeak } from "./procMemory.ts"
import { testProfile } from "../src/testing/TestTrainer.ts"

const { values: args } = parseArgs({
  options: { mb: { type: "string", default: "100" }, child: { type: "boolean", default: false } }
})
const gradientMb = Number(args.mb)

interface Phase {
  readonly phase: string
  readonly ms: number
  /** Peak resident set since the start of the first phase, minus the resident set before it. */
  readonly peak_growth_bytes: number
}

interface ChildResult {
  readonly gradient_bytes: number
  readonly envelope_bytes: number
  readonly baseline_rss_bytes: number
  readonly peak_rss_growth_bytes: number
  readonly phases: ReadonlyArray<Phase>
  readonly peak_source: "VmHWM" | "sampled"
}

// --- The child: the measurement itself. ---


/** Float32 tensors of `bytes` in total, filled with a xorshift sequence (no two IPFS blocks alike, none deduplicated). */
const gradientTensors = (bytes: number): Array<{ readonly name: string; readonly shape: [number, number]; readonly values: Float32Array }> => {
  const values = Math.floor(bytes / 4)
  const cols = 1000
  const big = Math.floor((values * 0.8) / cols) * cols
  const small = Math.floor((values - big) / cols) * cols
  let state = 0x9e3779b9
  const fill = (n: number) => {
    const out = new Float32Array(n)
    for (let i = 0; i < n; i++) {
      state ^= state << 13
      state ^= state >>> 17
      state ^= state << 5
      out[i] = (state | 0) / 2 ** 40
    }
    return out
  }
  return [
    { name: "fc1.weight", shape: [big / cols, cols], values: fill(big) },
    { name: "fc2.weight", shape: [small / cols, cols], values: fill(small) }
  ]
}

const child = Effect.scoped(Effect.gen(function*() {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error("run the child with --expose-gc")
  const dataDir = mkdtempSync(join(tmpdir(), "r3mes-bench-memory-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dataDir, { recursive: true, force: true })))
  const store = yield* GradientStore.pipe(Effect.provide(HeliaStore.layer({ dataDir })))

  /** The trainer's and the upload step's work on one gradient, phase by phase. */
  const encodeAndAdd = (tensors: ReturnType<typeof gradientTensors>, chunkId: number, after: (phase: string) => void) =>
    Effect.gen(function*() {
      const header: EnvelopeHeader = {
        format: FORMAT,
        round_id: "1",
        chunk_id: chunkId,
        miner: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        model_hash: `0x${"00".repeat(32)}`,
        encoding: "pseudo-gradient",
        tensors: tensors.map((t) => ({ name: t.name, dtype: "float32", shape: t.shape })),
        steps: 10,
        batch_size: 32,
        lr: 0.1,
        loss_before: 2.3,
        loss_after: 2.1,
        profile: testProfile
      }
      const envelope = yield* pseudoGradientEnvelope(header, tensors.map((t) => t.values))
      after("encode (envelope)")
      sha256Hex(envelope)
      after("gradient hash (sha256)")
      const cid = yield* store.computeCid(envelope)
      after("computeCid")
      const added = yield* store.add(envelope)
      after("add (import + pin)")
      if (added !== cid) throw new Error(`added ${added} but computed ${cid}`)
      return envelope.byteLength
    })

  // Warm-up: the same path on 1 MB, so code loading and first-use caches are not counted.
  yield* encodeAndAdd(gradientTensors(1 << 20), 0, () => undefined)

  const tensors = gradientTensors(gradientMb * 1_000_000)
  const gradientBytes = tensors.reduce((n, t) => n + t.values.byteLength, 0)
  gc()
  gc()
  const baseline = residentBytes("VmRSS")
  const exact = resetPeak()
  // Without clear_refs the peak is sampled between phases and on a timer, which misses peaks inside a phase.
  let sampled = baseline
  const sample = () => (sampled = Math.max(sampled, residentBytes("VmRSS")))
  const timer = exact ? undefined : setInterval(sample, 1)
  const phases: Array<Phase> = []
  let last = performance.now()
  const envelopeBytes = yield* encodeAndAdd(tensors, 1, (phase) => {
    if (!exact) sample()
    const now = performance.now()
    phases.push({ phase, ms: now - last, peak_growth_bytes: (exact ? residentBytes("VmHWM") : sampled) - baseline })
    last = now
  })
  if (timer !== undefined) clearInterval(timer)
  const result: ChildResult = {
    gradient_bytes: gradientBytes,
    envelope_bytes: envelopeBytes,
    baseline_rss_bytes: baseline,
    peak_rss_growth_bytes: phases[phases.length - 1]!.peak_growth_bytes,
    phases,
    peak_source: exact ? "VmHWM" : "sampled"
  }
  process.stdout.write(`${JSON.stringify(result)}\n`)
}))

// --- The parent: starts the child, prints and writes the figures. ---

/** Milliseconds to open and close the embedded store: the first start loads helia's modules, the second does not. */
const heliaStarts = Effect.gen(function*() {
  const dataDir = mkdtempSync(join(tmpdir(), "r3mes-bench-helia-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dataDir, { recursive: true, force: true })))
  const startOnce = Effect.gen(function*() {
    const started = performance.now()
    yield* Effect.scoped(Layer.build(HeliaStore.layer({ dataDir })))
    return performance.now() - started
  })
  return { first: yield* startOnce, second: yield* startOnce }
}).pipe(Effect.scoped)

const parent = async () => {
  const run = spawnSync(
    process.execPath,
    ["--expose-gc", fileURLToPath(import.meta.url), "--child", "--mb", String(gradientMb)],
    { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 1 << 20 }
  )
  if (run.status !== 0) throw new Error(`the measuring child failed (exit ${run.status ?? run.signal})`)
  const measured = JSON.parse(run.stdout.trim().split("\n").pop()!) as ChildResult
  const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`
  const ratio = measured.peak_rss_growth_bytes / measured.gradient_bytes
  const row = (label: string, value: string, extra = "") => console.log(`  ${label.padEnd(44)}${value.padStart(12)}  ${extra}`)

  console.log(`Gradient memory — ${mb(measured.gradient_bytes)} of float32 tensors, embedded IPFS store (Helia), Node ${process.version}`)
  row("resident set before", mb(measured.baseline_rss_bytes), "(store open, tensors allocated)")
  for (const phase of measured.phases) {
    row(`peak growth after ${phase.phase}`, mb(phase.peak_growth_bytes), `${(phase.peak_growth_bytes / measured.gradient_bytes).toFixed(2)}× · ${phase.ms.toFixed(0)} ms`)
  }
  row("peak RSS growth", mb(measured.peak_rss_growth_bytes), `${ratio.toFixed(2)}× the gradient (target ≤ 1.3×; ${measured.peak_source})`)
  const starts = await Effect.runPromise(heliaStarts)
  row("embedded IPFS store start (open + close)", `${starts.second.toFixed(0)} ms`, `first start ${starts.first.toFixed(0)} ms (loads helia)`)

  const result = {
    gradient_bytes: measured.gradient_bytes,
    peak_rss_growth_bytes: measured.peak_rss_growth_bytes,
    ratio: Math.round(ratio * 100) / 100,
    envelope_bytes: measured.envelope_bytes,
    peak_source: measured.peak_source,
    phases: measured.phases.map((p) => ({ ...p, ms: Math.round(p.ms) })),
    helia_start_ms: { first: Math.round(starts.first), second: Math.round(starts.second) }
  }
  const resultsDir = new URL("./results/", import.meta.url)
  mkdirSync(resultsDir, { recursive: true })
  writeFileSync(new URL("memory.json", resultsDir), `${JSON.stringify(result, null, 2)}\n`)
  console.log("  wrote bench/results/memory.json")
}

if (args.child) await Effect.runPromise(child)
else await parent()
