import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ort from "onnxruntime-node"
import { chunkBatch, chunkExamples, type Dataset, heldOutTestIndices } from "../../src/domain/training/data.ts"
import { evaluateModel, testAccuracyPpm } from "../../src/domain/training/evaluate.ts"
import { initialWeights, type ModelWeights, type ParameterValues } from "../../src/domain/training/model.ts"
import { Prng } from "../../src/domain/training/prng.ts"
import { learningRoundSpec, type ModelSpec } from "../../src/domain/training/spec.ts"
import { loadMnist } from "../../src/layers/onnx/MnistDigits.ts"
import { type GraphElemType, LOSS_OUTPUT, trainingGraph } from "../../src/layers/onnx/trainingGraphs.ts"

/**
 * evaluateModel is the training graphs' forward pass in plain TypeScript: on real digits its loss is the graph's loss
 * output, for both families, with weights whose every trainable tensor matters (LoRA B non-zero).
 */

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

/** The seed's initial weights with every trainable value moved by up to ±0.05 (float32). */
const perturbed = (model: ModelSpec): ModelWeights => {
  const prng = Prng.fromKey([77])
  const out = new Map<string, ParameterValues>()
  for (const [name, v] of initialWeights({ model, weights_seed: 5 })) {
    out.set(name, v instanceof Float32Array && !name.endsWith(".scale") ? v.map((x) => x + (2 * prng.nextFloat() - 1) * 0.05) : v)
  }
  return out
}

const graphLoss = async (
  model: ModelSpec,
  elemType: GraphElemType,
  weights: ModelWeights,
  dataset: Dataset,
  indices: Uint32Array
): Promise<number> => {
  const { graph, session } = await open(model, elemType)
  const batch = chunkBatch(dataset, indices, 0, indices.length)
  const as = (v: ArrayLike<number>) => (elemType === "float64" ? Float64Array.from(v) : Float32Array.from(v))
  const feeds: Record<string, ort.Tensor> = {
    x: new ort.Tensor(elemType, as(batch.x), [batch.size, dataset.features]),
    y: new ort.Tensor(elemType, as(batch.y), [batch.size, dataset.classes])
  }
  for (const p of graph.parameters) feeds[p.name] = new ort.Tensor(elemType, as(weights.get(p.name)!), [...p.shape])
  return Number((await session.run(feeds))[LOSS_OUTPUT]!.data[0])
}

const relative = (a: number, b: number) => Math.abs(a - b) / Math.abs(b)

describe("evaluateModel on real digits", () => {
  const models: ReadonlyArray<ModelSpec> = [
    { family: "mlp", hidden: 64 },
    { family: "bitnet-lora", hidden: 64, rank: 4, alpha: 8 }
  ]
  for (const model of models) {
    it(`${model.family}: its loss is the training graph's on several batches`, async () => {
      const dataset = await Effect.runPromise(loadMnist())
      const weights = perturbed(model)
      const spec = learningRoundSpec(3, model.family)
      for (const chunk of [0, 1, 2]) {
        const indices = chunkExamples(spec, chunk, dataset.count).subarray(0, 32 + 16 * chunk)
        const ours = evaluateModel(model, weights, dataset, indices)
        assert.strictEqual(ours.count, indices.length)
        const wide = await graphLoss(model, "float64", weights, dataset, indices)
        const narrow = await graphLoss(model, "float32", weights, dataset, indices)
        assert.isBelow(relative(ours.loss, wide), 1e-9, `float64 graph ${wide}, ours ${ours.loss}`)
        assert.isBelow(relative(ours.loss, narrow), 1e-5, `float32 graph ${narrow}, ours ${ours.loss}`)
      }
    })

    it(`${model.family}: initial weights score about chance on the test split, deterministically`, async () => {
      const dataset = await Effect.runPromise(loadMnist())
      const weights = initialWeights({ model, weights_seed: 1 })
      const test = heldOutTestIndices()
      const result = evaluateModel(model, weights, dataset, test)
      assert.strictEqual(result.count, 2000)
      assert.strictEqual(result.accuracy, result.correct / result.count)
      assert.isAbove(result.accuracy, 0.02)
      assert.isBelow(result.accuracy, 0.25)
      // Ten classes, weights near zero: the loss is about ln 10.
      assert.isBelow(Math.abs(result.loss - Math.log(10)), 0.3)
      assert.deepStrictEqual(evaluateModel(model, weights, dataset, test), result)
      assert.strictEqual(testAccuracyPpm(result), Math.round(result.correct * 500))
    })
  }
})
