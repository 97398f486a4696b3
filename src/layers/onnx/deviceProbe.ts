/**
 * The child process that tries compute devices for devices.ts: `node deviceProbe.ts DEVICE…` prints one JSON line
 * per device, `{"device","ok":true,"stepMs"}` or `{"device","ok":false,"error"}`, after creating a training session
 * on it and running training steps of the default MLP (warm-ups, then the median of timed steps).
 *
 * A separate process because a device's native code reports on stderr (Dawn's "Found no drivers!"), can hang in a
 * driver, or abort the process: none of that reaches the miner, which only reads these lines.
 */
import * as ort from "onnxruntime-node"
import { MNIST } from "../../domain/training/data.ts"
import { initialWeights } from "../../domain/training/model.ts"
import { defaultRoundSpec } from "../../domain/training/spec.ts"
import { graphFlavourOf, trainingGraph } from "./trainingGraphs.ts"

const BATCH = 32
const WARMUPS = 2
const TIMED = 3

/** A step's inputs: fixed pseudo-random pixels and one-hot labels, the spec's initial weights. */
const probeFeeds = (parameters: ReturnType<typeof trainingGraph>["parameters"]) => {
  const weights = initialWeights(defaultRoundSpec(1))
  const x = new Float32Array(BATCH * MNIST.features).map((_, i) => ((i * 7919) % 256) / 255)
  const y = new Float32Array(BATCH * MNIST.classes)
  for (let i = 0; i < BATCH; i++) y[i * MNIST.classes + (i % MNIST.classes)] = 1
  const feeds: Record<string, ort.Tensor> = {
    x: new ort.Tensor("float32", x, [BATCH, MNIST.features]),
    y: new ort.Tensor("float32", y, [BATCH, MNIST.classes])
  }
  for (const p of parameters) feeds[p.name] = new ort.Tensor("float32", Float32Array.from(weights.get(p.name)!), [...p.shape])
  return feeds
}

const probe = async (device: string): Promise<Record<string, unknown>> => {
  const graph = trainingGraph(defaultRoundSpec(1).model, "float32", graphFlavourOf(device))
  try {
    const session = await ort.InferenceSession.create(graph.onnx, {
      executionProviders: [device],
      graphOptimizationLevel: "disabled",
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      executionMode: "sequential",
      logSeverityLevel: 4
    })
    const feeds = probeFeeds(graph.parameters)
    for (let i = 0; i < WARMUPS; i++) await session.run(feeds)
    const times: Array<number> = []
    for (let i = 0; i < TIMED; i++) {
      const started = performance.now()
      const out = await session.run(feeds)
      times.push(performance.now() - started)
      if (!Number.isFinite(Number(out["loss"]?.data[0]))) throw new Error("the training step's loss is not finite")
    }
    await session.release()
    return { device, ok: true, stepMs: times.sort((a, b) => a - b)[Math.floor(TIMED / 2)] }
  } catch (e) {
    return { device, ok: false, error: e instanceof Error ? e.message : String(e) }
  }
}

// ONNX Runtime's own logging of a failed provider (e.g. the CUDA library's dlopen error) goes to stderr, which the
// parent keeps for the reason; warnings and above only.
ort.env.logLevel = "warning"
for (const device of process.argv.slice(2)) {
  process.stdout.write(`${JSON.stringify(await probe(device))}\n`)
}
