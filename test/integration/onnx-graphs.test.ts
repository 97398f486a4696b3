import { afterAll, assert, describe, it } from "@effect/vitest"
import * as ort from "onnxruntime-node"
import { initialWeights } from "../../src/domain/training/model.ts"
import { Prng } from "../../src/domain/training/prng.ts"
import type { ModelSpec } from "../../src/domain/training/spec.ts"
import { encodeModel, GraphBuilder } from "../../src/layers/onnx/onnxModel.ts"
import { type GraphElemType, LOSS_OUTPUT, trainingGraph } from "../../src/layers/onnx/trainingGraphs.ts"

/**
 * The generated training graphs compute the loss and its exact gradients: each analytic gradient output is compared
 * with central finite differences of the loss, on the float64 build of the same graph (so eps can be small), and the
 * float32 graph (the one training runs) agrees with the float64 one.
 */

const models: ReadonlyArray<ModelSpec> = [
  { family: "mlp", hidden: 6 },
  { family: "bitnet-lora", hidden: 6, rank: 2, alpha: 3 }
]
const BATCH = 3

const sessions: Array<ort.InferenceSession> = []
afterAll(async () => {
  for (const s of sessions) await s.release()
})

const open = async (model: ModelSpec, elemType: GraphElemType) => {
  const graph = trainingGraph(model, elemType)
  const session = await ort.InferenceSession.create(graph.onnx, { graphOptimizationLevel: "disabled", intraOpNumThreads: 1 })
  sessions.push(session)
  return { graph, session }
}

/** A random batch and random values for every trainable parameter (LoRA B must be non-zero to test A's gradient). */
const fixture = (model: ModelSpec) => {
  const prng = Prng.fromKey([42])
  const weights = initialWeights({ model, weights_seed: 3 })
  const values = new Map<string, Float64Array>()
  for (const [name, v] of weights) values.set(name, Float64Array.from(v))
  for (const p of trainingGraph(model).parameters.filter((p) => p.trainable)) {
    const v = values.get(p.name)!
    for (let i = 0; i < v.length; i++) v[i] = (2 * prng.nextFloat() - 1) * 0.5
  }
  const x = Float64Array.from({ length: BATCH * 784 }, () => prng.nextFloat())
  const y = new Float64Array(BATCH * 10)
  for (let j = 0; j < BATCH; j++) y[j * 10 + prng.below(10)] = 1
  return { prng, values, x, y }
}

const feeds = (
  elemType: GraphElemType,
  parameters: ReturnType<typeof trainingGraph>["parameters"],
  values: ReadonlyMap<string, Float64Array>,
  x: Float64Array,
  y: Float64Array
) => {
  const as = (v: Float64Array) => (elemType === "float64" ? v : Float32Array.from(v))
  const out: Record<string, ort.Tensor> = {
    x: new ort.Tensor(elemType, as(x), [BATCH, 784]),
    y: new ort.Tensor(elemType, as(y), [BATCH, 10])
  }
  for (const p of parameters) out[p.name] = new ort.Tensor(elemType, as(values.get(p.name)!), [...p.shape])
  return out
}

const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0))

describe("training graphs", () => {
  for (const model of models) {
    it(`${model.family}: every gradient output matches finite differences of the loss (relative error < 1e-3)`, async () => {
      const { graph, session } = await open(model, "float64")
      const { prng, values, x, y } = fixture(model)
      const loss = async () => (await session.run(feeds("float64", graph.parameters, values, x, y)))[LOSS_OUTPUT]!.data[0] as number
      const out = await session.run(feeds("float64", graph.parameters, values, x, y))
      assert.deepStrictEqual(out[LOSS_OUTPUT]!.dims, [])
      assert.strictEqual(graph.gradientOutputs.size, graph.parameters.filter((p) => p.trainable).length)
      const eps = 1e-6
      for (const [name, output] of graph.gradientOutputs) {
        const analytic = out[output]!.data as Float64Array
        const v = values.get(name)!
        assert.strictEqual(analytic.length, v.length)
        const numeric: Array<number> = []
        const picked: Array<number> = []
        for (let t = 0; t < 24; t++) {
          const i = prng.below(v.length)
          const original = v[i]!
          v[i] = original + eps
          const plus = await loss()
          v[i] = original - eps
          const minus = await loss()
          v[i] = original
          numeric.push((plus - minus) / (2 * eps))
          picked.push(analytic[i]!)
        }
        const error = norm(numeric.map((n, k) => n - picked[k]!)) / Math.max(norm(numeric), norm(picked))
        assert.isAbove(norm(picked), 0, `${name}: the sampled gradient is not all zero`)
        assert.isBelow(error, 1e-3, `${name}: relative error ${error}`)
      }
    })

    it(`${model.family}: the float32 graph agrees with the float64 graph`, async () => {
      const wide = await open(model, "float64")
      const narrow = await open(model, "float32")
      const { values, x, y } = fixture(model)
      const a = await wide.session.run(feeds("float64", wide.graph.parameters, values, x, y))
      const b = await narrow.session.run(feeds("float32", narrow.graph.parameters, values, x, y))
      for (const output of [LOSS_OUTPUT, ...narrow.graph.gradientOutputs.values()]) {
        const exact = Array.from(a[output]!.data as Float64Array)
        const single = Array.from(b[output]!.data as Float32Array)
        const error = norm(exact.map((e, i) => e - single[i]!)) / norm(exact)
        assert.isBelow(error, 1e-3, `${output}: relative error ${error}`)
      }
    })
  }

  it("counts the MatMul FLOPs of one example's forward and backward pass", () => {
    // mlp: forward 784·h + h·10, backward h·10 (dW2) + 10·h (dh) + 784·h (dW1) multiply-adds.
    const h = 64
    assert.strictEqual(trainingGraph({ family: "mlp", hidden: h }).flopsPerExample, 2 * (784 * h + h * 10 + h * 10 + 10 * h + 784 * h))
  })

  it("encodes the same graph to the same bytes", () => {
    const model: ModelSpec = { family: "bitnet-lora", hidden: 16, rank: 2, alpha: 4 }
    assert.deepStrictEqual(trainingGraph(model).onnx, trainingGraph(model).onnx)
  })

  it("the model writer's output loads and runs (Add of two inputs with a constant)", async () => {
    const g = new GraphBuilder("float32")
    const a = g.input("a", ["N", 2])
    const b = g.input("b", [2])
    g.op("Add", [g.op("Mul", [a, g.scalar(2)]), b], {}, "out")
    g.output("out", ["N", 2])
    const session = await ort.InferenceSession.create(encodeModel(g.build("tiny")))
    sessions.push(session)
    const out = await session.run({
      a: new ort.Tensor("float32", Float32Array.of(1, 2, 3, 4), [2, 2]),
      b: new ort.Tensor("float32", Float32Array.of(10, 20), [2])
    })
    assert.deepStrictEqual(Array.from(out.out!.data as Float32Array), [12, 24, 16, 28])
  })
})
