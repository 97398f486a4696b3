/**
 * Training throughput, in one run (~15 s on the CPU, ~1 min more with WebGPU on a software driver): the default
 * round's model trained through the Trainer port (whole chunks: data selection, SGD steps, envelope, hash) and its
 * bare training graph, next to one large MatMul through the same runtime with the same session settings, for 1 and 2
 * intra-op threads on the CPU provider. Then the CPU and the WebGPU provider side by side (chunks/s through the
 * Trainer port, graph runs/s, WebGPU ÷ CPU), WebGPU measured where it can run (a GPU's Vulkan driver, or SwiftShader's
 * from Debian's chromium: test/support/webgpu.ts), else a line saying why.
 *
 *   npm run bench:train
 *
 * GFLOP/s counts the MatMul multiply-adds of forward + backward (2 FLOPs each; elementwise ops not counted), so the
 * ratio to the large MatMul says how much of the machine's GEMM rate the small model reaches. Each figure is the
 * median of three timed passes after a warm-up. Figures, not assertions: tests never time.
 */
import { Effect } from "effect"
import { cpus } from "node:os"
import * as ort from "onnxruntime-node"
import { Task } from "../src/domain/mining.ts"
import { chunkBatch, chunkExampleIndices } from "../src/domain/training/data.ts"
import { initialWeights } from "../src/domain/training/model.ts"
import { canonicalRoundSpec, defaultRoundSpec, type RoundSpec } from "../src/domain/training/spec.ts"
import { loadMnist } from "../src/layers/onnx/MnistDigits.ts"
import { OnnxTrainer } from "../src/layers/onnx/OnnxTrainer.ts"
import { encodeModel, GraphBuilder } from "../src/layers/onnx/onnxModel.ts"
import { createSession, type Device } from "../src/layers/onnx/ortSession.ts"
import { graphFlavourOf, trainingGraph } from "../src/layers/onnx/trainingGraphs.ts"
import { Trainer } from "../src/services/Trainer.ts"
import { useWebgpu } from "../test/support/webgpu.ts"

const MINER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
const MATMUL = 1024

/** Units per second of `run(count)`, median of three passes after a warm-up pass. */
const measure = async (count: number, run: (count: number) => Promise<void>): Promise<number> => {
  await run(Math.max(1, Math.ceil(count / 4)))
  const rates: Array<number> = []
  for (let pass = 0; pass < 3; pass++) {
    const started = performance.now()
    await run(count)
    rates.push(count / ((performance.now() - started) / 1000))
  }
  return rates.sort((a, b) => a - b)[1]!
}

const chunksPerSecond = (spec: RoundSpec, threads: number, chunks: number, device: Device = "cpu") =>
  Effect.runPromise(
    Effect.gen(function*() {
      const trainer = yield* Trainer
      let chunkId = 0
      return yield* Effect.promise(() =>
        measure(chunks, async (count) => {
          for (let i = 0; i < count; i++) {
            const task = new Task({
              roundId: 1n,
              chunkId: chunkId++,
              modelCid: "",
              spec: canonicalRoundSpec(spec),
              difficulty: 16,
              leaseExpiry: 0,
              deadline: 0
            })
            await Effect.runPromise(trainer.train(task, MINER))
          }
        })
      )
    }).pipe(Effect.provide(OnnxTrainer.layer({ intraOpNumThreads: threads, executionProvider: device })))
  )

/** Training-graph runs per second on one fixed batch (no data handling, no update). */
const graphRunsPerSecond = async (spec: RoundSpec, threads: number, runs: number, device: Device = "cpu") => {
  const graph = trainingGraph(spec.model, "float32", graphFlavourOf(device))
  const { session } = await Effect.runPromise(createSession(graph.onnx, { intraOpNumThreads: threads, executionProvider: device }))
  const dataset = await Effect.runPromise(loadMnist())
  const batch = chunkBatch(dataset, chunkExampleIndices(spec.dataset_seed, 0, dataset.count, spec.examples_per_chunk), 0, spec.batch_size)
  const weights = initialWeights(spec)
  const feeds: Record<string, ort.Tensor> = {
    x: new ort.Tensor("float32", batch.x, [batch.size, 784]),
    y: new ort.Tensor("float32", batch.y, [batch.size, 10])
  }
  for (const p of graph.parameters) feeds[p.name] = new ort.Tensor("float32", Float32Array.from(weights.get(p.name)!), [...p.shape])
  const rate = await measure(runs, async (count) => {
    for (let i = 0; i < count; i++) await session.run(feeds)
  })
  await session.release()
  return { rate, flopsPerExample: graph.flopsPerExample }
}

/** One n×n by n×n float32 MatMul per run. */
const matMulRunsPerSecond = async (threads: number, runs: number) => {
  const g = new GraphBuilder("float32")
  g.input("a", [MATMUL, MATMUL])
  g.input("b", [MATMUL, MATMUL])
  g.op("MatMul", ["a", "b"], {}, "c")
  g.output("c", [MATMUL, MATMUL])
  const { session } = await Effect.runPromise(createSession(encodeModel(g.build("matmul")), { intraOpNumThreads: threads, executionProvider: "cpu" }))
  const fill = () => Float32Array.from({ length: MATMUL * MATMUL }, (_, i) => ((i * 7919) % 1000) / 1000)
  const feeds = { a: new ort.Tensor("float32", fill(), [MATMUL, MATMUL]), b: new ort.Tensor("float32", fill(), [MATMUL, MATMUL]) }
  const rate = await measure(runs, async (count) => {
    for (let i = 0; i < count; i++) await session.run(feeds)
  })
  await session.release()
  return rate
}

const gflops = (flopsPerSecond: number) => (flopsPerSecond / 1e9).toFixed(2)

const main = async () => {
  await Effect.runPromise(loadMnist())
  const webgpu = useWebgpu()
  console.log(`onnxruntime-node ${ort.env.versions.node} · ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}`)
  const models: ReadonlyArray<readonly [string, RoundSpec]> = [
    ["default (mlp 784-64-10)", defaultRoundSpec(1)],
    ["bitnet-lora 784-64-10 r4", defaultRoundSpec(1, "bitnet-lora")]
  ]
  const cpuRates = new Map<string, { readonly chunks: number; readonly graph: number }>()
  for (const threads of [1, 2]) {
    const matMul = await matMulRunsPerSecond(threads, threads === 1 ? 6 : 10)
    const matMulGflops = (matMul * 2 * MATMUL ** 3) / 1e9
    console.log(`\nintra-op threads ${threads}: MatMul ${MATMUL}×${MATMUL}×${MATMUL}  ${gflops(matMul * 2 * MATMUL ** 3)} GFLOP/s`)
    for (const [name, spec] of models) {
      const samplesPerChunk = spec.steps * spec.batch_size
      const chunks = await chunksPerSecond(spec, threads, 40)
      const graph = await graphRunsPerSecond(spec, threads, 400)
      const trainerFlops = chunks * samplesPerChunk * graph.flopsPerExample
      const graphFlops = graph.rate * spec.batch_size * graph.flopsPerExample
      if (threads === 1) cpuRates.set(name, { chunks, graph: graph.rate })
      console.log(
        `  ${name.padEnd(26)} trainer ${(chunks * samplesPerChunk).toFixed(0).padStart(7)} samples/s ` +
          `(${(1000 / chunks).toFixed(1)} ms/chunk of ${spec.steps}×${spec.batch_size}) ${gflops(trainerFlops).padStart(6)} GFLOP/s ` +
          `= ${((trainerFlops / 1e9 / matMulGflops) * 100).toFixed(1)}% of MatMul · graph alone ` +
          `${(graph.rate * spec.batch_size).toFixed(0).padStart(7)} samples/s ${gflops(graphFlops).padStart(6)} GFLOP/s ` +
          `= ${((graphFlops / 1e9 / matMulGflops) * 100).toFixed(1)}%`
      )
    }
  }

  console.log("\nCPU and WebGPU, 1 intra-op thread (WebGPU ÷ CPU: above 1 the device is faster)")
  if ("skip" in webgpu) {
    console.log(`  webgpu: not measured — ${webgpu.skip}`)
    return
  }
  console.log(`  webgpu on the Vulkan driver VK_ICD_FILENAMES=${webgpu.icd}`)
  for (const [name, spec] of models) {
    const cpu = cpuRates.get(name)!
    // Fewer units than on the CPU: a software driver steps ~20× slower. The warm-up pass compiles the shaders.
    const chunks = await chunksPerSecond(spec, 1, 6, "webgpu")
    const graph = await graphRunsPerSecond(spec, 1, 40, "webgpu")
    const column = (device: string, c: number, g: number) =>
      `${device} ${c.toFixed(2).padStart(7)} chunks/s ${g.toFixed(1).padStart(7)} graph runs/s (${(1000 / g).toPrecision(2)} ms/step)`
    console.log(
      `  ${name.padEnd(26)} ${column("cpu", cpu.chunks, cpu.graph)} · ${column("webgpu", chunks, graph.rate)} · ` +
        `webgpu ÷ cpu ×${(chunks / cpu.chunks).toPrecision(2)} chunks, ×${(graph.rate / cpu.graph).toPrecision(2)} graph runs`
    )
  }
}

await main()
