import { Context, type Effect, type Option } from "effect"
import type { MiningError } from "../domain/errors.ts"
import type {
  ChainFingerprint,
  ChunkClaim,
  MinerIdentity,
  OnChainSubmission,
  RoundInfo,
  SignedTransaction,
  Submission,
  SubmissionReceipt,
  TransactionStatus
} from "../domain/mining.ts"
import type { RoundFinalization } from "../domain/rounds.ts"
import type { OnChainVerdict, VerdictRecord } from "../domain/verification.ts"

/**
 * Port: the MiningRegistry contract (DESIGN.md "Contract MiningRegistry"), from the miner's account. An adapter only
 * translates: what a revert, a receipt or a nonce means for a mining transaction is decided by the core
 * (services/mining/SubmissionJudge.ts).
 */
export class Chain extends Context.Service<Chain, {
  /** Chain id, registry address and miner address: the fixed part of the idempotency key and PoW challenge. */
  readonly identity: Effect.Effect<MinerIdentity, MiningError>
  /** Genesis block hash and the registry's code hash, read now: a reset chain answers differently. */
  readonly fingerprint: Effect.Effect<ChainFingerprint, MiningError>
  /** Every round the registry knows, oldest first. */
  readonly rounds: Effect.Effect<ReadonlyArray<RoundInfo>, MiningError>
  readonly getRound: (roundId: bigint) => Effect.Effect<Option.Option<RoundInfo>, MiningError>
  /** Claims a free chunk of the round; the chunk id comes from the ChunkClaimed event. */
  readonly claimChunk: (roundId: bigint) => Effect.Effect<ChunkClaim, MiningError>
  /**
   * The chunks of rounds still open that are leased to this miner (lease not expired) and have no submission: claims
   * whose answer was lost, or that a crashed run never worked on.
   */
  readonly ownClaims: Effect.Effect<ReadonlyArray<ChunkClaim>, MiningError>
  /**
   * Simulates, signs with the account's next nonce, runs `beforeBroadcast`, broadcasts and waits for the receipt.
   * Any revert — AlreadySubmitted included — is a ChainRevertError with the contract's error name and arguments.
   */
  readonly submitGradient: (
    submission: Submission,
    /**
     * Runs after the transaction is signed and before it is broadcast (under the account's nonce lock): the place
     * to journal the intent. If it fails, nothing is sent and the nonce is not consumed; once it succeeded, the
     * nonce belongs to this transaction.
     */
    beforeBroadcast?: (signed: SignedTransaction) => Effect.Effect<void, MiningError>
  ) => Effect.Effect<SubmissionReceipt, MiningError>
  /** Where a transaction this account signed (a submission, a verdict, a claim) stands: mined (with its receipt), pending, or dropped for good. */
  readonly transactionStatus: (signed: SignedTransaction) => Effect.Effect<TransactionStatus, MiningError>
  /**
   * Sends the same signed bytes again. A node that already has them, or has mined something at their nonce,
   * answers success: `transactionStatus` tells which.
   */
  readonly rebroadcast: (signed: SignedTransaction) => Effect.Effect<void, MiningError>
  /** Marks our submitted chunk complete; true once it is (idempotent). */
  readonly completeChunk: (roundId: bigint, chunkId: number) => Effect.Effect<boolean, MiningError>
  readonly getSubmission: (
    roundId: bigint,
    chunkId: number
  ) => Effect.Effect<Option.Option<OnChainSubmission>, MiningError>
  /** Every submission of this miner's address on chain, oldest first. */
  readonly ownSubmissions: Effect.Effect<ReadonlyArray<OnChainSubmission>, MiningError>
  /**
   * Every miner's submissions (GradientSubmitted events) in blocks `fromBlock`..`toBlock` inclusive, in chain order
   * (block, then position in the block); `completed` as the chain holds it now. What a verifier follows from its cursor.
   */
  readonly submissionsBetween: (
    fromBlock: bigint,
    toBlock: bigint
  ) => Effect.Effect<ReadonlyArray<OnChainSubmission>, MiningError>
  /**
   * Records this account's verdict on a submitted chunk, with the rules of `submitGradient` (simulated, signed with
   * the account's next nonce, `beforeBroadcast` before the broadcast, `transactionStatus`/`rebroadcast` after a
   * crash). Reverts are ChainRevertErrors: NotVerifier, NoSubmission, AlreadyVerified (with the verdict recorded
   * before), InvalidVerdict.
   */
  readonly recordVerdict: (
    record: VerdictRecord,
    beforeBroadcast?: (signed: SignedTransaction) => Effect.Effect<void, MiningError>
  ) => Effect.Effect<SubmissionReceipt, MiningError>
  /** The verdict `verifier` recorded on the chunk; none when it recorded none. */
  readonly getVerdict: (
    roundId: bigint,
    chunkId: number,
    verifier: string
  ) => Effect.Effect<Option.Option<OnChainVerdict>, MiningError>
  /** Whether this account may record verdicts (the registry owner's `setVerifier`). */
  readonly isVerifier: Effect.Effect<boolean, MiningError>
  /**
   * The round's finalization (DESIGN.md "Learning rounds": the owner's `finalizeRound`); none while it has none,
   * and for a round the registry does not know. A finalized round refuses claims and submissions (RoundNotOpen).
   */
  readonly getFinalization: (roundId: bigint) => Effect.Effect<Option.Option<RoundFinalization>, MiningError>
  /** The newest block: its number and hash. */
  readonly head: Effect.Effect<{ readonly number: bigint; readonly hash: string }, MiningError>
  /** The hash of block `blockNumber`, none past the chain's head. */
  readonly blockHash: (blockNumber: bigint) => Effect.Effect<Option.Option<string>, MiningError>
  /** The latest block's timestamp (Unix seconds): leases and deadlines are judged by chain time. */
  readonly now: Effect.Effect<number, MiningError>
}>()("r3mes/services/Chain") {}
