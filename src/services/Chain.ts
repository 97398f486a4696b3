import { Context, type Effect } from "effect"
import type { MiningError } from "../domain/errors.ts"
import type { MinerIdentity, Submission, SubmissionReceipt } from "../domain/mining.ts"

/** Port: the MiningRegistry contract as the coordinator needs it at its commit point. */
export class Chain extends Context.Service<Chain, {
  /** Chain id, registry address and miner address: the fixed part of the idempotency key and PoW challenge. */
  readonly identity: Effect.Effect<MinerIdentity, MiningError>
  /**
   * Submits CID + gradient hash + PoW nonce and waits for the receipt. AlreadySubmitted for our own chunk with the
   * same gradient hash is success (`alreadySubmitted: true`); any other revert is a ChainRevertError.
   */
  readonly submitGradient: (submission: Submission) => Effect.Effect<SubmissionReceipt, MiningError>
}>()("r3mes/services/Chain") {}
