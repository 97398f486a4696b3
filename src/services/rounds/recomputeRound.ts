import { Effect } from "effect"
import { aggregate, outerStep, type PseudoGradient, type Tensors } from "../../domain/aggregation.ts"
import type { MiningError } from "../../domain/errors.ts"
import type { Dataset } from "../../domain/training/data.ts"
import { heldOutTestIndices } from "../../domain/training/data.ts"
import { evaluateModel, testAccuracyPpm } from "../../domain/training/evaluate.ts"
import { type ModelWeights, type ParameterValues, trainableParameters } from "../../domain/training/model.ts"
import {
  momentumEnvelope,
  roundWeightsEnvelope,
  startingMomentum,
  startingWeights
} from "../../domain/training/roundWeights.ts"
import type { RoundSpecV2 } from "../../domain/training/spec.ts"

/** Fetches content by CID, at most `maxBytes`. */
export type Fetch = (cid: string, maxBytes: number) => Effect.Effect<Uint8Array, MiningError>

/** What a round's aggregate produced: the next model, and how it scores on the held-out test split. */
export interface RoundResult {
  readonly roundId: bigint
  /** The chunks aggregated, ascending. */
  readonly accepted: ReadonlyArray<number>
  readonly weights: ModelWeights
  /** The "weights" envelope of `weights`: its CID is the next round's model. */
  readonly weightsEnvelope: Uint8Array
  /** The momentum state after the step (the parent's when no step was taken), as a "momentum" envelope; none without momentum. */
  readonly momentumEnvelope: Uint8Array | undefined
  readonly medianNorm: number
  readonly trimmedPerSide: number
  readonly test: { readonly count: number; readonly correct: number; readonly accuracy: number; readonly loss: number }
  readonly testAccuracyPpm: number
}

const trainableTensors = (spec: RoundSpecV2, weights: ModelWeights): Tensors =>
  trainableParameters(spec.model).map((p) => ({ name: p.name, shape: p.shape, values: weights.get(p.name) as Float32Array }))

/**
 * A learning round's aggregate, bit for bit as anyone recomputes it (DESIGN.md "Learning rounds"): the round's
 * starting weights (regenerated, or fetched and sha256-checked from its parent), the accepted pseudo-gradients
 * aggregated (clip to the median norm, trimmed mean), the outer step with the spec's momentum (state from the parent),
 * the frozen parameters carried over, then evaluated on the held-out test split. No accepted gradient ⇒ no step.
 */
export const recomputeRound = Effect.fn("recomputeRound")(function*(input: {
  readonly roundId: bigint
  readonly spec: RoundSpecV2
  readonly gradients: ReadonlyArray<PseudoGradient>
  readonly fetch: Fetch
  readonly dataset: Dataset
}): Effect.fn.Return<RoundResult, MiningError> {
  const { dataset, fetch, gradients, roundId, spec } = input
  const settings = spec.aggregation
  const start = yield* startingWeights(spec, fetch)
  const momentumState = settings.momentum > 0 ? yield* startingMomentum(spec, fetch) : undefined

  let weights: ModelWeights = start
  let momentum: Tensors | undefined = momentumState
  let medianNorm = 0
  let trimmedPerSide = 0
  if (gradients.length > 0) {
    const combined = yield* aggregate(gradients, { trim: settings.trim })
    const stepped = yield* outerStep(trainableTensors(spec, start), combined.tensors, {
      lr: settings.outer_lr,
      ...(settings.momentum > 0
        ? { momentum: { beta: settings.momentum, nesterov: settings.nesterov, ...(momentumState ? { state: momentumState } : {}) } }
        : {})
    })
    const next = new Map<string, ParameterValues>(start)
    for (const t of stepped.weights) next.set(t.name, t.values)
    weights = next
    momentum = stepped.momentum
    medianNorm = combined.medianNorm
    trimmedPerSide = combined.trimmedPerSide
  }
  const test = evaluateModel(spec.model, weights, dataset, heldOutTestIndices())
  return {
    roundId,
    accepted: gradients.map((g) => g.chunkId).sort((a, b) => a - b),
    weights,
    weightsEnvelope: yield* roundWeightsEnvelope(spec, roundId, weights),
    momentumEnvelope: momentum === undefined ? undefined : yield* momentumEnvelope(spec, roundId, momentum),
    medianNorm,
    trimmedPerSide,
    test,
    testAccuracyPpm: testAccuracyPpm(test)
  }
})
