import { Schema } from "effect"

/** 0x-prefixed 32-byte hex (hashes). */
export const Hex32 = Schema.String.check(Schema.isPattern(/^0x[0-9a-fA-F]{64}$/, { expected: "a 0x-prefixed 32-byte hex string" }))
/** 0x-prefixed 20-byte hex (account and contract addresses). */
export const Address = Schema.String.check(Schema.isPattern(/^0x[0-9a-fA-F]{40}$/, { expected: "a 0x-prefixed 20-byte address" }))
/** An IPFS content identifier (CIDv0 `Qm…` or CIDv1 base32 `b…`). */
export const Cid = Schema.String.check(Schema.isPattern(/^(Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{20,})$/, { expected: "an IPFS CID" }))

export const RoundId = Schema.BigInt.check(Schema.isGreaterThanOrEqualToBigInt(0n))
export const ChunkId = Schema.Int.check(Schema.isUint32())

/** Who is mining where: the parts of the idempotency key and the PoW challenge that do not change per chunk. */
export class MinerIdentity extends Schema.Class<MinerIdentity>("r3mes/MinerIdentity")({
  chainId: Schema.Int,
  registry: Address,
  miner: Address
}) {}

/**
 * A claimed chunk of an open round: everything needed to train on it and submit the result.
 * `difficulty` is the round's on-chain floor; the miner works at max(round, configured).
 */
export class Task extends Schema.Class<Task>("r3mes/Task")({
  roundId: RoundId,
  chunkId: ChunkId,
  modelCid: Schema.String,
  /** The round's task spec, canonical JSON, as emitted by RoundOpened. */
  spec: Schema.String,
  difficulty: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 255 })),
  /** Unix seconds. */
  leaseExpiry: Schema.Number,
  /** Unix seconds. */
  deadline: Schema.Number
}) {}

/** What a training step produces: the encoded gradient envelope and what its header says about the run. */
export class TrainingResult extends Schema.Class<TrainingResult>("r3mes/TrainingResult")({
  envelope: Schema.Uint8Array,
  gradientHash: Hex32,
  lossBefore: Schema.Number,
  lossAfter: Schema.Number,
  steps: Schema.Int
}) {}

/** The inputs the proof of work binds together (DESIGN.md "Proof of work"). */
export class PowInput extends Schema.Class<PowInput>("r3mes/PowInput")({
  chainId: Schema.Int,
  registry: Address,
  miner: Address,
  roundId: RoundId,
  chunkId: ChunkId,
  gradientHash: Hex32,
  cid: Schema.String,
  difficulty: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 64 }))
}) {}

export class PowSolution extends Schema.Class<PowSolution>("r3mes/PowSolution")({
  nonce: Schema.BigInt,
  powHash: Hex32,
  /** Hashes computed to find it (for hashes/s figures). */
  hashes: Schema.Number
}) {}

export class Submission extends Schema.Class<Submission>("r3mes/Submission")({
  roundId: RoundId,
  chunkId: ChunkId,
  cid: Schema.String,
  gradientHash: Hex32,
  powNonce: Schema.BigInt
}) {}

export class SubmissionReceipt extends Schema.Class<SubmissionReceipt>("r3mes/SubmissionReceipt")({
  txHash: Hex32,
  blockNumber: Schema.BigInt,
  /** The hash of the block that holds it: a chain that lost this block (reset, reorg) no longer holds the submission. */
  blockHash: Hex32,
  /** True when the chain already held this exact submission from us (AlreadySubmitted for our own chunk and hash). */
  alreadySubmitted: Schema.Boolean
}) {}

/** Idempotency key of a transaction: (chainId, registry, miner, roundId, chunkId). */
export const transactionKey = (identity: MinerIdentity, task: { readonly roundId: bigint; readonly chunkId: number }): string =>
  `${identity.chainId}:${identity.registry.toLowerCase()}:${identity.miner.toLowerCase()}:${task.roundId}:${task.chunkId}`

/** A round as the registry holds it, with its task spec (read from the RoundOpened event). */
export class RoundInfo extends Schema.Class<RoundInfo>("r3mes/RoundInfo")({
  roundId: RoundId,
  modelCid: Schema.String,
  /** Canonical JSON; sha256(spec) = specHash. */
  spec: Schema.String,
  specHash: Hex32,
  chunkCount: Schema.Int,
  difficulty: Schema.Int,
  /** Unix seconds. */
  deadline: Schema.Number,
  /** Chunks below this index were claimed at least once. */
  nextChunk: Schema.Int,
  submittedCount: Schema.Int
}) {}

export class ChunkClaim extends Schema.Class<ChunkClaim>("r3mes/ChunkClaim")({
  roundId: RoundId,
  chunkId: ChunkId,
  miner: Address,
  /** Unix seconds. */
  leaseExpiry: Schema.Number,
  txHash: Hex32
}) {}

/** A submission as recorded on chain. */
export class OnChainSubmission extends Schema.Class<OnChainSubmission>("r3mes/OnChainSubmission")({
  roundId: RoundId,
  chunkId: ChunkId,
  miner: Address,
  cid: Schema.String,
  gradientHash: Hex32,
  powNonce: Schema.BigInt,
  blockNumber: Schema.BigInt,
  completed: Schema.Boolean,
  /** The transaction that put it there, and its block (from the GradientSubmitted event). */
  txHash: Hex32,
  blockHash: Hex32,
  /**
   * That block's timestamp (Unix seconds, chain time): when the submission became public. The verification window
   * runs from here, so a verifier that comes late does not grant the content more time.
   */
  blockTime: Schema.Number
}) {}

/** What makes a chain this chain: a chain that was reset (a devnet restarted without its state) differs. */
export class ChainFingerprint extends Schema.Class<ChainFingerprint>("r3mes/ChainFingerprint")({
  genesisHash: Hex32,
  /** keccak256 of the registry's deployed code. */
  registryCodeHash: Hex32
}) {}

/**
 * What the chain says about a transaction this miner signed:
 * - `Mined`: in a block (`success` false when it reverted);
 * - `Pending`: not in a block, and its nonce is still free, so it may yet be mined (re-send the same bytes);
 * - `Dropped`: not in a block, and never will be: another transaction of the account used its nonce.
 */
export type TransactionStatus =
  | { readonly _tag: "Mined"; readonly success: boolean; readonly receipt: SubmissionReceipt }
  | { readonly _tag: "Pending" }
  | { readonly _tag: "Dropped" }

/**
 * A transaction signed locally with an explicit nonce, before it is broadcast: its hash is known (and journaled)
 * before the chain sees it, and the same bytes can be re-sent after a crash.
 */
export class SignedTransaction extends Schema.Class<SignedTransaction>("r3mes/SignedTransaction")({
  hash: Hex32,
  /** 0x-prefixed serialized transaction. */
  raw: Schema.String.check(Schema.isPattern(/^0x[0-9a-fA-F]*$/, { expected: "0x-prefixed hex" })),
  nonce: Schema.Int
}) {}
