import { Context, type Effect } from "effect"
import type { MiningError } from "../domain/errors.ts"
import type { Dataset } from "../domain/training/data.ts"

/**
 * Port: the bundled dataset rounds train on (DESIGN.md "Training"), read and fingerprint-checked by the adapter. The
 * round coordinator evaluates each round's model on its held-out test split.
 */
export class TrainingData extends Context.Service<TrainingData, {
  readonly dataset: Effect.Effect<Dataset, MiningError>
}>()("r3mes/services/TrainingData") {}
