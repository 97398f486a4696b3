import { Effect, Option } from "effect"
import type { MinerIdentity } from "../../domain/mining.ts"
import { FinalizationReceipt, type FinalizeRound, maxAccuracyPpm, RoundFinalization } from "../../domain/rounds.ts"
import { sha256Hex } from "../../layers/sha256Hex.ts"
import type { Blocks } from "./blocks.ts"
import { chainNow } from "./registry.ts"
import { revert, roundNotOpen } from "./reverts.ts"

interface FinalizationState {
  readonly finalization: RoundFinalization
  readonly block: bigint
}

/**
 * The registry's round finalizations in memory (contracts/MiningRegistry.sol is the reference): the owner's
 * `finalizeRound`, once per round, with its checks in the contract's order — RoundNotOpen (no such round),
 * RoundAlreadyFinalized, InvalidAccuracy (over 1_000_000 ppm). Each remembers its block so a rewind forgets it;
 * the registry asks `isFinalized` to refuse claims and submissions of a closed round.
 */
export const makeFinalizations = (deps: {
  readonly identity: MinerIdentity
  readonly blocks: Blocks
  /** Whether the registry knows the round (asked when finalizing, so the registry may be made after this). */
  readonly roundExists: (roundId: bigint) => boolean
}) => {
  const { blocks, identity } = deps
  const finalizations = new Map<bigint, FinalizationState>()

  const finalizeRound = Effect.fnUntraced(function*(f: FinalizeRound) {
    if (!deps.roundExists(f.roundId)) return yield* roundNotOpen(f.roundId)
    if (finalizations.has(f.roundId)) {
      return yield* revert("RoundAlreadyFinalized", [f.roundId.toString()], "a round is finalized once: read getFinalization")
    }
    if (!Number.isInteger(f.testAccuracyPpm) || f.testAccuracyPpm < 0 || f.testAccuracyPpm > maxAccuracyPpm) {
      return yield* revert("InvalidAccuracy", [String(f.testAccuracyPpm)], "testAccuracyPpm is in 0..1_000_000")
    }
    const block = blocks.mine(yield* chainNow)
    const finalization = new RoundFinalization({
      roundId: f.roundId,
      modelCid: f.modelCid,
      weightsHash: f.weightsHash.toLowerCase(),
      acceptedCount: f.acceptedCount,
      testAccuracyPpm: f.testAccuracyPpm,
      finalizedAt: blocks.timeOf(block)!
    })
    finalizations.set(f.roundId, { finalization, block })
    return new FinalizationReceipt({
      txHash: sha256Hex(
        ["finalizeRound", identity.chainId, identity.registry.toLowerCase(), f.roundId, f.modelCid,
          f.weightsHash.toLowerCase(), f.acceptedCount, f.testAccuracyPpm, block, blocks.fork()].join(":")
      ),
      blockNumber: block,
      blockHash: blocks.hashOf(block)!
    })
  })

  return {
    finalizeRound,
    isFinalized: (roundId: bigint): boolean => finalizations.has(roundId),
    getFinalization: (roundId: bigint): Option.Option<RoundFinalization> =>
      Option.map(Option.fromUndefinedOr(finalizations.get(roundId)), (s) => s.finalization),
    /** Forgets the finalizations of blocks after `target`. */
    rewindTo: (target: bigint): void => {
      for (const [roundId, s] of finalizations) if (s.block > target) finalizations.delete(roundId)
    },
    reset: (): void => finalizations.clear()
  }
}

export type Finalizations = ReturnType<typeof makeFinalizations>
