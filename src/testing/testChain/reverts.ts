import { ChainRevertError } from "../../domain/errors.ts"

/** A revert as ViemChain decodes it: the contract's error name and its arguments as strings. */
export const revert = (errorName: string, args: ReadonlyArray<string>, hint?: string) =>
  new ChainRevertError({
    message: `MiningRegistry reverted with ${errorName}(${args.join(", ")})`,
    errorName,
    args: [...args],
    ...(hint === undefined ? {} : { hint })
  })

export const roundNotOpen = (roundId: bigint) =>
  revert(
    "RoundNotOpen",
    [roundId.toString()],
    "the test chain has no such round: seed it with TestChain.layer({ rounds }) or open it with openRound"
  )

/** RoundNotOpen for a round that exists but was finalized: closed to claims and submissions. */
export const roundFinalized = (roundId: bigint) =>
  revert("RoundNotOpen", [roundId.toString()], `round ${roundId} is finalized: it takes no more claims or submissions`)
