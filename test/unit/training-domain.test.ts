import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { canonicalJson, decodeEnvelope, float32Values } from "../../src/domain/gradientEnvelope.ts"
import {
  chunkBatch,
  chunkExampleIndices,
  chunkExamples,
  type Dataset,
  heldOutTestIndices,
  MNIST,
  MNIST_TEST_SPLIT,
  trainingPoolIndices
} from "../../src/domain/training/data.ts"
import {
  decodeWeightsEnvelope,
  initialWeights,
  initialWeightsEnvelope,
  modelParameters,
  portableProfile,
  roundWeightsEnvelope,
  trainableParameters
} from "../../src/domain/training/model.ts"
import {
  decodeMomentumEnvelope,
  momentumEnvelope,
  startingMomentum,
  startingWeights
} from "../../src/domain/training/roundWeights.ts"
import { Prng, splitmix64, Stream } from "../../src/domain/training/prng.ts"
import {
  canonicalRoundSpec,
  childRoundSpec,
  decodeRoundSpec,
  defaultAggregation,
  defaultRoundSpec,
  learningRoundSpec,
  modelHash,
  type ParentInit,
  parseRoundSpec,
  type RoundSpec,
  specHash,
  weightsSeedOf
} from "../../src/domain/training/spec.ts"
import { ValidationError } from "../../src/domain/errors.ts"
import { evaluateModel, testAccuracyPpm } from "../../src/domain/training/evaluate.ts"

const sha256Hex = (bytes: Uint8Array | string) => `0x${createHash("sha256").update(bytes).digest("hex")}`
const canonicalJsonOf = (value: unknown) => canonicalJson(value)

describe("PRNG", () => {
  it("xoshiro128** gives the reference outputs for state [1, 2, 3, 4]", () => {
    // rand_xoshiro's reference test (rust-random/rngs), produced by the authors' xoshiro128starstar.c.
    const prng = Prng.fromState([1, 2, 3, 4])
    const outputs = Array.from({ length: 10 }, () => prng.nextU32())
    assert.deepStrictEqual(outputs, [
      11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849, 3729100597, 4258142804
    ])
  })

  it("SplitMix64 gives the reference outputs for seed 1477776061723855037", () => {
    // rand_xoshiro's reference test, produced by Vigna's splitmix64.c.
    let state = 1477776061723855037n
    const outputs: Array<bigint> = []
    for (let i = 0; i < 5; i++) {
      const [next, z] = splitmix64(state)
      state = next
      outputs.push(z)
    }
    assert.deepStrictEqual(outputs, [
      1985237415132408290n,
      2979275885539914483n,
      13511426838097143398n,
      8488337342461049707n,
      15141737807933549159n
    ])
  })

  it("streams are reproducible from their key and distinct across keys", () => {
    const draw = (key: ReadonlyArray<number | bigint>) => {
      const p = Prng.fromKey(key)
      return Array.from({ length: 8 }, () => p.nextU32())
    }
    assert.deepStrictEqual(draw([Stream.data, 7, 3]), draw([Stream.data, 7, 3]))
    assert.notDeepEqual(draw([Stream.data, 7, 3]), draw([Stream.data, 7, 4]))
    assert.notDeepEqual(draw([Stream.data, 7, 3]), draw([Stream.weights, 7, 3]))
    assert.notDeepEqual(draw([Stream.data, 7, 3]), draw([Stream.data, 3, 7]))
  })

  it("floats lie in [0, 1) on a 2^-24 grid and below(n) in [0, n)", () => {
    const p = Prng.fromKey([1])
    for (let i = 0; i < 10_000; i++) {
      const u = p.nextFloat()
      assert.isTrue(u >= 0 && u < 1 && Number.isInteger(u * 2 ** 24))
      const k = p.below(10)
      assert.isTrue(Number.isInteger(k) && k >= 0 && k < 10)
    }
    assert.throws(() => p.below(0))
    assert.throws(() => Prng.fromKey([-1]))
  })
})

describe("round spec", () => {
  it("the default spec is valid and its canonical JSON sorts keys with no spaces", () =>
    Effect.gen(function*() {
      const spec = defaultRoundSpec(7)
      const text = canonicalRoundSpec(spec)
      assert.strictEqual(
        text,
        `{"batch_size":32,"dataset":"mnist","dataset_seed":7,"examples_per_chunk":320,"lr":0.1,` +
          `"model":{"family":"mlp","hidden":64},"steps":10,"version":1,"weights_seed":7}`
      )
      assert.deepStrictEqual(yield* parseRoundSpec(text), spec)
      assert.strictEqual(specHash(spec), sha256Hex(text))
      const bitnet = yield* decodeRoundSpec(defaultRoundSpec(7, "bitnet-lora"))
      assert.deepStrictEqual(bitnet.model, { family: "bitnet-lora", hidden: 64, rank: 4, alpha: 8 })
    }).pipe(Effect.runPromise))

  it("non-canonical spellings of one spec parse to the same spec and hash", () =>
    Effect.gen(function*() {
      const spec = defaultRoundSpec(3)
      const loose = JSON.stringify({ ...spec, lr: 0.1 }, null, 2)
      const parsed = yield* parseRoundSpec(loose)
      assert.strictEqual(specHash(parsed), specHash(spec))
    }).pipe(Effect.runPromise))

  it("the model hash covers model and weights seed, not data or hyper-parameters", () => {
    const spec = defaultRoundSpec(3)
    assert.strictEqual(modelHash(spec), modelHash({ ...spec, dataset_seed: 99, lr: 0.5, steps: 3 }))
    assert.notStrictEqual(modelHash(spec), modelHash({ ...spec, weights_seed: 4 }))
    assert.notStrictEqual(modelHash(spec), modelHash({ ...spec, model: { family: "mlp", hidden: 65 } }))
    assert.notStrictEqual(specHash(spec), specHash({ ...spec, dataset_seed: 99 }))
  })

  const malformed: ReadonlyArray<readonly [string, string]> = [
    ["not JSON", "{"],
    ["not an object", "[1,2]"],
    ["missing field", JSON.stringify({ ...defaultRoundSpec(1), steps: undefined })],
    ["unknown field", JSON.stringify({ ...defaultRoundSpec(1), momentum: 0.9 })],
    ["unknown family", JSON.stringify({ ...defaultRoundSpec(1), model: { family: "cnn", hidden: 8 } })],
    ["bitnet without rank", JSON.stringify({ ...defaultRoundSpec(1), model: { family: "bitnet-lora", hidden: 8, alpha: 1 } })],
    ["rank above hidden", JSON.stringify({ ...defaultRoundSpec(1), model: { family: "bitnet-lora", hidden: 8, rank: 9, alpha: 1 } })],
    ["batch above chunk", JSON.stringify({ ...defaultRoundSpec(1), batch_size: 400 })],
    ["zero lr", JSON.stringify({ ...defaultRoundSpec(1), lr: 0 })],
    ["fractional steps", JSON.stringify({ ...defaultRoundSpec(1), steps: 2.5 })],
    ["negative seed", JSON.stringify({ ...defaultRoundSpec(1), dataset_seed: -1 })],
    ["seed above uint32", JSON.stringify({ ...defaultRoundSpec(1), weights_seed: 2 ** 32 })],
    ["other dataset", JSON.stringify({ ...defaultRoundSpec(1), dataset: "cifar10" })],
    ["other version", JSON.stringify({ ...defaultRoundSpec(1), version: 2 })],
    ["hidden zero", JSON.stringify({ ...defaultRoundSpec(1), model: { family: "mlp", hidden: 0 } })]
  ]
  for (const [name, text] of malformed) {
    it(`rejects a spec with ${name} as a ValidationError`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(parseRoundSpec(text))
        assert.strictEqual(error._tag, "ValidationError")
        assert.strictEqual(error.field, "spec")
        assert.match(error.message, /^invalid round spec: /)
      }).pipe(Effect.runPromise))
  }
})

/** A small synthetic dataset: example i has every pixel = i / 100 and label i mod 10. */
const toyDataset = (count: number): Dataset => {
  const pixels = new Float32Array(count * MNIST.features)
  const labels = new Uint8Array(count)
  for (let i = 0; i < count; i++) {
    pixels.fill(i / 100, i * MNIST.features, (i + 1) * MNIST.features)
    labels[i] = i % 10
  }
  return { count, features: MNIST.features, classes: MNIST.classes, pixels, labels }
}

describe("data selection", () => {
  it("a chunk's examples are distinct dataset indices, fixed by (dataset seed, chunk id)", () => {
    const a = chunkExampleIndices(7, 3, MNIST.count, 320)
    assert.strictEqual(a.length, 320)
    assert.strictEqual(new Set(a).size, 320)
    assert.isTrue(a.every((i) => i < MNIST.count))
    assert.deepStrictEqual(chunkExampleIndices(7, 3, MNIST.count, 320), a)
    assert.notDeepEqual(chunkExampleIndices(7, 4, MNIST.count, 320), a)
    assert.notDeepEqual(chunkExampleIndices(8, 3, MNIST.count, 320), a)
    // A prefix property: a smaller chunk is the start of the larger one.
    assert.deepStrictEqual(chunkExampleIndices(7, 3, MNIST.count, 10), a.subarray(0, 10))
    // Regression guard: these are this implementation's values; a change here changes every round's data.
    assert.deepStrictEqual(Array.from(a.subarray(0, 6)), [3553, 9655, 8583, 9822, 5868, 5778])
    // The whole dataset is a permutation.
    assert.strictEqual(new Set(chunkExampleIndices(1, 0, 50, 50)).size, 50)
  })

  it("batches walk the chunk in order and wrap around, with one-hot labels", () => {
    const dataset = toyDataset(20)
    const examples = Uint32Array.from([5, 6, 7, 8, 9])
    const batch = chunkBatch(dataset, examples, 1, 3) // positions 3, 4, 0 → examples 8, 9, 5
    assert.strictEqual(batch.size, 3)
    assert.deepStrictEqual([batch.x[0], batch.x[MNIST.features], batch.x[2 * MNIST.features]], [
      Math.fround(0.08),
      Math.fround(0.09),
      Math.fround(0.05)
    ])
    assert.deepStrictEqual(Array.from(batch.y.subarray(0, 10)), [0, 0, 0, 0, 0, 0, 0, 0, 1, 0])
    assert.deepStrictEqual(Array.from(batch.y.subarray(20, 30)), [0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
  })
})

describe("initial weights", () => {
  it("mlp: uniform in ±1/√fan_in, zero biases, reproducible from the seed", () => {
    const spec = defaultRoundSpec(5)
    const w = initialWeights(spec)
    const fc1 = w.get("fc1.weight") as Float32Array
    assert.strictEqual(fc1.length, 784 * 64)
    assert.isTrue(fc1.every((v) => Math.abs(v) <= 1 / 28))
    assert.isTrue((w.get("fc1.bias") as Float32Array).every((v) => v === 0))
    assert.isTrue((w.get("fc2.weight") as Float32Array).every((v) => Math.abs(v) <= 1 / 8))
    assert.deepStrictEqual(initialWeights(spec).get("fc1.weight"), fc1)
    assert.notDeepEqual(initialWeights({ ...spec, weights_seed: 6 }).get("fc1.weight"), fc1)
  })

  it("bitnet-lora: ternary frozen layers with a positive scale, LoRA B = 0", () => {
    const spec = defaultRoundSpec(5, "bitnet-lora")
    const w = initialWeights(spec)
    for (const layer of ["fc1", "fc2"]) {
      const t = w.get(`${layer}.ternary`) as Int8Array
      assert.instanceOf(t, Int8Array)
      assert.isTrue(t.every((v) => v === -1 || v === 0 || v === 1))
      // absmean quantisation of a uniform latent: P(0) = 1/4.
      const zeros = t.filter((v) => v === 0).length / t.length
      assert.isTrue(zeros > 0.2 && zeros < 0.3, `zero fraction ${zeros}`)
      const scale = w.get(`${layer}.scale`) as Float32Array
      assert.strictEqual(scale.length, 1)
      assert.isTrue(scale[0]! > 0)
      assert.isTrue((w.get(`${layer}.lora_b`) as Float32Array).every((v) => v === 0))
      assert.isTrue((w.get(`${layer}.lora_a`) as Float32Array).some((v) => v !== 0))
    }
    assert.deepStrictEqual(trainableParameters(spec.model).map((p) => p.name), [
      "fc1.lora_a",
      "fc1.lora_b",
      "fc2.lora_a",
      "fc2.lora_b"
    ])
  })

  for (const family of ["mlp", "bitnet-lora"] as const) {
    it(`${family}: the weights envelope decodes, names the model, and reads back to the same weights`, () =>
      Effect.gen(function*() {
        const spec: RoundSpec = defaultRoundSpec(11, family)
        const bytes = yield* initialWeightsEnvelope(spec)
        assert.deepStrictEqual(yield* initialWeightsEnvelope(spec), bytes)
        const { header, tensors } = yield* decodeEnvelope(bytes)
        assert.strictEqual(header.encoding, "weights")
        assert.strictEqual(header.model_hash, modelHash(spec))
        // Weights are computed in TypeScript, alike on every machine: the profile names no machine, so one spec
        // gives one modelCid everywhere.
        assert.deepStrictEqual(header.profile, portableProfile)
        assert.deepStrictEqual(
          tensors.map((t) => [t.spec.name, t.spec.dtype, t.spec.shape]),
          modelParameters(spec.model).map((p) => [p.name, p.dtype, p.shape])
        )
        const weights = yield* decodeWeightsEnvelope(spec, bytes)
        const expected = initialWeights(spec)
        for (const [name, values] of expected) assert.deepStrictEqual(weights.get(name), values, name)
        if (family === "mlp") assert.deepStrictEqual(float32Values(tensors[0]!), expected.get("fc1.weight"))

        // The same envelope does not pass for another model.
        const other = yield* Effect.flip(decodeWeightsEnvelope({ ...spec, weights_seed: 12 }, bytes))
        assert.match(other.message, /model_hash/)
        // Data and hyper-parameters do not change the weights' bytes (one CID serves such rounds).
        assert.deepStrictEqual(yield* initialWeightsEnvelope({ ...spec, dataset_seed: 1, lr: 0.3 }), bytes)
      }).pipe(Effect.runPromise))
  }

  it("regression guard: the default rounds' weights envelopes keep their hashes", () =>
    Effect.gen(function*() {
      // This implementation's values: a change means every published modelCid changes with it. (Changed when the
      // header gained its determinism profile, issue 13.)
      assert.strictEqual(sha256Hex(yield* initialWeightsEnvelope(defaultRoundSpec(1))), GOLDEN.mlp)
      assert.strictEqual(sha256Hex(yield* initialWeightsEnvelope(defaultRoundSpec(1, "bitnet-lora"))), GOLDEN.bitnet)
    }).pipe(Effect.runPromise))
})

const GOLDEN = {
  mlp: "0x65446cb2e4708d3d9af9371d9ec0f9d56ea1a80cbf41858096a4ded5ca4f8f53",
  bitnet: "0x8ec688451e71f0a949b817dd907b76b2feec8cb302183ccd111ff35d8012a346"
}

describe("round spec v2 (learning rounds)", () => {
  const parentInit: ParentInit = {
    parent_round: "41",
    weights_cid: "bafkreiweights",
    weights_sha256: `0x${"ab".repeat(32)}`
  }

  it("round one: the default learning spec's canonical JSON, decoded back to the same spec", () =>
    Effect.gen(function*() {
      const spec = learningRoundSpec(7)
      const text = canonicalRoundSpec(spec)
      assert.strictEqual(
        text,
        `{"aggregation":{"momentum":0.9,"nesterov":true,"outer_lr":1,"trim":0.25,"verifiers":[]},"batch_size":32,"dataset":"mnist",` +
          `"dataset_seed":7,"examples_per_chunk":320,"init":{"seed":7},"lr":0.1,"model":{"family":"mlp","hidden":64},` +
          `"steps":10,"version":2}`
      )
      assert.deepStrictEqual(yield* parseRoundSpec(text), spec)
      assert.deepStrictEqual(spec.aggregation, defaultAggregation)
      // The trainer's settings are the v1 default's.
      const { version: _v1, weights_seed: _w, ...v1 } = defaultRoundSpec(7)
      const { version: _v2, init: _i, aggregation: _a, ...v2 } = spec
      assert.deepStrictEqual(v2, v1)
      assert.strictEqual(learningRoundSpec(7, "bitnet-lora").model.family, "bitnet-lora")
      assert.strictEqual(learningRoundSpec(7, "mlp", { steps: 3 }).steps, 3)
    }).pipe(Effect.runPromise))

  it("a child round: the parent's settings, a parent init (with and without momentum), round-tripped", () =>
    Effect.gen(function*() {
      const parent = learningRoundSpec(7)
      const child = childRoundSpec(parent, parentInit)
      assert.deepStrictEqual({ ...child, init: parent.init }, parent)
      assert.deepStrictEqual(yield* parseRoundSpec(canonicalRoundSpec(child)), child)
      const withMomentum = childRoundSpec(parent, {
        ...parentInit,
        momentum_cid: "bafkreimomentum",
        momentum_sha256: `0x${"cd".repeat(32)}`
      })
      assert.deepStrictEqual(yield* parseRoundSpec(canonicalRoundSpec(withMomentum)), withMomentum)
      const huge = childRoundSpec(parent, { ...parentInit, parent_round: ((1n << 256n) - 1n).toString() })
      assert.deepStrictEqual(yield* decodeRoundSpec(huge), huge)
    }).pipe(Effect.runPromise))

  it("weightsSeedOf: v1 weights_seed, v2 init.seed, none for a parent init", () => {
    assert.strictEqual(weightsSeedOf(defaultRoundSpec(5)), 5)
    assert.strictEqual(weightsSeedOf(learningRoundSpec(6)), 6)
    assert.strictEqual(weightsSeedOf(childRoundSpec(learningRoundSpec(6), parentInit)), undefined)
  })

  it("model hash: v1 keeps its golden; v2 covers init and model, not data, hyper-parameters or aggregation", () => {
    // Computed by the v1-only implementation before v2 existed: old rounds on persistent devnets keep their hash.
    assert.strictEqual(modelHash(defaultRoundSpec(1)), "0x8c180abc82fddca3a6dbe21f33ccf2ea82ceaf1659a595bc59f84fd7b7b5fb89")
    assert.strictEqual(
      modelHash(defaultRoundSpec(7, "bitnet-lora")),
      "0xe28d27d1bbbccba7bc411b77d06e59addd1dc9fcf7f2a19772a7f9370c807cba"
    )
    const spec = learningRoundSpec(7)
    assert.strictEqual(modelHash(spec), sha256Hex(canonicalJsonOf({ init: { seed: 7 }, model: spec.model, version: 2 })))
    assert.strictEqual(modelHash(spec), modelHash({ ...spec, lr: 0.5, dataset_seed: 1, aggregation: { ...defaultAggregation, trim: 0 } }))
    assert.notStrictEqual(modelHash(spec), modelHash(learningRoundSpec(8)))
    assert.notStrictEqual(modelHash(spec), modelHash(childRoundSpec(spec, parentInit)))
    assert.notStrictEqual(
      modelHash(childRoundSpec(spec, parentInit)),
      modelHash(childRoundSpec(spec, { ...parentInit, weights_sha256: `0x${"ac".repeat(32)}` }))
    )
    // Same seed and model, other version: other hashes (the v2 spec's chunks differ).
    assert.notStrictEqual(modelHash(spec), modelHash(defaultRoundSpec(7)))
  })

  const base = learningRoundSpec(1)
  const v2Malformed: ReadonlyArray<readonly [string, unknown]> = [
    ["an unknown field", { ...base, weights_seed: 1 }],
    ["an unknown aggregation field", { ...base, aggregation: { ...defaultAggregation, beta: 1 } }],
    ["an unknown init field", { ...base, init: { seed: 1, extra: 2 } }],
    ["a seed and a parent at once", { ...base, init: { seed: 1, ...parentInit } }],
    ["trim 0.5", { ...base, aggregation: { ...defaultAggregation, trim: 0.5 } }],
    ["negative trim", { ...base, aggregation: { ...defaultAggregation, trim: -0.1 } }],
    ["momentum 1", { ...base, aggregation: { ...defaultAggregation, momentum: 1 } }],
    ["outer_lr 0", { ...base, aggregation: { ...defaultAggregation, outer_lr: 0 } }],
    ["outer_lr above 10", { ...base, aggregation: { ...defaultAggregation, outer_lr: 10.5 } }],
    ["outer_lr NaN", { ...base, aggregation: { ...defaultAggregation, outer_lr: Number.NaN } }],
    ["nesterov not boolean", { ...base, aggregation: { ...defaultAggregation, nesterov: 1 } }],
    ["no aggregation", { ...base, aggregation: undefined }],
    ["no init", { ...base, init: undefined }],
    ["momentum_cid without its sha256", { ...base, init: { ...parentInit, momentum_cid: "bafkreim" } }],
    ["momentum_sha256 without its cid", { ...base, init: { ...parentInit, momentum_sha256: `0x${"cd".repeat(32)}` } }],
    ["an upper-case sha256", { ...base, init: { ...parentInit, weights_sha256: `0x${"AB".repeat(32)}` } }],
    ["a short sha256", { ...base, init: { ...parentInit, weights_sha256: "0xabcd" } }],
    ["an empty weights CID", { ...base, init: { ...parentInit, weights_cid: "" } }],
    ["a parent round with a leading zero", { ...base, init: { ...parentInit, parent_round: "041" } }],
    ["a negative parent round", { ...base, init: { ...parentInit, parent_round: "-1" } }],
    ["a parent round as a number", { ...base, init: { ...parentInit, parent_round: 41 } }],
    ["a parent round above uint256", { ...base, init: { ...parentInit, parent_round: (1n << 256n).toString() } }],
    ["a seed above uint32", { ...base, init: { seed: 2 ** 32 } }],
    ["a chunk larger than the training pool", { ...base, examples_per_chunk: 8001 }],
    ["batch above chunk", { ...base, batch_size: 400 }],
    ["rank above hidden", { ...base, model: { family: "bitnet-lora", hidden: 8, rank: 9, alpha: 1 } }]
  ]
  for (const [name, value] of v2Malformed) {
    it(`rejects a v2 spec with ${name}`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(parseRoundSpec(JSON.stringify(value)))
        assert.strictEqual(error._tag, "ValidationError")
        assert.match(error.message, /^invalid round spec: /)
      }).pipe(Effect.runPromise))
  }

  it("a chunk of the whole training pool is allowed", () =>
    Effect.gen(function*() {
      yield* decodeRoundSpec({ ...base, examples_per_chunk: 8000 })
    }).pipe(Effect.runPromise))
})

describe("held-out test split", () => {
  const test = heldOutTestIndices()
  const pool = trainingPoolIndices()

  it("2,000 test digits and 8,000 training ones, disjoint, covering the dataset, sorted, fixed", () => {
    assert.strictEqual(MNIST_TEST_SPLIT, 2000)
    assert.strictEqual(test.length, 2000)
    assert.strictEqual(pool.length, 8000)
    const all = new Set([...test, ...pool])
    assert.strictEqual(all.size, MNIST.count)
    assert.isTrue([...all].every((i) => i < MNIST.count))
    for (const list of [test, pool]) for (let i = 1; i < list.length; i++) assert.isTrue(list[i - 1]! < list[i]!)
    assert.deepStrictEqual(heldOutTestIndices(), test)
    assert.deepStrictEqual(trainingPoolIndices(), pool)
    // Callers get copies: scribbling on one does not move the split.
    heldOutTestIndices().fill(0)
    assert.deepStrictEqual(heldOutTestIndices(), test)
    // Regression guard: the split of every learning round; a change here makes test accuracies incomparable.
    assert.strictEqual(
      sha256Hex(new Uint8Array(test.buffer, test.byteOffset, test.byteLength)),
      "0x0f6a52c01dda806d44c5cba972dee94f34dfdffddea2fa25be9c31a9d5fa9830"
    )
    assert.deepStrictEqual(Array.from(test.subarray(0, 5)), [0, 8, 11, 13, 22])
  })

  it("the split is a Fisher–Yates prefix of the split stream", () => {
    const prng = Prng.fromKey([Stream.split, 0])
    const order = Array.from({ length: MNIST.count }, (_, i) => i)
    for (let i = 0; i < MNIST_TEST_SPLIT; i++) {
      const j = i + prng.below(MNIST.count - i)
      ;[order[i], order[j]] = [order[j]!, order[i]!]
    }
    assert.deepStrictEqual(Array.from(test), order.slice(0, MNIST_TEST_SPLIT).sort((a, b) => a - b))
  })

  it("v1 chunks are unchanged; v2 chunks draw only from the training pool, never a test digit", () => {
    const v1 = defaultRoundSpec(7)
    assert.deepStrictEqual(chunkExamples(v1, 3, MNIST.count), chunkExampleIndices(7, 3, MNIST.count, 320))
    const testSet = new Set(test)
    const poolSet = new Set(pool)
    for (const spec of [learningRoundSpec(7), { ...learningRoundSpec(123), examples_per_chunk: 8000, batch_size: 32 }]) {
      for (let chunk = 0; chunk < 200; chunk += spec.examples_per_chunk === 8000 ? 50 : 1) {
        const examples = chunkExamples(spec, chunk, MNIST.count)
        assert.strictEqual(examples.length, spec.examples_per_chunk)
        assert.strictEqual(new Set(examples).size, examples.length)
        assert.isTrue(examples.every((i) => poolSet.has(i) && !testSet.has(i)), `chunk ${chunk}`)
      }
    }
    const v2 = learningRoundSpec(7)
    // The v1 shuffle over pool positions, mapped to dataset indices.
    const positions = chunkExampleIndices(7, 3, 8000, 320)
    assert.deepStrictEqual(chunkExamples(v2, 3, MNIST.count), positions.map((p) => pool[p]!))
    assert.deepStrictEqual(Array.from(chunkExamples(v2, 3, MNIST.count).subarray(0, 6)), [3565, 9653, 8614, 9827, 5886, 5794])
    assert.throws(() => chunkExamples(v2, 0, 500))
  })
})

describe("round weights and momentum", () => {
  const spec = learningRoundSpec(11)
  const fetchFrom = (store: ReadonlyMap<string, Uint8Array>) => (cid: string) =>
    Effect.suspend(() => {
      const bytes = store.get(cid)
      return bytes === undefined
        ? Effect.fail(new ValidationError({ message: `no ${cid}` }))
        : Effect.succeed(bytes)
    })
  const noFetch = () => Effect.die("must not fetch")

  it("a round's weights envelope names the round and the model it started from, and reads back", () =>
    Effect.gen(function*() {
      const weights = new Map([...initialWeights(spec)].map(([n, v]) => [n, v instanceof Float32Array ? v.map((x) => x * 0.5) : v]))
      const bytes = yield* roundWeightsEnvelope(spec, 12345678901234567890n, weights)
      const { header } = yield* decodeEnvelope(bytes)
      assert.strictEqual(header.round_id, "12345678901234567890")
      assert.strictEqual(header.model_hash, modelHash(spec))
      assert.strictEqual(header.encoding, "weights")
      assert.deepStrictEqual(header.profile, portableProfile)
      assert.strictEqual(header.loss_before, null)
      assert.deepStrictEqual(yield* decodeWeightsEnvelope(spec, bytes), weights)
      // weightsEnvelope is the round-0 case.
      assert.deepStrictEqual(yield* roundWeightsEnvelope(spec, 0n, initialWeights(spec)), yield* initialWeightsEnvelope(spec))
    }).pipe(Effect.runPromise))

  for (const family of ["mlp", "bitnet-lora"] as const) {
    it(`${family}: momentum envelopes hold the trainable tensors and read back`, () =>
      Effect.gen(function*() {
        const s = learningRoundSpec(3, family)
        const momentum = trainableParameters(s.model).map((p, i) => ({
          name: p.name,
          values: Float32Array.from({ length: p.shape.reduce((a, b) => a * b, 1) }, (_, j) => Math.fround((i + 1) * 1e-3 * (j % 7)))
        }))
        const bytes = yield* momentumEnvelope(s, 9n, momentum)
        const { header } = yield* decodeEnvelope(bytes)
        assert.strictEqual(header.encoding, "momentum")
        assert.strictEqual(header.round_id, "9")
        assert.deepStrictEqual(header.tensors.map((t) => t.name), trainableParameters(s.model).map((p) => p.name))
        const decoded = yield* decodeMomentumEnvelope(s, bytes)
        assert.deepStrictEqual(decoded.map((t) => [t.name, t.values]), momentum.map((m) => [m.name, m.values]))
        const missing = yield* Effect.flip(momentumEnvelope(s, 9n, momentum.slice(1)))
        assert.match(missing.message, /lacks/)
        // A weights envelope is no momentum.
        assert.match((yield* Effect.flip(decodeMomentumEnvelope(s, yield* initialWeightsEnvelope(s)))).message, /encoding/)
      }).pipe(Effect.runPromise))
  }

  it("startingWeights: a seed regenerates initialWeights without fetching; v1 too", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* startingWeights(spec, noFetch), initialWeights(spec))
      assert.deepStrictEqual(yield* startingWeights(defaultRoundSpec(11), noFetch), initialWeights(defaultRoundSpec(11)))
      // v2 seed init = v1 weights_seed: the same generated values.
      assert.deepStrictEqual(initialWeights(spec), initialWeights(defaultRoundSpec(11)))
      assert.throws(() => initialWeights(childRoundSpec(spec, { parent_round: "1", weights_cid: "x", weights_sha256: `0x${"0".repeat(64)}` })))
      assert.isUndefined(yield* startingMomentum(spec, noFetch))
    }).pipe(Effect.runPromise))

  it("startingWeights: a parent's weights are fetched, sha256-checked, and decoded whatever model hash they carry", () =>
    Effect.gen(function*() {
      const parentWeights = new Map([...initialWeights(spec)].map(([n, v]) => [n, v instanceof Float32Array ? v.map((x) => x + 0.01) : v]))
      const bytes = yield* roundWeightsEnvelope(spec, 1n, parentWeights)
      const momentum = trainableParameters(spec.model).map((p) => ({
        name: p.name,
        values: new Float32Array(p.shape.reduce((a, b) => a * b, 1)).fill(0.25)
      }))
      const momentumBytes = yield* momentumEnvelope(spec, 1n, momentum)
      const fetch = fetchFrom(new Map([["cid-w", bytes], ["cid-m", momentumBytes]]))
      const child = childRoundSpec(spec, {
        parent_round: "1",
        weights_cid: "cid-w",
        weights_sha256: sha256Hex(bytes) as `0x${string}`,
        momentum_cid: "cid-m",
        momentum_sha256: sha256Hex(momentumBytes) as `0x${string}`
      })
      assert.notStrictEqual(modelHash(child), modelHash(spec))
      assert.deepStrictEqual(yield* startingWeights(child, fetch), parentWeights)
      const fetchedMomentum = yield* startingMomentum(child, fetch)
      assert.deepStrictEqual(fetchedMomentum?.map((m) => m.values), momentum.map((m) => m.values))

      // Other bytes than the spec's sha256: refused before decoding.
      const wrong = childRoundSpec(spec, { ...child.init as ParentInit, weights_sha256: `0x${"11".repeat(32)}` })
      const error = yield* Effect.flip(startingWeights(wrong, fetch))
      assert.strictEqual(error._tag, "ValidationError")
      assert.match(error.message, /weights do not match the spec's weights_sha256/)
      assert.match((error as ValidationError).hint ?? "", /corrupted store|wrong CID/)
      const wrongMomentum = childRoundSpec(spec, { ...child.init as ParentInit, momentum_sha256: sha256Hex(bytes) as `0x${string}` })
      assert.match((yield* Effect.flip(startingMomentum(wrongMomentum, fetch))).message, /momentum do not match/)
      // The right hash of the wrong model's weights: decoded and refused.
      const otherModel = yield* initialWeightsEnvelope(learningRoundSpec(11, "bitnet-lora"))
      const mismatched = childRoundSpec(spec, {
        parent_round: "1",
        weights_cid: "cid-o",
        weights_sha256: sha256Hex(otherModel) as `0x${string}`
      })
      const decodeError = yield* Effect.flip(startingWeights(mismatched, fetchFrom(new Map([["cid-o", otherModel]]))))
      assert.match(decodeError.message, /tensors|expected/)
      // No momentum in the spec: none fetched.
      assert.isUndefined(yield* startingMomentum(mismatched, noFetch))
      // A fetch failure is the fetch's error.
      assert.match((yield* Effect.flip(startingWeights(child, fetchFrom(new Map())))).message, /no cid-w/)
    }).pipe(Effect.runPromise))
})

describe("evaluateModel (pure)", () => {
  const model = { family: "mlp", hidden: 4 } as const
  /** An mlp whose logits are fc2.bias for every input: zero weights, zero first layer. */
  const constantLogits = (logits: ReadonlyArray<number>) =>
    new Map([
      ["fc1.weight", new Float32Array(784 * 4)],
      ["fc1.bias", new Float32Array(4)],
      ["fc2.weight", new Float32Array(4 * 10)],
      ["fc2.bias", Float32Array.from(logits)]
    ])
  const dataset = toyDataset(20)
  const all = Uint32Array.from({ length: 20 }, (_, i) => i)

  it("equal logits: the lowest class is predicted and the loss is ln 10", () => {
    const r = evaluateModel(model, constantLogits(new Array(10).fill(0.5)), dataset, all)
    assert.strictEqual(r.count, 20)
    assert.strictEqual(r.correct, 2) // labels i mod 10: two examples of class 0
    assert.strictEqual(r.accuracy, 0.1)
    assert.closeTo(r.loss, Math.log(10), 1e-12)
    assert.strictEqual(testAccuracyPpm(r), 100_000)
  })

  it("huge logits stay finite (log-sum-exp is shifted) and score by hand", () => {
    const logits = [0, 0, 0, 1e4, 0, 0, 0, 0, 0, 0]
    const r = evaluateModel(model, constantLogits(logits), dataset, all)
    assert.strictEqual(r.correct, 2)
    // Class-3 examples lose ~0, every other one 1e4.
    assert.closeTo(r.loss, (18 * 1e4) / 20, 1e-6)
    assert.isTrue(Number.isFinite(r.loss))
  })

  it("the hidden layer is a ReLU of x · W1 + b1", () => {
    const w = constantLogits(new Array(10).fill(0))
    // Unit 0 sees the pixel sum; it feeds class (label) 7 only, unit 1 (negative) would feed class 1 but is cut.
    for (let i = 0; i < 784; i++) {
      ;(w.get("fc1.weight") as Float32Array)[i * 4] = 1
      ;(w.get("fc1.weight") as Float32Array)[i * 4 + 1] = -1
    }
    ;(w.get("fc2.weight") as Float32Array)[0 * 10 + 7] = 1
    ;(w.get("fc2.weight") as Float32Array)[1 * 10 + 1] = 1
    const one = Uint32Array.of(5) // every pixel 0.05, label 5
    const r = evaluateModel(model, w, dataset, one)
    const z = 784 * Math.fround(0.05)
    const expectedLoss = Math.log(9 + Math.exp(z)) // label 5's logit is 0
    assert.closeTo(r.loss, expectedLoss, 1e-9)
    assert.strictEqual(r.correct, 0)
  })
})
