import { Effect } from "effect"
import type { ValidationError } from "../errors.ts"
import { float32Like, invalid, tensorMismatch, type Tensors } from "./tensors.ts"

/**
 * Robust aggregation of a round's accepted pseudo-gradients (DESIGN.md "Learning rounds"): each clipped to the median
 * L2 norm, then a coordinate-wise trimmed mean. Deterministic to the byte, so anyone recomputes the same weights:
 * - inputs are put in ascending chunk order first, so the order they arrive in never matters;
 * - norms are float64 sums of squares in (tensor, index) order; clipped values are float64;
 * - each coordinate's values are sorted and summed in float64 in sorted order, so even the chunk ids do not matter;
 * - each result is rounded once to float32.
 *
 * Median norm: the LOWER middle of the sorted norms (index ⌊(n − 1)/2⌋). It is always one of the submitted norms, and
 * at least ⌈n/2⌉ gradients have a norm ≤ it, so a minority of huge gradients can never raise the clip bound above the
 * largest honest norm (the mean of the two middles would let one adversary among two set it to half its own norm).
 *
 * Coordinate-wise: k = ⌊trim · n⌋ values are dropped from each side. As trim < 0.5, k ≤ ⌊(n − 1)/2⌋ (the cap only
 * guards against trim · n rounding up), so at least one value (n odd) or two (n even) remain, and at that deepest
 * trim the mean of what remains IS the median: the middle value, or the mean of the two middles — for n ≤ 2 the plain
 * mean. One formula, "the mean of the middle n − 2k sorted values", covers the trimmed mean and the median.
 */

/** A round's accepted pseudo-gradient (initial − final weights) as float32 tensors. */
export interface PseudoGradient {
  readonly chunkId: number
  readonly tensors: Tensors
}

export interface AggregateOptions {
  /** The fraction cut from EACH side per coordinate, 0 ≤ trim < 0.5. */
  readonly trim: number
}

/** What one gradient weighed in the aggregate, for the round's report. */
export interface Contribution {
  readonly chunkId: number
  /** Its global L2 norm over all tensors (float64). */
  readonly norm: number
  /** min(1, median norm / norm): the factor it was scaled by (1 for a zero gradient). */
  readonly clipScale: number
}

export interface Aggregate {
  /** The aggregated pseudo-gradient, float32, in the gradients' tensor order. */
  readonly tensors: Tensors
  /** One per gradient, in ascending chunk order. */
  readonly contributions: ReadonlyArray<Contribution>
  /** The clip bound: the lower middle of the sorted norms. */
  readonly medianNorm: number
  /** The k values dropped from each side of every coordinate (after the median cap). */
  readonly trimmedPerSide: number
}

/** The global L2 norm of a tensor list, summed in float64 in (tensor, index) order. */
export const globalNorm = (tensors: Tensors): number => {
  let sumOfSquares = 0
  for (const tensor of tensors) {
    for (const v of tensor.values) sumOfSquares += v * v
  }
  return Math.sqrt(sumOfSquares)
}

/** The lower middle of the values (see the module comment for why not the mean of the two middles). */
export const lowerMedian = (values: ReadonlyArray<number>): number => {
  const sorted = Float64Array.from(values).sort()
  return sorted[Math.floor((sorted.length - 1) / 2)]!
}

/** The factor that brings a gradient of `norm` down to at most `bound`; a zero gradient stays as it is. */
export const clipScale = (norm: number, bound: number): number => (norm === 0 ? 1 : Math.min(1, bound / norm))

/** The k dropped from each side of n values: ⌊trim · n⌋, capped so the median remains (see the module comment). */
export const trimPerSide = (n: number, trim: number): number => Math.min(Math.floor(trim * n), Math.floor((n - 1) / 2))

/**
 * The mean of sorted[k .. n − k − 1], summed in float64 in sorted order. It starts from the first kept value rather
 * than from 0 so that a coordinate of −0s stays −0 (identical gradients aggregate to themselves, to the byte).
 */
export const middleMean = (sorted: Float64Array, k: number): number => {
  const end = sorted.length - k
  let sum = sorted[k]!
  for (let i = k + 1; i < end; i++) sum += sorted[i]!
  return sum / (end - k)
}

const byChunk = (gradients: ReadonlyArray<PseudoGradient>): ReadonlyArray<PseudoGradient> =>
  [...gradients].sort((a, b) => a.chunkId - b.chunkId)

/** The first reason the options or the gradients (in chunk order) cannot be aggregated. */
const aggregationProblem = (
  gradients: ReadonlyArray<PseudoGradient>,
  options: AggregateOptions
): ValidationError | undefined => {
  if (!(options.trim >= 0 && options.trim < 0.5)) {
    return invalid(`trim ${options.trim} is outside [0, 0.5)`, "trim is the fraction cut from EACH side, e.g. 0.1", "trim")
  }
  const first = gradients[0]
  if (first === undefined) {
    return invalid("no accepted gradient", "a round with no accepted chunk has nothing to aggregate; keep its weights")
  }
  for (let i = 0; i < gradients.length; i++) {
    const { chunkId, tensors } = gradients[i]!
    if (!Number.isSafeInteger(chunkId) || chunkId < 0) {
      return invalid(`chunk id ${chunkId} is not a non-negative integer`, "chunk ids come from the round spec", "chunkId")
    }
    if (i > 0 && gradients[i - 1]!.chunkId === chunkId) {
      return invalid(
        `chunk ${chunkId} has two accepted gradients`,
        "a chunk has one accepted gradient per round; pass only the one its verdict accepted",
        "chunkId"
      )
    }
    const problem = tensorMismatch(`chunk ${chunkId}`, tensors, first.tensors, `chunk ${first.chunkId}`)
    if (problem) return problem
  }
  return undefined
}

/** The coordinate-wise trimmed mean of the gradients, each scaled by its factor; float32 result. */
const trimmedMeanOfScaled = (
  gradients: ReadonlyArray<PseudoGradient>,
  scales: ReadonlyArray<number>,
  k: number
): Tensors => {
  const column = new Float64Array(gradients.length)
  const coordinate = (t: number, i: number): number => {
    for (let g = 0; g < gradients.length; g++) column[g] = gradients[g]!.tensors[t]!.values[i]! * scales[g]!
    // A typed array sorts numerically (−0 before +0), with no NaN possible after validation.
    return middleMean(column.sort(), k)
  }
  return float32Like(gradients[0]!.tensors, coordinate)
}

/**
 * Aggregates a round's accepted pseudo-gradients: clip each to the median norm, then the coordinate-wise trimmed
 * mean. Fails with a ValidationError on no gradient, a duplicate chunk id, mismatched tensors or non-finite values.
 */
export const aggregate = (
  gradients: ReadonlyArray<PseudoGradient>,
  options: AggregateOptions
): Effect.Effect<Aggregate, ValidationError> => {
  const ordered = byChunk(gradients)
  const problem = aggregationProblem(ordered, options)
  if (problem) return Effect.fail(problem)
  const norms = ordered.map((g) => globalNorm(g.tensors))
  const medianNorm = lowerMedian(norms)
  const scales = norms.map((norm) => clipScale(norm, medianNorm))
  const trimmedPerSide = trimPerSide(ordered.length, options.trim)
  return Effect.succeed({
    tensors: trimmedMeanOfScaled(ordered, scales, trimmedPerSide),
    contributions: ordered.map((g, i) => ({ chunkId: g.chunkId, norm: norms[i]!, clipScale: scales[i]! })),
    medianNorm,
    trimmedPerSide
  })
}
