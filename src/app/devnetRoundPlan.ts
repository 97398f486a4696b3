import { Effect } from "effect"
import { initialWeightsEnvelope } from "../domain/training/model.ts"
import { canonicalRoundSpec, defaultRoundSpec, type RoundSpecV1 } from "../domain/training/spec.ts"
import type { RoundPlan } from "../layers/chain/devnet/Devnet.ts"
import { computeCid } from "../layers/ipfs/importOptions.ts"

/**
 * The embedded devnet's round coordinator policy (DESIGN.md "CLI"): each round's spec is the default training spec
 * seeded by the round id, and its modelCid is the CID of the initial weights generated from that spec, computed
 * with the same import options as every store, so any miner can regenerate and check them. `specOf` replaces the
 * default spec (benchmarks: a training-dominated model).
 */
export const devnetRoundPlan = (
  difficulty: number,
  specOf: (seed: number) => RoundSpecV1 = defaultRoundSpec
): RoundPlan =>
(roundId) =>
  Effect.gen(function*() {
    const spec = specOf(Number(BigInt.asUintN(32, roundId)))
    const weights = yield* initialWeightsEnvelope(spec)
    return {
      modelCid: yield* computeCid(weights),
      spec: canonicalRoundSpec(spec),
      chunkCount: 256,
      difficulty,
      durationSeconds: 3600
    }
  })

