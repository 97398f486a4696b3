import { Context, type Effect } from "effect"
import type { MiningError } from "../domain/errors.ts"
import type { DeterminismProfile } from "../domain/gradientEnvelope.ts"
import type { Task, TrainingResult } from "../domain/mining.ts"

/**
 * Port: runs the deterministic local training step for a claimed chunk and returns the encoded gradient envelope
 * (its header names the miner, so the same chunk trained by two miners gives two different envelopes).
 */
export class Trainer extends Context.Service<Trainer, {
  readonly train: (task: Task, miner: string) => Effect.Effect<TrainingResult, MiningError>
  /**
   * The determinism profile every envelope of this trainer carries (DESIGN.md "Verification"): a verifier with the
   * same profile must recompute the same bytes, one with another profile compares within a tolerance.
   */
  readonly profile: Effect.Effect<DeterminismProfile>
}>()("r3mes/services/Trainer") {}
