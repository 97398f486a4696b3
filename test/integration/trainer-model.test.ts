import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { createHash } from "node:crypto"
import { Task } from "../../src/domain/mining.ts"
import { initialWeights, initialWeightsEnvelope, weightsEnvelope } from "../../src/domain/training/model.ts"
import { decodeEnvelope } from "../../src/domain/gradientEnvelope.ts"
import { roundWeightsEnvelope } from "../../src/domain/training/model.ts"
import {
  canonicalRoundSpec,
  childRoundSpec,
  defaultRoundSpec,
  learningRoundSpec,
  modelHash,
  type RoundSpec
} from "../../src/domain/training/spec.ts"
import { OnnxTrainer } from "../../src/layers/onnx/OnnxTrainer.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { Trainer } from "../../src/services/Trainer.ts"
import { TestGradientStore } from "../../src/testing/TestGradientStore.ts"

const spec = defaultRoundSpec(7)
const miner = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
const taskWith = (modelCid: string, roundSpec: RoundSpec = spec) =>
  new Task({ roundId: 7n, chunkId: 3, modelCid, spec: canonicalRoundSpec(roundSpec), difficulty: 16, leaseExpiry: 0, deadline: 0 })
const sha256Hex = (bytes: Uint8Array) => `0x${createHash("sha256").update(bytes).digest("hex")}` as const

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

describe("OnnxTrainer: learning rounds (spec v2)", () => {
  const roundOne = learningRoundSpec(7)

  /** Round 6's aggregated weights (here: the generated ones scaled), published as the coordinator would. */
  const publishParent = Effect.gen(function*() {
    const store = yield* GradientStore
    const own = new Map([...initialWeights(roundOne)].map(([name, values]) => [name, Float32Array.from(values, (v) => v * 0.5)]))
    const bytes = yield* roundWeightsEnvelope(roundOne, 6n, own)
    const cid = yield* store.add(bytes)
    return { cid, bytes }
  })

  it.live("round one trains from its seed: the weights regenerate to its modelCid, nothing is fetched", () =>
    Effect.gen(function*() {
      const store = yield* GradientStore
      const modelCid = yield* store.computeCid(yield* initialWeightsEnvelope(roundOne))
      const result = yield* (yield* Trainer).train(taskWith(modelCid, roundOne), miner)
      assert.isBelow(result.lossAfter, result.lossBefore)
      assert.strictEqual(yield* (yield* TestGradientStore).calls("get"), 0)
      assert.strictEqual((yield* decodeEnvelope(result.envelope)).header.model_hash, modelHash(roundOne))
    }).pipe(Effect.provide(trainerOnStore)))

  it.live("a later round trains from its parent's fetched weights, checked by sha256", () =>
    Effect.gen(function*() {
      const trainer = yield* Trainer
      const { bytes, cid } = yield* publishParent
      const child = childRoundSpec(roundOne, { parent_round: "6", weights_cid: cid, weights_sha256: sha256Hex(bytes) })
      const result = yield* trainer.train(taskWith(cid, child), miner)
      assert.strictEqual(yield* (yield* TestGradientStore).calls("get"), 1)
      assert.isBelow(result.lossAfter, result.lossBefore)
      assert.strictEqual((yield* decodeEnvelope(result.envelope)).header.model_hash, modelHash(child))
      // Another start than round one's: another gradient.
      const store = yield* GradientStore
      const fromSeed = yield* trainer.train(taskWith(yield* store.computeCid(yield* initialWeightsEnvelope(roundOne)), roundOne), miner)
      assert.notStrictEqual(fromSeed.lossBefore, result.lossBefore)
      // The same task again: the start is cached, nothing fetched twice; the same bytes.
      const again = yield* trainer.train(taskWith(cid, child), miner)
      assert.strictEqual(yield* (yield* TestGradientStore).calls("get"), 1)
      assert.strictEqual(again.gradientHash, result.gradientHash)
    }).pipe(Effect.provide(trainerOnStore)))

  it.live("weights whose sha256 is not the spec's fail before any training", () =>
    Effect.gen(function*() {
      const { cid } = yield* publishParent
      const child = childRoundSpec(roundOne, { parent_round: "6", weights_cid: cid, weights_sha256: `0x${"11".repeat(32)}` })
      const error = yield* Effect.flip((yield* Trainer).train(taskWith(cid, child), miner))
      assert.strictEqual(error._tag, "ValidationError")
      assert.match(error.message, /do not match the spec's weights_sha256/)
      assert.match(error.hint ?? "", /corrupted store|wrong CID/)
    }).pipe(Effect.provide(trainerOnStore)))

  it.live("a modelCid other than the spec's weights_cid is refused", () =>
    Effect.gen(function*() {
      const { bytes, cid } = yield* publishParent
      const child = childRoundSpec(roundOne, { parent_round: "6", weights_cid: cid, weights_sha256: sha256Hex(bytes) })
      const error = yield* Effect.flip((yield* Trainer).train(taskWith("bafkreiother", child), miner))
      assert.strictEqual(error._tag, "ValidationError")
      assert.match(error.message, /weights_cid/)
      assert.strictEqual(yield* (yield* TestGradientStore).calls("get"), 0)
    }).pipe(Effect.provide(trainerOnStore)))
})
