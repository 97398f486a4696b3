import { Effect } from "effect"
import type { ValidationError } from "../errors.ts"
import { float32Like, invalid, tensorMismatch, type Tensors } from "./tensors.ts"

/**
 * The outer step of a learning round (DiLoCo): the aggregated pseudo-gradient `delta` applied to the round's weights,
 * optionally through momentum (PyTorch's SGD convention, as DiLoCo and OpenDiLoCo use it):
 *   m' = β·m + delta;   u = delta + β·m' (Nesterov)  or  u = m' (plain);   w' = w − lr·u   (u = delta without momentum)
 * Each coordinate is computed in float64 from the float32 inputs and each result (w', m') rounded once to float32; u
 * uses the unrounded m', so w' is one rounding away from the exact value. With lr 1 and no momentum on a single
 * miner's gradient (w − final), w' is that miner's final weights exactly whenever w − final is exact in float32
 * (Sterbenz: final within [w/2, 2w], which small training steps always are).
 */

export interface MomentumOptions {
  readonly beta: number
  readonly nesterov: boolean
  /** The previous round's momentum; absent on the first round (zeros). */
  readonly state?: Tensors
}

export interface OuterStepOptions {
  readonly lr: number
  readonly momentum?: MomentumOptions
}

export interface OuterStepResult {
  readonly weights: Tensors
  /** The new momentum state, when momentum is used (publish it for the next round). */
  readonly momentum?: Tensors
}

const outerStepProblem = (weights: Tensors, delta: Tensors, options: OuterStepOptions): ValidationError | undefined => {
  if (!(Number.isFinite(options.lr) && options.lr > 0)) {
    return invalid(`outer learning rate ${options.lr} is not a positive number`, "set the spec's outer lr, e.g. 0.7", "lr")
  }
  const momentum = options.momentum
  if (momentum && !(momentum.beta >= 0 && momentum.beta < 1)) {
    return invalid(`momentum ${momentum.beta} is outside [0, 1)`, "set the spec's outer momentum, e.g. 0.9", "beta")
  }
  return (
    tensorMismatch("weights", weights, weights, "weights") ??
    tensorMismatch("the aggregated delta", delta, weights, "the weights") ??
    (momentum?.state ? tensorMismatch("the momentum state", momentum.state, weights, "the weights") : undefined)
  )
}

/** Applies the aggregated pseudo-gradient to the weights; fails when the tensors do not match the weights'. */
export const outerStep = (
  weights: Tensors,
  delta: Tensors,
  options: OuterStepOptions
): Effect.Effect<OuterStepResult, ValidationError> => {
  const problem = outerStepProblem(weights, delta, options)
  if (problem) return Effect.fail(problem)
  const { lr, momentum } = options
  if (momentum === undefined) {
    return Effect.succeed({ weights: float32Like(weights, (t, i) => weights[t]!.values[i]! - lr * delta[t]!.values[i]!) })
  }
  const { beta, nesterov, state } = momentum
  const newMomentum = (t: number, i: number): number => beta * (state?.[t]!.values[i] ?? 0) + delta[t]!.values[i]!
  const update = (t: number, i: number): number => {
    const m = newMomentum(t, i)
    return nesterov ? delta[t]!.values[i]! + beta * m : m
  }
  return Effect.succeed({
    weights: float32Like(weights, (t, i) => weights[t]!.values[i]! - lr * update(t, i)),
    momentum: float32Like(weights, newMomentum)
  })
}
