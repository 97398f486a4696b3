import { Schema } from "effect"
import { Hex32, RoundId } from "./mining.ts"

/**
 * Learning rounds (DESIGN.md "Learning rounds"): what the round coordinator records on chain once it aggregated a
 * round's accepted gradients — the new weights (by CID and sha256), how many gradients went into them, and their
 * accuracy on the held-out test split. A finalized round takes no more claims or submissions.
 */

/** The most `testAccuracyPpm` can be: 100 % in parts per million (the contract refuses more: InvalidAccuracy). */
export const maxAccuracyPpm = 1_000_000

/** A round's finalization as the chain holds it. */
export class RoundFinalization extends Schema.Class<RoundFinalization>("r3mes/RoundFinalization")({
  roundId: RoundId,
  /** The aggregated weights' CID: the next round's starting point. */
  modelCid: Schema.String,
  /** sha256 of the aggregated weights' bytes. */
  weightsHash: Hex32,
  /** The accepted gradients aggregated into the weights. */
  acceptedCount: Schema.Int,
  /** Accuracy on the held-out test split, in parts per million (0..1_000_000). */
  testAccuracyPpm: Schema.Int,
  /** The block timestamp of the finalization, Unix seconds. */
  finalizedAt: Schema.Number
}) {}

/** What the round coordinator asks the chain to record (`RoundAuthority.finalizeRound`): a finalization but its time. */
export interface FinalizeRound {
  readonly roundId: bigint
  readonly modelCid: string
  /** 0x-prefixed 32-byte hex. */
  readonly weightsHash: string
  /** uint32. */
  readonly acceptedCount: number
  /** 0..1_000_000. */
  readonly testAccuracyPpm: number
}

/** The mined transaction that recorded a finalization. */
export class FinalizationReceipt extends Schema.Class<FinalizationReceipt>("r3mes/FinalizationReceipt")({
  txHash: Hex32,
  blockNumber: Schema.BigInt,
  /** The hash of the block that holds it: a chain that lost this block (reset, reorg) no longer holds the finalization. */
  blockHash: Hex32
}) {}
