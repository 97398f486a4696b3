import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import {
  type DecodedEnvelope,
  type DeterminismProfile,
  type EnvelopeHeader,
  float32Bytes,
  FORMAT,
  type Tensor
} from "../../src/domain/gradientEnvelope.ts"
import {
  compareRecomputation,
  relativeDifference,
  relativeL2,
  reproducesExactly,
  taskMismatch,
  tensorValues
} from "../../src/domain/verdict.ts"

const profile: DeterminismProfile = {
  runtime: "onnxruntime-node 1.30.0",
  ep: "cpu",
  threads: 1,
  graph_optimization: "disabled",
  isa: "avx2",
  platform: "linux-x64"
}

const header = (overrides: Partial<EnvelopeHeader> = {}, shapes: ReadonlyArray<ReadonlyArray<number>> = [[4]]): EnvelopeHeader => ({
  format: FORMAT,
  round_id: "1",
  chunk_id: 7,
  miner: "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
  model_hash: `0x${"ab".repeat(32)}`,
  encoding: "pseudo-gradient",
  tensors: shapes.map((shape, i) => ({ name: `t${i}`, dtype: "float32" as const, shape })),
  steps: 10,
  batch_size: 8,
  lr: 0.1,
  loss_before: 2.3,
  loss_after: 1.9,
  profile,
  ...overrides
})

const envelope = (values: ReadonlyArray<ReadonlyArray<number>>, overrides: Partial<EnvelopeHeader> = {}): DecodedEnvelope => {
  const h = header(overrides, values.map((v) => [v.length]))
  return {
    header: h,
    tensors: values.map((v, i): Tensor => ({ spec: h.tensors[i]!, bytes: float32Bytes(Float32Array.from(v)) }))
  }
}

const f32 = fc.float({ noNaN: true, noDefaultInfinity: true, min: -1e3, max: 1e3 })
const vector = fc.array(f32, { minLength: 1, maxLength: 64 })

describe("relativeL2", () => {
  it("is 0 for a tensor against itself, and symmetric in scale: ‖a − 2a‖/‖2a‖ = 1/2", () => {
    fc.assert(fc.property(vector, (v) => {
      assert.strictEqual(relativeL2(v, v), 0)
      const doubled = v.map((x) => 2 * x)
      if (v.some((x) => x !== 0)) assert.approximately(relativeL2(v, doubled), 0.5, 1e-12)
    }))
  })

  it("scales: ‖λa − a‖/‖a‖ = |λ − 1|", () => {
    fc.assert(fc.property(vector, fc.double({ min: -10, max: 10, noNaN: true }), (v, lambda) => {
      fc.pre(v.some((x) => x !== 0))
      assert.approximately(relativeL2(v.map((x) => lambda * x), v), Math.abs(lambda - 1), 1e-9)
    }))
  })

  it("accumulates in float64: 10^6 equal offsets of 1e-4 on ones give exactly 1e-4", () => {
    const ones = new Float64Array(1_000_000).fill(1)
    const shifted = ones.map((x) => x + 1e-4)
    assert.approximately(relativeL2(shifted, ones), 1e-4, 1e-12)
  })

  it("never passes NaN, Infinity, a zero reference with a nonzero tensor, or another length", () => {
    assert.strictEqual(relativeL2([NaN, 1], [1, 1]), Infinity)
    assert.strictEqual(relativeL2([Infinity, 1], [1, 1]), Infinity)
    assert.strictEqual(relativeL2([1, 0], [0, 0]), Infinity)
    assert.strictEqual(relativeL2([0, 0], [0, 0]), 0)
    assert.strictEqual(relativeL2([1], [1, 1]), Infinity)
  })

  it("reads every dtype's little-endian values", () => {
    const spec = (dtype: Tensor["spec"]["dtype"], n: number) => ({ name: "t", dtype, shape: [n] })
    assert.deepStrictEqual([...tensorValues({ spec: spec("int8", 2), bytes: Uint8Array.from([0xff, 0x01]) })], [-1, 1])
    // float16 1.0 = 0x3c00, −2.0 = 0xc000
    assert.deepStrictEqual([...tensorValues({ spec: spec("float16", 2), bytes: Uint8Array.from([0x00, 0x3c, 0x00, 0xc0]) })], [1, -2])
    assert.deepStrictEqual([...tensorValues({ spec: spec("float32", 1), bytes: float32Bytes(Float32Array.of(0.5)) })], [0.5])
  })
})

describe("relativeDifference", () => {
  it("is 0 for equal values and |a − b|/|b| otherwise", () => {
    assert.strictEqual(relativeDifference(1.9, 1.9), 0)
    assert.approximately(relativeDifference(2, 1.6), 0.25, 1e-12)
    assert.strictEqual(relativeDifference(1, 0), Infinity)
  })
})

describe("compareRecomputation", () => {
  const honest = envelope([[0.1, -0.2, 0.3, 0.4], [1, 2]])
  const compare = (submitted: DecodedEnvelope, sameProfile = true, tolerance = 1e-4, recomputed = honest) =>
    compareRecomputation({ submitted, recomputed, sameProfile, tolerance })

  it("accepts the recomputation's own bytes as accepted_exact, whatever the profile", () => {
    for (const same of [true, false]) {
      const c = compare(honest, same)
      assert.strictEqual(c.verdict, "accepted_exact")
      assert.isTrue(c.bitIdentical)
      assert.deepStrictEqual(c.distances.map((d) => d.distance), [0, 0])
    }
  })

  it("same profile: one differing bit is a mismatch", () => {
    const tweaked = envelope([[0.1, -0.2, 0.3, 0.40000003], [1, 2]])
    const c = compare(tweaked, true)
    assert.strictEqual(c.verdict, "rejected_recompute_mismatch")
    assert.isFalse(c.bitIdentical)
  })

  it("another profile: within the tolerance is accepted_within_tolerance, over it a mismatch", () => {
    const near = envelope([[0.1, -0.2, 0.3, 0.40000003], [1, 2]])
    assert.strictEqual(compare(near, false).verdict, "accepted_within_tolerance")
    const far = envelope([[0.1, -0.2, 0.3, 0.41], [1, 2]])
    const c = compare(far, false)
    assert.strictEqual(c.verdict, "rejected_recompute_mismatch")
    assert.isAbove(c.distances[0]!.distance!, 1e-4)
  })

  it("any tensor over the tolerance rejects, whatever the others (property)", () => {
    fc.assert(fc.property(vector, fc.double({ min: 1e-3, max: 10, noNaN: true }), (v, bump) => {
      fc.pre(v.some((x) => Math.abs(x) > 1e-3))
      const reference = envelope([v, [1, 2]])
      const scaled = envelope([v.map((x) => x * (1 + bump)), [1, 2]])
      assert.strictEqual(compare(scaled, false, 1e-4, reference).verdict, "rejected_recompute_mismatch")
    }))
  })

  it("a scaled, random or zero gradient is a mismatch; NaN never passes", () => {
    assert.strictEqual(compare(envelope([[0.2, -0.4, 0.6, 0.8], [2, 4]]), false).verdict, "rejected_recompute_mismatch")
    assert.strictEqual(compare(envelope([[0, 0, 0, 0], [0, 0]]), false, 0.5).verdict, "rejected_recompute_mismatch")
    assert.strictEqual(compare(envelope([[NaN, -0.2, 0.3, 0.4], [1, 2]]), false, 1e9).verdict, "rejected_recompute_mismatch")
  })

  it("another run (steps, lr, tensor shapes or names) is a mismatch before any distance", () => {
    assert.strictEqual(compare(envelope([[0.1, -0.2, 0.3, 0.4], [1, 2]], { steps: 5 })).verdict, "rejected_recompute_mismatch")
    assert.strictEqual(compare(envelope([[0.1, -0.2, 0.3, 0.4], [1, 2]], { lr: 0.2 })).verdict, "rejected_recompute_mismatch")
    const fewer = compare(envelope([[0.1, -0.2, 0.3, 0.4]]))
    assert.strictEqual(fewer.verdict, "rejected_recompute_mismatch")
    assert.deepStrictEqual(fewer.distances, [{ name: "t0", distance: null }])
  })

  it("honest tensors with made-up or missing losses: rejected_no_improvement", () => {
    const made = envelope([[0.1, -0.2, 0.3, 0.4], [1, 2]], { loss_after: 0.5 })
    assert.strictEqual(compare(made, true).verdict, "rejected_no_improvement")
    assert.strictEqual(compare(made, false).verdict, "rejected_no_improvement")
    assert.strictEqual(compare(envelope([[0.1, -0.2, 0.3, 0.4], [1, 2]], { loss_before: null })).verdict, "rejected_no_improvement")
  })

  it("losses: exact for the same profile, within the tolerance across profiles", () => {
    const close = envelope([[0.1, -0.2, 0.3, 0.4], [1, 2]], { loss_after: 1.9 * (1 + 1e-6) })
    assert.strictEqual(compare(close, true).verdict, "rejected_no_improvement")
    assert.strictEqual(compare(close, false).verdict, "accepted_within_tolerance")
  })

  it("a recomputation that does not improve the loss rejects even an identical submission", () => {
    const flat = envelope([[0.1, -0.2, 0.3, 0.4], [1, 2]], { loss_before: 1.9, loss_after: 1.9 })
    const c = compare(flat, true, 1e-4, flat)
    assert.strictEqual(c.verdict, "rejected_no_improvement")
  })

  it("tensors are judged before losses: wrong tensors and wrong losses is a mismatch", () => {
    const both = envelope([[9, 9, 9, 9], [1, 2]], { loss_after: 0.1 })
    assert.strictEqual(compare(both, false).verdict, "rejected_recompute_mismatch")
  })
})

describe("reproducesExactly", () => {
  it("the same CPU profile must give the same bytes; another thread count, ISA or provider is compared within tolerance", () => {
    assert.isTrue(reproducesExactly(profile, { ...profile }))
    assert.isFalse(reproducesExactly(profile, { ...profile, threads: 2 }))
    assert.isFalse(reproducesExactly(profile, { ...profile, isa: "avx512" }))
    assert.isFalse(reproducesExactly({ ...profile, ep: "webgpu" }, profile))
  })

  it("two GPU profiles alike are not bound to the same bytes: the profile does not name the GPU or its driver", () => {
    for (const ep of ["webgpu", "cuda"]) assert.isFalse(reproducesExactly({ ...profile, ep }, { ...profile, ep }))
  })
})

describe("taskMismatch", () => {
  const task = { roundId: 1n, chunkId: 7, miner: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8" }

  it("accepts the submission's round, chunk and miner (any letter case) and model", () => {
    assert.isUndefined(taskMismatch(header(), task))
    assert.isUndefined(taskMismatch(header(), { ...task, modelHash: `0x${"AB".repeat(32)}` }))
  })

  it("names what differs", () => {
    assert.match(taskMismatch(header({ round_id: "2" }), task)!, /round_id 2/)
    assert.match(taskMismatch(header({ chunk_id: 8 }), task)!, /chunk_id 8/)
    assert.match(taskMismatch(header({ miner: `0x${"11".repeat(20)}` }), task)!, /miner/)
    assert.match(taskMismatch(header(), { ...task, modelHash: `0x${"cd".repeat(32)}` })!, /model_hash/)
  })
})
