import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fc from "fast-check"
import {
  encodeEnvelope,
  encodeEnvelopeWith,
  type EnvelopeHeader,
  float32Bytes,
  FORMAT,
  writeFloat32DifferenceLE
} from "../../src/domain/gradientEnvelope.ts"

const header = (lengths: ReadonlyArray<number>, pad: number): EnvelopeHeader => ({
  format: FORMAT,
  round_id: "7",
  chunk_id: 3,
  miner: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
  // Model hashes of different lengths move the tensors to every alignment.
  model_hash: `0x${"a".repeat(pad)}`,
  encoding: "pseudo-gradient",
  tensors: lengths.map((n, i) => ({ name: `t${i}`, dtype: "float32", shape: [n] })),
  steps: 10,
  batch_size: 32,
  lr: 0.05,
  loss_before: 2.3,
  loss_after: 2.1,
  profile: { runtime: "onnxruntime-node 1.30.0", ep: "cpu", threads: 1, graph_optimization: "disabled", isa: "avx2", platform: "linux-x64" }
})

const difference = (a: Float32Array, b: Float32Array) => a.map((x, i) => x - b[i]!)

describe("encodeEnvelopeWith + writeFloat32DifferenceLE", () => {
  it("gives the bytes of encodeEnvelope over the differences' float32Bytes, at every alignment", () =>
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 40_000 }), { minLength: 1, maxLength: 3 }),
        fc.integer({ min: 0, max: 3 }),
        fc.integer(),
        (lengths, pad, seed) => {
          let x = seed | 1
          const random = () => ((x = (x * 1103515245 + 12345) | 0) / 2 ** 31) * 1e3
          const pairs = lengths.map((n) => [Float32Array.from({ length: n }, random), Float32Array.from({ length: n }, random)] as const)
          const h = header(lengths, pad)
          const expected = Effect.runSync(encodeEnvelope(h, pairs.map(([a, b]) => float32Bytes(difference(a, b)))))
          const actual = Effect.runSync(encodeEnvelopeWith(h, (i, out) => writeFloat32DifferenceLE(pairs[i]![0], pairs[i]![1], out)))
          assert.deepStrictEqual(actual, expected)
        }
      ),
      { numRuns: 30 }
    ))

  it("validates the header as encodeEnvelope does", () => {
    const bad = { ...header([1], 0), miner: "nope" }
    const error = Effect.runSync(Effect.flip(encodeEnvelopeWith(bad, () => assert.fail("nothing is written for a bad header"))))
    assert.strictEqual(error._tag, "ValidationError")
  })
})
