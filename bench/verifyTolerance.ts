/**
 * Honest differences between determinism profiles (DESIGN.md "Verification"): the same chunks trained by honest
 * trainers that differ only in the profile this machine can produce — 1 vs 2 intra-op threads, and every graph
 * optimisation level — compared with the reference profile (1 thread, optimisations disabled, the default). Where
 * the WebGPU provider can run (a GPU's Vulkan driver, or SwiftShader's from Debian's chromium: test/support/webgpu.ts),
 * the same chunks trained on it are compared with the same CPU reference: what a CPU verifier sees of an honest
 * WebGPU miner. Without it a line says why, and the CPU rows are unchanged.
 *
 *   npm run bench:tolerance
 *
 * Per tensor the relative L2 distance ‖a − b‖ / ‖b‖ (b = the reference's pseudo-gradient, float64 sums), and the
 * absolute differences of loss_before and loss_after. Each row is the maximum over CHUNKS chunks. The largest
 * distance of all is what `measuredHonestDistance` (src/domain/verificationTolerance.ts) records; the verifier's
 * default tolerance is ten times it; the largest WebGPU one is `measuredCpuWebgpuDistance`. Every chunk with a tensor
 * at 1e-3 or more is listed under its row (chunk, tensor, distance): a ReLU tie flipped. WebGPU rows also count the
 * chunks over the verifier's default tolerance: there a verifier without WebGPU (it recomputes on the CPU) rejects an
 * honest WebGPU miner; one with WebGPU recomputes on it.
 *
 * Then the other side: how close each cheater (src/testing/Cheaters.ts) comes to the honest result of the reference
 * profile — per chunk the largest tensor distance (what a verifier tests against its tolerance), the minimum over
 * chunks. A tolerance separates honest from dishonest only if it lies between the two tables.
 */
import { Effect } from "effect"
import { cpus } from "node:os"
import * as ort from "onnxruntime-node"
import { decodeEnvelope, float32Values } from "../src/domain/gradientEnvelope.ts"
import { defaultVerifyTolerance } from "../src/domain/minerSettings.ts"
import { Task, type TrainingResult } from "../src/domain/mining.ts"
import { canonicalRoundSpec, defaultRoundSpec, type RoundSpec } from "../src/domain/training/spec.ts"
import { hostIsa } from "../src/layers/onnx/cpuIsa.ts"
import { OnnxTrainer, type OnnxTrainerOptions } from "../src/layers/onnx/OnnxTrainer.ts"
import { graphOptimizationLevels } from "../src/layers/onnx/ortSession.ts"
import { Trainer } from "../src/services/Trainer.ts"
import { Cheater, type CheaterKind } from "../src/testing/Cheaters.ts"
import { useWebgpu } from "../test/support/webgpu.ts"

const MINER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
const CHUNKS = 32
/** A chunk whose tensor is this far from the reference flipped a ReLU tie (honest rounding stays below 1e-4). */
const FAR = 1e-3

const reference: OnnxTrainerOptions = { intraOpNumThreads: 1, graphOptimizationLevel: "disabled", executionProvider: "cpu" }

const webgpu = useWebgpu()
const webgpuVariant: OnnxTrainerOptions = { ...reference, executionProvider: "webgpu" }

const variants: ReadonlyArray<OnnxTrainerOptions> = [
  { ...reference, intraOpNumThreads: 2 },
  ...graphOptimizationLevels.filter((l) => l !== "disabled").map((l) => ({ ...reference, graphOptimizationLevel: l })),
  { ...reference, intraOpNumThreads: 2, graphOptimizationLevel: "all" },
  ...("skip" in webgpu ? [] : [webgpuVariant])
]

const models: ReadonlyArray<readonly [string, RoundSpec]> = [
  ["mlp 784-64-10, 10 steps (default)", defaultRoundSpec(1)],
  ["bitnet-lora 784-64-10 r4, 10 steps", defaultRoundSpec(1, "bitnet-lora")],
  ["mlp 784-64-10, 100 steps", { ...defaultRoundSpec(1), steps: 100, examples_per_chunk: 3200 }],
  // Big enough for ONNX Runtime to split the MatMuls between threads.
  ["mlp 784-256-10, batch 128", { ...defaultRoundSpec(1), model: { family: "mlp", hidden: 256 }, batch_size: 128, steps: 10, examples_per_chunk: 1280 }],
  ["bitnet-lora 784-256-10 r8, batch 128", {
    ...defaultRoundSpec(1),
    model: { family: "bitnet-lora", hidden: 256, rank: 8, alpha: 16 },
    batch_size: 128,
    steps: 10,
    examples_per_chunk: 1280,
    lr: 0.05
  }]
]

const task = (spec: RoundSpec, chunkId: number) =>
  new Task({ roundId: 1n, chunkId, modelCid: "", spec: canonicalRoundSpec(spec), difficulty: 16, leaseExpiry: 0, deadline: 0 })

const trainAll = (options: OnnxTrainerOptions, spec: RoundSpec, cheat?: CheaterKind) =>
  Effect.gen(function*() {
    const trainer = yield* Trainer
    return yield* Effect.forEach(Array.from({ length: CHUNKS }, (_, i) => i), (chunk) => trainer.train(task(spec, chunk), MINER))
  }).pipe(Effect.provide(cheat === undefined ? OnnxTrainer.layer(options) : Cheater.layer(cheat, OnnxTrainer.layer(options))))

/** The cheaters whose tensors differ (made_up_losses keeps the honest tensors: the loss check catches it). */
const tensorCheats: ReadonlyArray<CheaterKind> = Cheater.kinds.filter((k) => k !== "made_up_losses")

const relativeL2 = (a: Float32Array, b: Float32Array): number => {
  let diff = 0
  let norm = 0
  for (let i = 0; i < a.length; i++) {
    diff += (a[i]! - b[i]!) ** 2
    norm += b[i]! ** 2
  }
  return norm === 0 ? (diff === 0 ? 0 : Number.POSITIVE_INFINITY) : Math.sqrt(diff / norm)
}

interface Difference {
  readonly distance: number
  readonly tensor: string
  readonly lossBefore: number
  readonly lossAfter: number
  /** Every tensor's distance, in header order. */
  readonly tensors: ReadonlyArray<{ readonly name: string; readonly distance: number }>
}

const compare = (a: TrainingResult, b: TrainingResult): Effect.Effect<Difference, unknown> =>
  Effect.gen(function*() {
    const [x, y] = [yield* decodeEnvelope(a.envelope), yield* decodeEnvelope(b.envelope)]
    const tensors = x.tensors.map((t, i) => ({ name: t.spec.name, distance: relativeL2(float32Values(t), float32Values(y.tensors[i]!)) }))
    const worst = tensors.reduce((w, t) => (t.distance > w.distance ? { distance: t.distance, tensor: t.name } : w), { distance: 0, tensor: "-" })
    return { ...worst, tensors, lossBefore: Math.abs(a.lossBefore - b.lossBefore), lossAfter: Math.abs(a.lossAfter - b.lossAfter) }
  })

const label = (o: OnnxTrainerOptions) =>
  `${o.executionProvider === "webgpu" ? "webgpu · " : ""}threads ${o.intraOpNumThreads} · ${o.graphOptimizationLevel}`
const sci = (x: number) => (x === 0 ? "0" : x.toExponential(2))

const main = Effect.gen(function*() {
  console.log(
    `onnxruntime-node ${ort.env.versions.node} · cpu · isa ${hostIsa()} · ${process.platform}-${process.arch} · ` +
      `${cpus().length} × ${cpus()[0]?.model ?? "cpu"} · ${CHUNKS} chunks per row · reference: cpu · ${label(reference)}`
  )
  console.log(
    "skip" in webgpu
      ? `webgpu: not measured — ${webgpu.skip}`
      : `webgpu: VK_ICD_FILENAMES=${webgpu.icd} (rows "webgpu · …")`
  )
  console.log(`\n${"model".padEnd(38)} ${"profile".padEnd(29)} ${"max rel L2".padStart(10)}  ${"tensor".padEnd(12)} ${"Δloss_before".padStart(12)} ${"Δloss_after".padStart(12)}`)
  let overall = { distance: 0, where: "-" }
  let overallWebgpu = { distance: 0, where: "-" }
  let overallWebgpuWithin = { distance: 0, where: "-" }
  const webgpuOver: Array<string> = []
  let lossWebgpu = 0
  const farChunks: Array<string> = []
  const bases = new Map<string, ReadonlyArray<TrainingResult>>()
  let lossOverall = 0
  for (const [name, spec] of models) {
    const base = yield* trainAll(reference, spec)
    for (const variant of variants) {
      const started = performance.now()
      const other = yield* trainAll(variant, spec)
      const seconds = (performance.now() - started) / 1000
      const differences = yield* Effect.forEach(other, (result, i) => compare(result, base[i]!))
      const worst = differences.reduce((w, d) => (d.distance > w.distance ? d : w))
      const lossBefore = Math.max(...differences.map((d) => d.lossBefore))
      const lossAfter = Math.max(...differences.map((d) => d.lossAfter))
      lossOverall = Math.max(lossOverall, lossBefore, lossAfter)
      const where = `${name} · ${label(variant)} · ${worst.tensor}`
      if (worst.distance > overall.distance) overall = { distance: worst.distance, where }
      const onWebgpu = variant.executionProvider === "webgpu"
      if (onWebgpu) {
        lossWebgpu = Math.max(lossWebgpu, lossBefore, lossAfter)
        if (worst.distance > overallWebgpu.distance) overallWebgpu = { distance: worst.distance, where }
        for (const [chunk, d] of differences.entries()) {
          if (d.distance <= defaultVerifyTolerance && d.distance > overallWebgpuWithin.distance) {
            overallWebgpuWithin = { distance: d.distance, where: `${name} · chunk ${chunk} · ${d.tensor}` }
          }
        }
        const over = differences.flatMap((d, chunk) => (d.distance > defaultVerifyTolerance ? [`${chunk} (${sci(d.distance)})`] : []))
        webgpuOver.push(`${name}: ${over.length}/${CHUNKS}${over.length === 0 ? "" : ` — chunks ${over.join(", ")}`}`)
      }
      const extra = onWebgpu
        ? `  ${differences.filter((d) => d.distance > defaultVerifyTolerance).length}/${CHUNKS} over tolerance · ${(seconds / CHUNKS).toFixed(2)} s/chunk`
        : ""
      console.log(
        `${name.padEnd(38)} ${label(variant).padEnd(29)} ${sci(worst.distance).padStart(10)}  ${worst.tensor.padEnd(12)} ` +
          `${sci(lossBefore).padStart(12)} ${sci(lossAfter).padStart(12)}${extra}`
      )
      for (const [chunk, d] of differences.entries()) {
        const far = d.tensors.filter((t) => t.distance >= FAR)
        if (far.length === 0) continue
        const line = `chunk ${chunk}: ${far.map((t) => `${t.name} ${sci(t.distance)}`).join(", ")} (other tensors ≤ ` +
          `${sci(Math.max(0, ...d.tensors.filter((t) => t.distance < FAR).map((t) => t.distance)))})`
        console.log(`${"".padEnd(38)}   ≥ ${FAR}: ${line}`)
        farChunks.push(`${name} · ${label(variant)} · ${line}`)
      }
    }
    bases.set(name, base)
  }
  console.log(`\n${"model".padEnd(38)} ${"cheater".padEnd(20)} ${"min over chunks of the max tensor rel L2".padStart(10)}`)
  let closest = { distance: Number.POSITIVE_INFINITY, where: "-" }
  for (const [name, spec] of models) {
    for (const kind of tensorCheats) {
      const cheated = yield* trainAll(reference, spec, kind)
      const differences = yield* Effect.forEach(cheated, (result, i) => compare(result, bases.get(name)![i]!))
      const least = differences.reduce((w, d) => (d.distance < w.distance ? d : w))
      if (least.distance < closest.distance) closest = { distance: least.distance, where: `${name} · ${kind}` }
      console.log(`${name.padEnd(38)} ${kind.padEnd(20)} ${sci(least.distance).padStart(10)}`)
    }
  }
  console.log(`\nmax relative L2 distance: ${sci(overall.distance)} (${overall.where})`)
  if ("skip" in webgpu) {
    console.log(`max relative L2 CPU ↔ WebGPU: not measured (${webgpu.skip})`)
  } else {
    console.log(`max relative L2 CPU ↔ WebGPU: ${sci(overallWebgpu.distance)} (${overallWebgpu.where})`)
    console.log(`  on the chunks within the default tolerance: ${sci(overallWebgpuWithin.distance)} (${overallWebgpuWithin.where})`)
    console.log(`  max loss difference CPU ↔ WebGPU: ${sci(lossWebgpu)}`)
    console.log(`  chunks over the default tolerance ${sci(defaultVerifyTolerance)} (a verifier without WebGPU rejects them):`)
    for (const line of webgpuOver) console.log(`    ${line}`)
  }
  console.log(`chunks with a tensor at ≥ ${FAR} (ReLU ties): ${farChunks.length === 0 ? "none" : ""}`)
  for (const line of farChunks) console.log(`  ${line}`)
  console.log(`max loss difference: ${sci(lossOverall)}`)
  console.log(`default tolerance (×10): ${sci(overall.distance * 10)}`)
  console.log(`closest cheater: ${sci(closest.distance)} (${closest.where})`)
})

await Effect.runPromise(main)
