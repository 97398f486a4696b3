import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import type { ResourceError } from "../../src/domain/errors.ts"
import { decodeEnvelope, float32Values } from "../../src/domain/gradientEnvelope.ts"
import { Task, type TrainingResult } from "../../src/domain/mining.ts"
import { initialWeightsEnvelope } from "../../src/domain/training/model.ts"
import { canonicalRoundSpec, defaultRoundSpec, modelHash } from "../../src/domain/training/spec.ts"
import { OnnxTrainer } from "../../src/layers/onnx/OnnxTrainer.ts"
import { sha256Hex } from "../../src/layers/sha256Hex.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { Trainer } from "../../src/services/Trainer.ts"
import { Cheater, type CheaterKind } from "../../src/testing/Cheaters.ts"
import { TestGradientStore } from "../../src/testing/TestGradientStore.ts"

const MINER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
const spec = defaultRoundSpec(7)

/** The round's task with its real modelCid, so the trainer checks the weights against it as a miner's does. */
const roundTask = Effect.gen(function*() {
  const modelCid = yield* (yield* GradientStore).computeCid(yield* initialWeightsEnvelope(spec))
  return new Task({ roundId: 5n, chunkId: 2, modelCid, spec: canonicalRoundSpec(spec), difficulty: 16, leaseExpiry: 0, deadline: 0 })
})

const honestTrainer = OnnxTrainer.layerWithModelStore({ executionProvider: "cpu" })

const trainWith = (trainer: Layer.Layer<Trainer, ResourceError, GradientStore>) =>
  Effect.gen(function*() {
    const task = yield* roundTask
    return yield* (yield* Trainer).train(task, MINER)
  }).pipe(Effect.provide(trainer.pipe(Layer.provideMerge(TestGradientStore.layer()))))

const cheat = (kind: CheaterKind) => trainWith(Cheater.layer(kind, honestTrainer))

const assertWellFormed = (result: TrainingResult, honest: TrainingResult) =>
  Effect.gen(function*() {
    assert.strictEqual(result.gradientHash, sha256Hex(result.envelope))
    const [c, h] = [yield* decodeEnvelope(result.envelope), yield* decodeEnvelope(honest.envelope)]
    const withoutLosses = (header: typeof c.header) => ({ ...header, loss_before: null, loss_after: null })
    assert.deepStrictEqual(withoutLosses(c.header), withoutLosses(h.header), "the honest result's header, but for its losses")
    assert.strictEqual(c.header.model_hash, modelHash(spec))
    return { cheated: c, honest: h }
  })

describe("Cheaters on OnnxTrainer", () => {
  it.live("stale_model: trained from another weights seed though the round's model is checked, named as the round's", () =>
    Effect.gen(function*() {
      const honest = yield* trainWith(honestTrainer)
      const result = yield* cheat("stale_model")
      const { cheated, honest: h } = yield* assertWellFormed(result, honest)
      // Another starting point: other losses, and tensors far from the honest ones.
      assert.notStrictEqual(cheated.header.loss_before, h.header.loss_before)
      cheated.tensors.forEach((t, i) => {
        const [a, b] = [float32Values(t), float32Values(h.tensors[i]!)]
        let diff = 0
        let norm = 0
        for (let j = 0; j < a.length; j++) {
          diff += (a[j]! - b[j]!) ** 2
          norm += b[j]! ** 2
        }
        assert.isAbove(Math.sqrt(diff / norm), 0.01, t.spec.name)
      })
      assert.strictEqual(Cheater.expectedVerdict.stale_model, "rejected_recompute_mismatch")
    }), 60_000)

  it.live("made_up_losses: the honest tensors bit for bit, a loss_after below the recomputed one", () =>
    Effect.gen(function*() {
      const honest = yield* trainWith(honestTrainer)
      const result = yield* cheat("made_up_losses")
      const { cheated, honest: h } = yield* assertWellFormed(result, honest)
      assert.deepStrictEqual(cheated.tensors.map((t) => t.bytes), h.tensors.map((t) => t.bytes))
      assert.strictEqual(cheated.header.loss_before, h.header.loss_before)
      assert.isBelow(cheated.header.loss_after!, h.header.loss_after!)
      assert.strictEqual(Cheater.expectedVerdict.made_up_losses, "rejected_no_improvement")
    }), 60_000)
})
