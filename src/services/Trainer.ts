import { Context, type Effect } from "effect"
import type { MiningError } from "../domain/errors.ts"
import type { DeterminismProfile } from "../domain/gradientEnvelope.ts"
import type { Task, TrainingResult } from "../domain/mining.ts"

/**
 * Port: runs the deterministic local training step for a claimed chunk and returns the encoded gradient envelope
 * (its header names the miner, so the same chunk trained by two miners gives two different envelopes).
 */
/**
 * The parts of a determinism profile a trainer can choose per task: a verifier recomputes a submission with the
 * submitter's thread count and graph optimisation level, so that on the same runtime, provider and CPU class the
 * result is bit-identical (thread counts change the summation order: measured up to 1.4e-2 relative L2 apart), and
 * on the submitter's execution provider when this machine has it (CPU and WebGPU round apart, and move ReLU ties the
 * same way: measured up to 1.4e-2).
 */
export type TrainingSettings = Pick<DeterminismProfile, "threads" | "graph_optimization"> & {
  readonly ep?: DeterminismProfile["ep"] | undefined
}

export class Trainer extends Context.Service<Trainer, {
  /**
   * `reproduce`: train as a trainer with these settings would. A trainer that cannot (a setting it does not know, a
   * thread count past this machine's cores) uses its own; the envelope's profile says which were used.
   */
  readonly train: (task: Task, miner: string, reproduce?: TrainingSettings) => Effect.Effect<TrainingResult, MiningError>
  /**
   * The determinism profile every envelope of this trainer carries (DESIGN.md "Verification"): a verifier with the
   * same profile must recompute the same bytes, one with another profile compares within a tolerance.
   */
  readonly profile: Effect.Effect<DeterminismProfile>
}>()("r3mes/services/Trainer") {}
