import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fc from "fast-check"
import { decodeEnvelope, type EnvelopeHeader, encodeEnvelope, FORMAT, float32Bytes, float32Values } from "../../src/domain/gradientEnvelope.ts"
import { pseudoGradientEnvelope } from "../../src/layers/onnx/OnnxTrainer.ts"

const header = (shapes: ReadonlyArray<ReadonlyArray<number>>): EnvelopeHeader => ({
  format: FORMAT,
  round_id: "7",
  chunk_id: 3,
  miner: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
  model_hash: `0x${"ab".repeat(32)}`,
  encoding: "pseudo-gradient",
  tensors: shapes.map((shape, i) => ({ name: `t${i}`, dtype: "float32", shape: [...shape] })),
  steps: 10,
  batch_size: 32,
  lr: 0.05,
  loss_before: 2.3,
  loss_after: 2.1,
  profile: { runtime: "onnxruntime-node 1.30.0", ep: "cpu", threads: 1, graph_optimization: "disabled", isa: "avx2", platform: "linux-x64" }
})

describe("pseudoGradientEnvelope", () => {
  it.effect("gives the bytes of encodeEnvelope over float32Bytes, for tensors that are views at any offset", () =>
    Effect.sync(() =>
      fc.assert(
        fc.property(
          fc.array(
            fc.tuple(
              fc.array(fc.float({ noNaN: true }), { maxLength: 40 }),
              fc.integer({ min: 0, max: 3 })
            ),
            { minLength: 1, maxLength: 4 }
          ),
          (specs) => {
            // Each tensor is a view into a larger buffer, starting `offset` values in, as subarrays are.
            const tensors = specs.map(([values, offset]) => {
              const backing = new Float32Array(offset + values.length + 2)
              backing.set(values, offset)
              return backing.subarray(offset, offset + values.length)
            })
            const h = header(tensors.map((t) => [t.length]))
            const expected = Effect.runSync(encodeEnvelope(h, tensors.map(float32Bytes)))
            const actual = Effect.runSync(pseudoGradientEnvelope(h, tensors))
            assert.deepStrictEqual(actual, expected)
          }
        )
      )
    ))

  it.effect("decodes back to the same values, signed zeros and infinities included", () =>
    Effect.gen(function*() {
      const values = new Float32Array([0, -0, 1.5, -3.25e-40, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 3.4e38])
      const decoded = yield* decodeEnvelope(yield* pseudoGradientEnvelope(header([[values.length]]), [values]))
      const back = float32Values(decoded.tensors[0]!)
      assert.strictEqual(back.length, values.length)
      for (let i = 0; i < values.length; i++) assert.isTrue(Object.is(back[i], values[i]), `value ${i}`)
    }))
})
