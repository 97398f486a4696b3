import { Context, type Effect } from "effect"
import type { MiningError } from "../domain/errors.ts"
import type { FinalizationReceipt, FinalizeRound } from "../domain/rounds.ts"

/**
 * Port: the MiningRegistry's owner side that the round coordinator needs (DESIGN.md "Learning rounds"), from the
 * owner's account. Reading a finalization is everyone's (`Chain.getFinalization`); recording one is the owner's.
 *
 * An adapter only translates: every revert is a ChainRevertError with the contract's error name and arguments —
 * NotOwner, RoundNotOpen (no such round), RoundAlreadyFinalized (whether that is a success, e.g. our own answer lost
 * before, is the caller's call: compare `Chain.getFinalization`), InvalidAccuracy (over 1_000_000 ppm).
 */
export class RoundAuthority extends Context.Service<RoundAuthority, {
  /** Records the round's finalization (once per round) and waits for its receipt. */
  readonly finalizeRound: (finalization: FinalizeRound) => Effect.Effect<FinalizationReceipt, MiningError>
}>()("r3mes/services/RoundAuthority") {}
