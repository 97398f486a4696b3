import { Context, type Effect, type Option } from "effect"
import type { MiningError } from "../domain/errors.ts"
import type {
  ChunkClaim,
  MinerIdentity,
  OnChainSubmission,
  RoundInfo,
  SignedTransaction,
  Submission,
  SubmissionReceipt
} from "../domain/mining.ts"

/** Port: the MiningRegistry contract (DESIGN.md "Contract MiningRegistry"), from the miner's account. */
export class Chain extends Context.Service<Chain, {
  /** Chain id, registry address and miner address: the fixed part of the idempotency key and PoW challenge. */
  readonly identity: Effect.Effect<MinerIdentity, MiningError>
  /** Every round the registry knows, oldest first. */
  readonly rounds: Effect.Effect<ReadonlyArray<RoundInfo>, MiningError>
  readonly getRound: (roundId: bigint) => Effect.Effect<Option.Option<RoundInfo>, MiningError>
  /** Claims a free chunk of the round; the chunk id comes from the ChunkClaimed event. */
  readonly claimChunk: (roundId: bigint) => Effect.Effect<ChunkClaim, MiningError>
  /**
   * Submits CID + gradient hash + PoW nonce and waits for the receipt. AlreadySubmitted for our own chunk with the
   * same gradient hash is success (`alreadySubmitted: true`); any other revert is a ChainRevertError.
   */
  readonly submitGradient: (
    submission: Submission,
    /**
     * Runs after the transaction is signed and before it is broadcast (under the account's nonce lock): the place
     * to journal the intent. If it fails, nothing is sent and the nonce is not consumed.
     */
    beforeBroadcast?: (signed: SignedTransaction) => Effect.Effect<void, MiningError>
  ) => Effect.Effect<SubmissionReceipt, MiningError>
  /**
   * Finishes a submission signed before a crash: the receipt of its hash if mined, else the same raw bytes
   * re-sent. Our own submission of the same chunk and gradient found on chain is success.
   */
  readonly resumeSubmission: (
    submission: Submission,
    signed: SignedTransaction
  ) => Effect.Effect<SubmissionReceipt, MiningError>
  /** Marks our submitted chunk complete; true once it is (idempotent). */
  readonly completeChunk: (roundId: bigint, chunkId: number) => Effect.Effect<boolean, MiningError>
  readonly getSubmission: (
    roundId: bigint,
    chunkId: number
  ) => Effect.Effect<Option.Option<OnChainSubmission>, MiningError>
  /** The latest block's timestamp (Unix seconds): leases and deadlines are judged by chain time. */
  readonly now: Effect.Effect<number, MiningError>
}>()("r3mes/services/Chain") {}
