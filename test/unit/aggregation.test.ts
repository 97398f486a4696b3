import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import fc from "fast-check"
import {
  type Aggregate,
  aggregate,
  type NamedTensor,
  outerStep,
  type OuterStepOptions,
  type OuterStepResult,
  type PseudoGradient,
  type Tensors
} from "../../src/domain/aggregation.ts"
import type { ValidationError } from "../../src/domain/errors.ts"

const run = (gradients: ReadonlyArray<PseudoGradient>, trim: number): Aggregate =>
  Effect.runSync(aggregate(gradients, { trim }))
const step = (weights: Tensors, delta: Tensors, options: OuterStepOptions): OuterStepResult =>
  Effect.runSync(outerStep(weights, delta, options))
const aggregateError = (gradients: ReadonlyArray<PseudoGradient>, trim = 0.1): ValidationError =>
  Effect.runSync(Effect.flip(aggregate(gradients, { trim })))
const stepError = (weights: Tensors, delta: Tensors, options: OuterStepOptions): ValidationError =>
  Effect.runSync(Effect.flip(outerStep(weights, delta, options)))

const bytes = (tensors: Tensors): ReadonlyArray<number> =>
  tensors.flatMap((t) => Array.from(new Uint8Array(t.values.buffer, t.values.byteOffset, t.values.byteLength)))
const tensor = (name: string, shape: ReadonlyArray<number>, values: ReadonlyArray<number>): NamedTensor => ({
  name,
  shape,
  values: Float32Array.from(values)
})
const withValues = (like: Tensors, values: (v: number, t: number, i: number) => number): Tensors =>
  like.map((t, ti) => ({ ...t, values: t.values.map((v, i) => values(v, ti, i)) }))

// ---------------------------------------------------------------------------------------------------------------
// Arbitraries: small tensor lists (1–3 tensors of at most 3×3) and up to 9 gradients, so each property runs fast.

interface Layout {
  readonly name: string
  readonly shape: ReadonlyArray<number>
}
const layout: fc.Arbitrary<ReadonlyArray<Layout>> = fc
  .array(fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 2 }), { minLength: 1, maxLength: 3 })
  .map((shapes) => shapes.map((shape, i) => ({ name: `layer${i}.weight`, shape })))
const size = (shape: ReadonlyArray<number>): number => shape.reduce((n, d) => n * d, 1)

const small = fc.float({ min: -10, max: 10, noNaN: true })
const anyFloat32 = fc.float({ noNaN: true, noDefaultInfinity: true })
/** Float32 values that can be doubled without overflowing. */
const belowHalfMax = fc.float({ min: Math.fround(-1.7e38), max: Math.fround(1.7e38), noNaN: true })
const tensorsOf = (shapes: ReadonlyArray<Layout>, value: fc.Arbitrary<number> = small): fc.Arbitrary<Tensors> =>
  fc.tuple(...shapes.map((s) => fc.array(value, { minLength: size(s.shape), maxLength: size(s.shape) }))).map((arrays) =>
    arrays.map((values, i) => tensor(shapes[i]!.name, shapes[i]!.shape, values))
  )
/** `count` gradients of one layout with distinct chunk ids. */
const gradientsOf = (shapes: ReadonlyArray<Layout>, count: { min: number; max: number }, value = small) =>
  fc
    .array(tensorsOf(shapes, value), { minLength: count.min, maxLength: count.max })
    .chain((list) =>
      fc
        .uniqueArray(fc.nat(10_000), { minLength: list.length, maxLength: list.length })
        .map((ids) => list.map((tensors, i): PseudoGradient => ({ chunkId: ids[i]!, tensors })))
    )
const nine = <T>(value: fc.Arbitrary<T>) => fc.array(value, { minLength: 9, maxLength: 9 })
const trim = fc.double({ min: 0, max: 0.49, noNaN: true })

describe("aggregate", () => {
  it("gives byte-identical output for any permutation of its inputs", () => {
    const input = layout.chain((shapes) =>
      gradientsOf(shapes, { min: 1, max: 9 }).chain((gradients) =>
        fc.tuple(fc.constant(gradients), fc.shuffledSubarray(gradients, { minLength: gradients.length }), trim)
      )
    )
    fc.assert(
      fc.property(input, ([gradients, permuted, t]) => {
        const a = run(gradients, t)
        const b = run(permuted, t)
        assert.deepStrictEqual(bytes(b.tensors), bytes(a.tensors))
        assert.deepStrictEqual(b.contributions, a.contributions)
        assert.strictEqual(b.medianNorm, a.medianNorm)
      }),
      { numRuns: 100 }
    )
  })

  /*
   * The robustness bound. n honest gradients, plus one adversary of norm 1e6 (larger than every honest norm), so
   * N = n + 1. Compare A' = aggregate(honest + adversary) with A = aggregate(honest), per coordinate.
   * - Clip bounds: M (honest alone, lower middle = honest order statistic ⌊(n−1)/2⌋) and M' (with the adversary, whose
   *   norm sorts last: honest order statistic ⌊n/2⌋). So M ≤ M' ≤ the largest honest norm — the adversary cannot
   *   raise the clip bound past an honest norm (M' = M when n is odd), and its own clipped value is within ±M'.
   * - Clipping is projection onto an L2 ball; the balls of radius M and M' move any vector by at most M' − M, so each
   *   honest coordinate moves by at most M' − M, and a trimmed mean (a sorted-order weighted mean, weights summing
   *   to 1; sorting is non-expansive in the max norm) moves by at most M' − M too.
   * - Inserting one value into n sorted values with k' ∈ {k, k + 1} dropped per side (k for n values, k' for N; both
   *   capped at the median) changes the kept window by one value v inside [−M', M'] (k' = k: one value added; k' = k + 1:
   *   one net value removed), and the window mean by (v − mean)/(N − 2k') in absolute value, at most 2M'/(N − 2k').
   * Hence |A'ᵢ − Aᵢ| ≤ (M' − M) + 2M'/(N − 2k'), plus the float32 rounding of both results. A plain mean would move by
   * up to 1e6/N.
   */
  it("lets one adversarial gradient of norm 1e6 move each coordinate by at most (M' − M) + 2M'/(N − 2k')", () => {
    const input = layout.chain((shapes) =>
      fc.tuple(gradientsOf(shapes, { min: 1, max: 8 }), tensorsOf(shapes), trim, fc.nat(10_000))
    )
    fc.assert(
      fc.property(input, ([honest, direction, t, id]) => {
        const norm = Math.hypot(...direction.flatMap((d) => Array.from(d.values)))
        const adversary: PseudoGradient = {
          chunkId: 10_001 + id,
          tensors: withValues(direction, (v, ti, i) => (norm === 0 ? (ti === 0 && i === 0 ? 1e6 : 0) : (v / norm) * 1e6))
        }
        const alone = run(honest, t)
        const attacked = run([...honest, adversary], t)
        const largestHonestNorm = Math.max(...alone.contributions.map((c) => c.norm))
        assert.isAtMost(attacked.medianNorm, largestHonestNorm)
        assert.isAtLeast(attacked.medianNorm, alone.medianNorm)
        const kept = honest.length + 1 - 2 * attacked.trimmedPerSide
        const bound = attacked.medianNorm - alone.medianNorm + (2 * attacked.medianNorm) / kept
        const rounding = 2 ** -22 * attacked.medianNorm + 1e-44
        attacked.tensors.forEach((tensor, ti) =>
          tensor.values.forEach((v, i) => assert.isAtMost(Math.abs(v - alone.tensors[ti]!.values[i]!), bound + rounding))
        )
      }),
      { numRuns: 100 }
    )
  })

  it("aggregates identical gradients to themselves, for any trim", () => {
    const input = layout.chain((shapes) => fc.tuple(tensorsOf(shapes, anyFloat32), fc.integer({ min: 1, max: 7 }), trim))
    fc.assert(
      fc.property(input, ([tensors, copies, t]) => {
        const gradients = Array.from({ length: copies }, (_, i): PseudoGradient => ({ chunkId: i, tensors }))
        assert.deepStrictEqual(bytes(run(gradients, t).tensors), bytes(tensors))
      }),
      { numRuns: 100 }
    )
  })

  it("is the plain mean with trim 0 and equal norms", () => {
    // Sign flips of one gradient keep its norm to the bit; multiples of 2⁻⁸ keep every float64 sum exact, so the
    // mean computed here in chunk order must equal the aggregate's sorted-order one to the byte.
    const dyadic = fc.integer({ min: -2048, max: 2048 }).map((x) => x / 256)
    const input = layout.chain((shapes) =>
      fc.tuple(tensorsOf(shapes, dyadic), fc.array(nine(fc.boolean()), { minLength: 1, maxLength: 9 }))
    )
    fc.assert(
      fc.property(input, ([base, signs]) => {
        const gradients = signs.map((flips, g): PseudoGradient => ({
          chunkId: g,
          tensors: withValues(base, (v, t, i) => (flips[(t * 3 + i) % 9] ? -v : v))
        }))
        const column = (t: number, i: number) => gradients.map((g) => g.tensors[t]!.values[i]!)
        const mean = withValues(base, (_, t, i) => column(t, i).reduce((s, v) => s + v) / gradients.length)
        const result = run(gradients, 0)
        assert.deepStrictEqual(bytes(result.tensors), bytes(mean))
        assert.isTrue(result.contributions.every((c) => c.clipScale === 1))
      }),
      { numRuns: 100 }
    )
  })

  it("uses the lower middle norm as the clip bound and reports each chunk's norm and scale", () => {
    const g = (chunkId: number, x: number): PseudoGradient => ({ chunkId, tensors: [tensor("w", [2], [x, 0])] })
    const result = run([g(4, 8), g(1, 1), g(3, 4), g(2, 2)], 0)
    assert.strictEqual(result.medianNorm, 2)
    assert.deepStrictEqual(result.contributions, [
      { chunkId: 1, norm: 1, clipScale: 1 },
      { chunkId: 2, norm: 2, clipScale: 1 },
      { chunkId: 3, norm: 4, clipScale: 0.5 },
      { chunkId: 4, norm: 8, clipScale: 0.25 }
    ])
    // Clipped: 1, 2, 2, 2 → mean 1.75; with trim 0.25 one is cut from each side → mean of 2, 2.
    assert.deepStrictEqual(Array.from(result.tensors[0]!.values), [1.75, 0])
    assert.deepStrictEqual(Array.from(run([g(4, 8), g(1, 1), g(3, 4), g(2, 2)], 0.25).tensors[0]!.values), [2, 0])
    // Two gradients: the coordinate median is the mean of both, whatever the trim.
    assert.deepStrictEqual(Array.from(run([g(1, 1), g(2, -3)], 0.4).tensors[0]!.values), [0, 0])
  })
})

describe("outerStep", () => {
  it("with lr 1 and no momentum turns one miner's pseudo-gradient back into its final weights", () => {
    const input = layout.chain((shapes) =>
      fc.tuple(tensorsOf(shapes, belowHalfMax), nine(fc.double({ min: 0.5, max: 2, noNaN: true })))
    )
    fc.assert(
      fc.property(input, ([initial, factors]) => {
        // A training step keeps each weight within [w/2, 2w], where w − final is exact in float32 (Sterbenz).
        const final = withValues(initial, (w, t, i) => Math.fround(w * factors[(t * 3 + i) % 9]!))
        const gradient = withValues(initial, (w, t, i) => w - final[t]!.values[i]!)
        const delta = run([{ chunkId: 0, tensors: gradient }], 0.2).tensors
        // Equal as numbers; only a final −0 may come back as +0 (w − w is +0 in IEEE 754).
        const numbers = (tensors: Tensors) => tensors.flatMap((t) => Array.from(t.values, (v) => v + 0))
        assert.deepStrictEqual(numbers(step(initial, delta, { lr: 1 }).weights), numbers(final))
      }),
      { numRuns: 100 }
    )
  })

  it("is one float32 rounding from the final weights for any weights below half the float32 maximum", () => {
    // Below half the float32 maximum: final weights at the maximum itself round past it to ±Infinity (CI found
    // w = −5.48e37, f = −3.4028235e38), a float32 overflow rather than a rounding.
    const input = layout.chain((shapes) => fc.tuple(tensorsOf(shapes, belowHalfMax), tensorsOf(shapes, belowHalfMax)))
    fc.assert(
      fc.property(input, ([initial, final]) => {
        const gradient = withValues(initial, (w, t, i) => w - final[t]!.values[i]!)
        fc.pre(gradient.every((g) => g.values.every(Number.isFinite)))
        const weights = step(initial, gradient, { lr: 1 }).weights
        weights.forEach((tensor, t) =>
          tensor.values.forEach((v, i) => {
            const w = initial[t]!.values[i]!
            const f = final[t]!.values[i]!
            // gradient rounding ≤ 2⁻²⁴|w − f|, final rounding ≤ 2⁻²⁴|f − error|, plus subnormal spacing.
            assert.isAtMost(Math.abs(v - f), 2 ** -23 * (Math.abs(w - f) + Math.abs(f)) + 2 ** -148)
          })
        )
      }),
      { numRuns: 100 }
    )
  })

  it("matches a hand computation of Nesterov momentum over two steps", () => {
    const w0 = [tensor("w", [2], [1, -2])]
    const d1 = [tensor("w", [2], [0.5, 0.25])]
    const d2 = [tensor("w", [2], [-0.25, 1])]
    const options = { lr: 0.5, momentum: { beta: 0.5, nesterov: true } }
    const first = step(w0, d1, options)
    // m1 = 0.5·0 + d1 = [0.5, 0.25]; u1 = d1 + 0.5·m1 = [0.75, 0.375]; w1 = w0 − 0.5·u1 = [0.625, −2.1875]
    assert.deepStrictEqual(Array.from(first.momentum![0]!.values), [0.5, 0.25])
    assert.deepStrictEqual(Array.from(first.weights[0]!.values), [0.625, -2.1875])
    const second = step(first.weights, d2, { ...options, momentum: { ...options.momentum, state: first.momentum! } })
    // m2 = 0.5·m1 + d2 = [0, 1.125]; u2 = d2 + 0.5·m2 = [−0.25, 1.5625]; w2 = w1 − 0.5·u2 = [0.75, −2.96875]
    assert.deepStrictEqual(Array.from(second.momentum![0]!.values), [0, 1.125])
    assert.deepStrictEqual(Array.from(second.weights[0]!.values), [0.75, -2.96875])

    // OpenDiLoCo's lr 0.7, β 0.9 on non-dyadic values: float64 from the float32 inputs, one rounding per result.
    const f = Math.fround
    const [w, a, b] = [f(0.1), f(0.3), f(-0.2)]
    const diloco = { lr: 0.7, momentum: { beta: 0.9, nesterov: true } }
    const s1 = step([tensor("w", [1], [w])], [tensor("w", [1], [a])], diloco)
    const m1 = 0.9 * 0 + a
    const w1 = f(w - 0.7 * (a + 0.9 * m1))
    assert.strictEqual(s1.weights[0]!.values[0], w1)
    assert.strictEqual(s1.momentum![0]!.values[0], f(m1))
    const s2 = step(s1.weights, [tensor("w", [1], [b])], {
      ...diloco,
      momentum: { ...diloco.momentum, state: s1.momentum! }
    })
    const m2 = 0.9 * f(m1) + b
    assert.strictEqual(s2.weights[0]!.values[0], f(w1 - 0.7 * (b + 0.9 * m2)))
    assert.strictEqual(s2.momentum![0]!.values[0], f(m2))

    // Plain momentum: u = m'.
    const plain = step(w0, d1, { lr: 0.5, momentum: { beta: 0.5, nesterov: false, state: d2 } })
    // m' = 0.5·[−0.25, 1] + [0.5, 0.25] = [0.375, 0.75]; w' = w0 − 0.5·m' = [0.8125, −2.375]
    assert.deepStrictEqual(Array.from(plain.weights[0]!.values), [0.8125, -2.375])
  })
})

describe("validation", () => {
  const g = (chunkId: number, tensors: Tensors = [tensor("w", [2], [1, 2]), tensor("b", [1], [3])]): PseudoGradient => ({
    chunkId,
    tensors
  })

  it("rejects what cannot be aggregated, naming the chunk and the tensor", () => {
    const expectError = (error: ValidationError, ...fragments: ReadonlyArray<string>) => {
      assert.strictEqual(error._tag, "ValidationError")
      assert.isString(error.hint)
      for (const fragment of fragments) assert.include(error.message, fragment)
    }
    expectError(aggregateError([]), "no accepted gradient")
    expectError(aggregateError([g(3), g(1), g(3)]), "chunk 3", "two accepted gradients")
    expectError(aggregateError([g(1), g(2, [tensor("w", [2], [1, 2])])]), "chunk 2", "1 tensors")
    expectError(aggregateError([g(1), g(2, [tensor("v", [2], [1, 2]), tensor("b", [1], [3])])]), "chunk 2", '"v"')
    const b = tensor("b", [1], [3])
    expectError(aggregateError([g(1), g(2, [tensor("w", [1, 2], [1, 2]), b])]), "chunk 2", '"w"', "[1, 2]")
    expectError(aggregateError([g(1), g(2, [tensor("w", [2], [1, 2, 3]), b])]), "chunk 2", '"w"', "3 values")
    expectError(aggregateError([g(1), g(2, [tensor("w", [2], [1, 2]), tensor("b", [1], [NaN])])]), '"b"', "non-finite")
    expectError(aggregateError([g(1), g(2, [tensor("w", [2], [Infinity, 2]), b])]), "chunk 2", '"w"', "non-finite")
    expectError(aggregateError([g(1.5)]), "chunk id 1.5")
    for (const t of [0.5, -0.1, Number.NaN]) expectError(aggregateError([g(1)], t), "trim")

    const w = g(0).tensors
    expectError(stepError(w, [tensor("w", [2], [1, 2])], { lr: 1 }), "delta", "1 tensors")
    expectError(stepError(w, [tensor("w", [2], [1, 2]), tensor("b", [2], [3, 4])], { lr: 1 }), '"b"', "[2]")
    const shortState = [tensor("w", [2], [0, 0])]
    expectError(stepError(w, w, { lr: 1, momentum: { beta: 0.9, nesterov: true, state: shortState } }), "momentum state")
    expectError(stepError(w, w, { lr: 1, momentum: { beta: 1, nesterov: true } }), "momentum 1")
    expectError(stepError(w, w, { lr: 0 }), "learning rate")
  })
})
