import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { type DecodedEnvelope, decodeEnvelope, float32Values } from "../../src/domain/gradientEnvelope.ts"
import { Task, type TrainingResult } from "../../src/domain/mining.ts"
import {
  canonicalRoundSpec,
  childRoundSpec,
  defaultRoundSpec,
  learningRoundSpec,
  modelHash,
  type RoundSpec
} from "../../src/domain/training/spec.ts"
import { verdictCodes } from "../../src/domain/verification.ts"
import { Trainer } from "../../src/services/Trainer.ts"
import { Cheater, type CheaterKind } from "../../src/testing/Cheaters.ts"
import { sha256Hex, TestTrainer, testProfile } from "../../src/testing/TestTrainer.ts"

const MINER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
const spec = defaultRoundSpec(7)

const task = (s: RoundSpec = spec, chunkId = 3) =>
  new Task({ roundId: 12n, chunkId, modelCid: "", spec: canonicalRoundSpec(s), difficulty: 16, leaseExpiry: 0, deadline: 0 })

const honestLayer = TestTrainer.layer({ envelope: "r3gr" })

const trainWith = (layer: Layer.Layer<Trainer>, t: Task = task()) =>
  Effect.gen(function*() {
    return yield* (yield* Trainer).train(t, MINER)
  }).pipe(Effect.provide(layer))

const honest = (t: Task = task()) => trainWith(honestLayer, t)

const decoded = (result: TrainingResult) => Effect.runSync(decodeEnvelope(result.envelope))
const values = (d: DecodedEnvelope) => d.tensors.map(float32Values)
const bytesOf = (d: DecodedEnvelope) => d.tensors.map((t) => Uint8Array.from(t.bytes))

/** What a verifier checks first: it decodes, its hash is its own sha256, and its header is the task's. */
const assertWellFormed = (result: TrainingResult, t: Task = task()) => {
  assert.strictEqual(result.gradientHash, sha256Hex(result.envelope))
  const { header } = decoded(result)
  assert.strictEqual(header.round_id, t.roundId.toString())
  assert.strictEqual(header.chunk_id, t.chunkId)
  assert.strictEqual(header.miner, MINER)
  assert.strictEqual(header.model_hash, modelHash(spec))
  assert.strictEqual(header.encoding, "pseudo-gradient")
  assert.strictEqual(header.steps, spec.steps)
  assert.strictEqual(header.batch_size, spec.batch_size)
  assert.strictEqual(header.lr, spec.lr)
  assert.deepStrictEqual(header.profile, testProfile)
  assert.strictEqual(header.loss_before, result.lossBefore)
  assert.strictEqual(header.loss_after, result.lossAfter)
}

describe("TestTrainer r3gr envelopes (the honest side)", () => {
  it.effect("a real, reproducible pseudo-gradient envelope whose loss fell, with the test profile", () =>
    Effect.gen(function*() {
      const a = yield* honest()
      assertWellFormed(a)
      assert.isBelow(a.lossAfter, a.lossBefore)
      assert.deepStrictEqual((yield* honest()).envelope, a.envelope)
      assert.deepStrictEqual(yield* Effect.provide(Trainer.use((t) => t.profile), honestLayer), testProfile)
    }))

  it.effect("the tensors follow chunk, steps, weights seed and dataset seed, not the miner", () =>
    Effect.gen(function*() {
      const base = bytesOf(decoded(yield* honest()))
      for (const other of [task(spec, 4), task({ ...spec, steps: 9 }), task({ ...spec, weights_seed: 8 }), task({ ...spec, dataset_seed: 8 })]) {
        assert.notDeepEqual(bytesOf(decoded(yield* honest(other))), base, other.spec)
      }
    }))

  it.effect("jitter plays an honest miner on another profile: the same gradient within a small relative distance", () =>
    Effect.gen(function*() {
      const profile = { ...testProfile, isa: "avx512" }
      const jittered = yield* trainWith(TestTrainer.layer({ envelope: "r3gr", profile, jitter: 1e-6 }))
      assert.deepStrictEqual(decoded(jittered).header.profile, profile)
      const [a, b] = [values(decoded(yield* honest())), values(decoded(jittered))]
      a.forEach((x, i) => {
        const y = b[i]!
        let diff = 0
        let norm = 0
        for (let j = 0; j < x.length; j++) {
          diff += (x[j]! - y[j]!) ** 2
          norm += x[j]! ** 2
        }
        assert.isAbove(Math.sqrt(diff / norm), 0)
        assert.isBelow(Math.sqrt(diff / norm), 1e-5)
      })
    }))

  it.effect("a spec that is not a round spec is a ValidationError, as for the real trainer", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(honest(new Task({ ...task(), spec: "{}" })))
      assert.strictEqual(error._tag, "ValidationError")
    }))
})

describe("Cheater", () => {
  const cheat = (kind: CheaterKind, t: Task = task()) => trainWith(Cheater.layer(kind, honestLayer), t)

  it("six kinds, each with the verdict an honest recomputation must give", () => {
    assert.deepStrictEqual([...Cheater.kinds].sort(), [
      "fewer_steps",
      "made_up_losses",
      "other_chunk",
      "random_tensors",
      "scaled",
      "stale_model"
    ])
    for (const kind of Cheater.kinds) {
      const code = verdictCodes[Cheater.expectedVerdict[kind]]
      assert.strictEqual(code, kind === "made_up_losses" ? 20 : 19, kind)
    }
  })

  for (const kind of ["random_tensors", "scaled", "other_chunk", "fewer_steps", "stale_model", "made_up_losses"] as const) {
    it.effect(`${kind}: a well-formed envelope for the task, with the honest trainer's profile, not the honest one`, () =>
      Effect.gen(function*() {
        const result = yield* cheat(kind)
        assertWellFormed(result)
        assert.notStrictEqual(result.gradientHash, (yield* honest()).gradientHash)
        // Deterministic, like an honest trainer: a cheater's resubmission is the same bytes.
        assert.deepStrictEqual((yield* cheat(kind)).envelope, result.envelope)
      }))
  }

  it.effect("random_tensors: same shapes, other values, the honest losses", () =>
    Effect.gen(function*() {
      const [h, c] = [decoded(yield* honest()), decoded(yield* cheat("random_tensors"))]
      assert.deepStrictEqual(c.header.tensors, h.header.tensors)
      values(c).forEach((v, i) => assert.notDeepEqual(v, values(h)[i]))
      assert.strictEqual(c.header.loss_before, h.header.loss_before)
      assert.strictEqual(c.header.loss_after, h.header.loss_after)
    }))

  it.effect("scaled: the honest gradient × 3", () =>
    Effect.gen(function*() {
      const [h, c] = [decoded(yield* honest()), decoded(yield* cheat("scaled"))]
      values(c).forEach((v, i) => assert.deepStrictEqual(v, values(h)[i]!.map((x) => x * 3)))
    }))

  it.effect("other_chunk: the honest gradient of the next chunk, in a header naming this one", () =>
    Effect.gen(function*() {
      const c = decoded(yield* cheat("other_chunk"))
      assert.deepStrictEqual(bytesOf(c), bytesOf(decoded(yield* honest(task(spec, 4)))))
      assert.notDeepEqual(bytesOf(c), bytesOf(decoded(yield* honest())))
    }))

  it.effect("fewer_steps: trained with steps − 1, claiming all of them", () =>
    Effect.gen(function*() {
      const c = decoded(yield* cheat("fewer_steps"))
      assert.deepStrictEqual(bytesOf(c), bytesOf(decoded(yield* honest(task({ ...spec, steps: spec.steps - 1 })))))
      assert.strictEqual(c.header.steps, spec.steps)
      const error = yield* Effect.flip(cheat("fewer_steps", task({ ...spec, steps: 1 })))
      assert.strictEqual(error._tag, "ValidationError")
    }))

  it.effect("stale_model: trained from another weights seed, naming the round's model", () =>
    Effect.gen(function*() {
      const c = decoded(yield* cheat("stale_model"))
      assert.deepStrictEqual(bytesOf(c), bytesOf(decoded(yield* honest(task({ ...spec, weights_seed: spec.weights_seed + 1 })))))
      assert.strictEqual(c.header.model_hash, modelHash(spec))
    }))

  it.effect("made_up_losses: the honest tensors, a loss_after below the truth", () =>
    Effect.gen(function*() {
      const [h, c] = [decoded(yield* honest()), decoded(yield* cheat("made_up_losses"))]
      assert.deepStrictEqual(bytesOf(c), bytesOf(h))
      assert.strictEqual(c.header.loss_before, h.header.loss_before)
      assert.isBelow(c.header.loss_after!, h.header.loss_after!)
    }))

  it.effect("wrapping a trainer without R3GR envelopes fails with a hint naming the fix", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(trainWith(Cheater.layer("scaled", TestTrainer.layer())))
      assert.strictEqual(error._tag, "ValidationError")
      assert.include(error._tag === "ValidationError" ? error.hint : "", "r3gr")
    }))
})

describe("TestTrainer and Cheater on learning rounds (spec v2)", () => {
  const roundOne = learningRoundSpec(7)
  const parentInit = { parent_round: "6", weights_cid: "bafkreiparent", weights_sha256: `0x${"ab".repeat(32)}` } as const
  const child = childRoundSpec(roundOne, parentInit)

  it.effect("a seed init trains the toy from that seed: v1's tensors, the v2 model hash", () =>
    Effect.gen(function*() {
      const v2 = decoded(yield* honest(task(roundOne)))
      assert.strictEqual(v2.header.model_hash, modelHash(roundOne))
      assert.deepStrictEqual(bytesOf(v2), bytesOf(decoded(yield* honest(task(defaultRoundSpec(7))))))
    }))

  it.effect("a parent init starts from its weights_sha256 (nothing fetched): fixed, and another parent differs", () =>
    Effect.gen(function*() {
      const a = decoded(yield* honest(task(child)))
      assert.strictEqual(a.header.model_hash, modelHash(child))
      assert.deepStrictEqual(bytesOf(decoded(yield* honest(task(child)))), bytesOf(a))
      assert.notDeepEqual(bytesOf(a), bytesOf(decoded(yield* honest(task(roundOne)))))
      const other = childRoundSpec(roundOne, { ...parentInit, weights_sha256: `0x${"cd".repeat(32)}` })
      assert.notDeepEqual(bytesOf(decoded(yield* honest(task(other)))), bytesOf(a))
    }))

  for (const [name, s, stale] of [
    ["a seed init", roundOne, learningRoundSpec(7, "mlp", { init: { seed: 8 } })],
    ["a parent init", child, learningRoundSpec(7, "mlp", { init: { seed: 0 } })]
  ] as const) {
    it.effect(`stale_model with ${name}: trained from other weights, naming the round's model`, () =>
      Effect.gen(function*() {
        const c = decoded(yield* trainWith(Cheater.layer("stale_model", honestLayer), task(s)))
        assert.strictEqual(c.header.model_hash, modelHash(s))
        assert.deepStrictEqual(bytesOf(c), bytesOf(decoded(yield* honest(task(stale)))))
        assert.notDeepEqual(bytesOf(c), bytesOf(decoded(yield* honest(task(s)))))
      }))
  }
})
