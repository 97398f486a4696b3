import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Task } from "../../src/domain/mining.ts"
import { initialWeights, initialWeightsEnvelope, weightsEnvelope } from "../../src/domain/training/model.ts"
import { canonicalRoundSpec, defaultRoundSpec } from "../../src/domain/training/spec.ts"
import { OnnxTrainer } from "../../src/layers/onnx/OnnxTrainer.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { Trainer } from "../../src/services/Trainer.ts"
import { TestGradientStore } from "../../src/testing/TestGradientStore.ts"

const spec = defaultRoundSpec(7)
const miner = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
const taskWith = (modelCid: string) =>
  new Task({ roundId: 7n, chunkId: 3, modelCid, spec: canonicalRoundSpec(spec), difficulty: 16, leaseExpiry: 0, deadline: 0 })

const trainerOnStore = OnnxTrainer.layerWithModelStore().pipe(Layer.provideMerge(TestGradientStore.layer()))

describe("OnnxTrainer: the round's modelCid", () => {
  it.live("weights that regenerate to the round's modelCid are used without fetching anything", () =>
    Effect.gen(function*() {
      const store = yield* GradientStore
      const modelCid = yield* store.computeCid(yield* initialWeightsEnvelope(spec))
      const result = yield* (yield* Trainer).train(taskWith(modelCid), miner)
      assert.isBelow(result.lossAfter, result.lossBefore)
      assert.strictEqual(yield* (yield* TestGradientStore).calls("get"), 0)
    }).pipe(Effect.provide(trainerOnStore)))

  it.live("weights that do not regenerate are fetched by CID, and they are what is trained", () =>
    Effect.gen(function*() {
      const store = yield* GradientStore
      const trainer = yield* Trainer
      const regenerated = yield* trainer.train(taskWith(yield* store.computeCid(yield* initialWeightsEnvelope(spec))), miner)
      // A coordinator's own weights (here: the generated ones scaled), published on IPFS.
      const own = new Map([...initialWeights(spec)].map(([name, values]) => [name, Float32Array.from(values, (v) => v * 0.5)]))
      const modelCid = yield* store.add(yield* weightsEnvelope(spec, own))
      const fetched = yield* trainer.train(taskWith(modelCid), miner)
      assert.strictEqual(yield* (yield* TestGradientStore).calls("get"), 1)
      assert.notStrictEqual(fetched.gradientHash, regenerated.gradientHash)
    }).pipe(Effect.provide(trainerOnStore)))

  it.live("a modelCid that is neither regenerable nor retrievable fails the training", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip((yield* Trainer).train(taskWith("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"), miner))
      assert.strictEqual(error._tag, "ValidationError")
    }).pipe(Effect.provide(trainerOnStore)))
})
