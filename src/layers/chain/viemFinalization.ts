import { Effect, Option } from "effect"
import type { MiningError } from "../../domain/errors.ts"
import { RoundFinalization } from "../../domain/rounds.ts"

/** A registry view call, its result as viem decodes it. */
type Read = (functionName: string, args?: ReadonlyArray<unknown>) => Effect.Effect<any, MiningError>

/**
 * The learning-round side of the Chain port on viem (DESIGN.md "Learning rounds"): a round's finalization as the
 * registry's `getFinalization` view holds it. Recording one is the owner's (ViemRoundAuthority.ts).
 */
export const makeViemFinalization = (deps: { readonly read: Read }) => {
  const getFinalization = Effect.fn("Chain.getFinalization")(function*(roundId: bigint) {
    const [finalized, modelCid, weightsHash, acceptedCount, testAccuracyPpm, finalizedAt] = yield* deps.read(
      "getFinalization",
      [roundId]
    )
    if (!finalized) return Option.none<RoundFinalization>()
    return Option.some(
      new RoundFinalization({ roundId, modelCid, weightsHash, acceptedCount, testAccuracyPpm, finalizedAt: Number(finalizedAt) })
    )
  })

  return { getFinalization }
}
