import type { SignedTransaction, Submission, SubmissionReceipt } from "../../domain/mining.ts"
import type { VerdictRecord } from "../../domain/verification.ts"
import type { FaultPlan } from "../Faults.ts"

export type ChainMethod =
  | "identity"
  | "fingerprint"
  | "rounds"
  | "getRound"
  | "claimChunk"
  | "ownClaims"
  | "submitGradient"
  | "transactionStatus"
  | "rebroadcast"
  | "completeChunk"
  | "getSubmission"
  | "ownSubmissions"
  | "submissionsBetween"
  | "recordVerdict"
  | "getVerdict"
  | "isVerifier"
  | "getFinalization"
  | "head"
  | "blockHash"
  | "now"

/** A submission the test chain accepted, with the receipt of the transaction that put it there. */
export interface RecordedSubmission {
  readonly roundId: bigint
  readonly chunkId: number
  readonly cid: string
  readonly gradientHash: string
  readonly powNonce: bigint
  readonly receipt: SubmissionReceipt
}

/** A submission transaction the test chain signed, and what became of it. */
export interface SignedSubmission {
  readonly signed: SignedTransaction
  readonly submission: Submission
  /** Mined: its receipt (`success` false when it reverted). Absent while pending or dropped. */
  readonly mined?: { readonly success: boolean; readonly receipt: SubmissionReceipt } | undefined
}

/** A verdict transaction the test chain signed, and what became of it. */
export interface SignedVerdict {
  readonly signed: SignedTransaction
  readonly record: VerdictRecord
  /** Mined: its receipt (`success` false when it reverted). Absent while pending or dropped. */
  readonly mined?: { readonly success: boolean; readonly receipt: SubmissionReceipt } | undefined
}

/** A chunk marked complete by `completeChunk` (once per chunk: completing is idempotent). */
export interface CompletedChunk {
  readonly roundId: bigint
  readonly chunkId: number
}

/** A round as the owner opens it (`openRound`'s arguments). */
export interface TestRound {
  readonly roundId: bigint
  /** Default: `rawCidV0` of the text "r3mes test model" (the TestTaskSource's default model). */
  readonly modelCid?: string
  /** Canonical JSON. Default "{}". */
  readonly spec?: string
  readonly chunkCount: number
  /** 1..64, as the contract accepts. */
  readonly difficulty: number
  /** Unix seconds. */
  readonly deadline: number
}

export interface TestChainOptions {
  readonly faults?: FaultPlan<ChainMethod>
  /** Overrides parts of the default identity (anvil's chain id, first deployment address, second account). */
  readonly identity?: Partial<{ readonly chainId: number; readonly registry: string; readonly miner: string }>
  /**
   * Rounds open when the layer is built, in opening order. Default: `[defaultTestRound]`. Unlike `openRound`, a
   * seeded deadline may already be past (a round opened earlier that has since expired); an invalid round (duplicate
   * id, difficulty outside 1..64, no chunks) is a defect of the test and fails the layer.
   */
  readonly rounds?: ReadonlyArray<TestRound>
  /** How long a claim holds a chunk, in seconds (the contract's `leaseDuration`). Default 600. */
  readonly leaseSeconds?: number
  /**
   * Whether `submitGradient` requires the chunk to be claimed by the miner, as the contract does. Default false:
   * harnesses that drive the MiningCoordinator directly hand it tasks they made up (TestTaskSource, literal Tasks)
   * and never call `claimChunk`. Even then a chunk that *was* claimed has its lease checked (LeaseExpired), and the
   * round must exist, be before its deadline and have the chunk. Set true with a real TaskSource on top of this
   * chain (ChainTaskSource) to get the contract's ChunkNotClaimed.
   */
  readonly requireClaim?: boolean
  /**
   * Whether `submitGradient` verifies the proof of work against the round's difficulty (InsufficientWork), with the
   * domain's pow functions. Default false: TestPowSolver answers nonces that are not valid proofs.
   */
  readonly checkPow?: boolean
  /**
   * Whether the account may record verdicts from genesis (as if the owner had called `setVerifier` for it), and
   * again after `reset`. Default false: `recordVerdict` reverts NotVerifier until `setVerifier` allows it.
   */
  readonly verifier?: boolean
}

/** Anvil's defaults: chain 31337, the first contract deployed by account 0, account 1 as the miner. */
export const defaultTestIdentity = {
  chainId: 31337,
  registry: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
  miner: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
} as const

/** 2100-01-01: no test ever reaches it. */
const farFuture = 4_102_444_800

/** The round a TestChain opens when `rounds` is not given. */
export const defaultTestRound: TestRound = { roundId: 1n, chunkCount: 1000, difficulty: 16, deadline: farFuture }

export const defaultLeaseSeconds = 600
