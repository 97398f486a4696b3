import { type DeterminismProfile, type EnvelopeHeader, FORMAT } from "../gradientEnvelope.ts"
import { modelHash, type RoundSpec } from "./spec.ts"

/**
 * The header of a chunk's pseudo-gradient envelope (DESIGN.md "Gradient envelope"): what every trainer — the ONNX
 * one, the test one, a verifier recomputing — writes for the same task, so only the tensors and losses can differ.
 */
export const pseudoGradientHeader = (input: {
  readonly task: { readonly roundId: bigint; readonly chunkId: number }
  readonly miner: string
  readonly spec: RoundSpec
  readonly tensors: ReadonlyArray<{ readonly name: string; readonly shape: ReadonlyArray<number> }>
  readonly lossBefore: number
  readonly lossAfter: number
  readonly profile: DeterminismProfile
}): EnvelopeHeader => ({
  format: FORMAT,
  round_id: input.task.roundId.toString(),
  chunk_id: input.task.chunkId,
  miner: input.miner,
  model_hash: modelHash(input.spec),
  encoding: "pseudo-gradient",
  tensors: input.tensors.map((t) => ({ name: t.name, dtype: "float32", shape: [...t.shape] })),
  steps: input.spec.steps,
  batch_size: input.spec.batch_size,
  lr: input.spec.lr,
  loss_before: input.lossBefore,
  loss_after: input.lossAfter,
  profile: input.profile
})
