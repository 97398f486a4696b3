import { Context, Effect, Layer, Option } from "effect"
import type { ChainRevertError } from "../domain/errors.ts"
import {
  ChainFingerprint,
  type ChunkClaim,
  MinerIdentity,
  type OnChainSubmission,
  type RoundInfo,
  type Submission
} from "../domain/mining.ts"
import type { FinalizationReceipt, FinalizeRound } from "../domain/rounds.ts"
import type { OnChainVerdict } from "../domain/verification.ts"
import { sha256Hex } from "../layers/sha256Hex.ts"
import { Chain } from "../services/Chain.ts"
import { type FaultPlan, makeFaultInjector } from "./Faults.ts"
import { makeBlocks } from "./testChain/blocks.ts"
import { makeFinalizations } from "./testChain/finalizations.ts"
import { chainNow, makeRegistry } from "./testChain/registry.ts"
import { makeTransactions } from "./testChain/transactions.ts"
import { makeVerdicts } from "./testChain/verdicts.ts"
import {
  type ChainMethod,
  type CompletedChunk,
  defaultTestIdentity,
  type RecordedSubmission,
  type SignedSubmission,
  type SignedVerdict,
  type TestChainOptions,
  type TestRound
} from "./testChain/types.ts"

export * from "./testChain/types.ts"

/** Control side of the test Chain: what a test (as the registry's owner, or an observer) does and sees. */
export class TestChain extends Context.Service<TestChain, {
  readonly setFaults: (faults: FaultPlan<ChainMethod>) => Effect.Effect<void>
  readonly calls: (method: ChainMethod) => Effect.Effect<number>
  /** This miner's submissions recorded on the chain, in block order (another miner's: `submissionsBetween`). */
  readonly submissions: Effect.Effect<ReadonlyArray<RecordedSubmission>>
  /** Every submission transaction signed, in signing order, with what became of it. */
  readonly transactions: Effect.Effect<ReadonlyArray<SignedSubmission>>
  /** Every verdict transaction signed, in signing order, with what became of it. */
  readonly verdictTransactions: Effect.Effect<ReadonlyArray<SignedVerdict>>
  /** Every verdict recorded on the chain, in block order. */
  readonly verdicts: Effect.Effect<ReadonlyArray<OnChainVerdict>>
  /** The owner's `setVerifier`: allows or disallows `address` (this account's own included) to record verdicts. */
  readonly setVerifier: (address: string, allowed: boolean) => Effect.Effect<void>
  /**
   * Another miner (`miner`, an address) claims `submission.chunkId` and submits it, in one new block, without a proof
   * of work checked: RoundNotOpen, AlreadySubmitted, RoundExpired, and ChunkNotClaimed for a chunk outside the round
   * or leased to this miner. What a verifier sees of the other miners.
   */
  readonly submitAs: (miner: string, submission: Submission) => Effect.Effect<OnChainSubmission, ChainRevertError>
  /** Every successful `claimChunk`, in block order (a re-claimed chunk appears again). */
  readonly claims: Effect.Effect<ReadonlyArray<ChunkClaim>>
  /** Chunks marked complete, in block order. */
  readonly completedChunks: Effect.Effect<ReadonlyArray<CompletedChunk>>
  /**
   * Opens a round now, with the contract's checks: RoundExists, InvalidDifficulty (not 1..64), InvalidChunkCount
   * (0), RoundExpired (deadline not after the chain's now).
   */
  readonly openRound: (round: TestRound) => Effect.Effect<RoundInfo, ChainRevertError>
  /**
   * The owner's `finalizeRound`, with the contract's checks in its order: RoundNotOpen (no such round),
   * RoundAlreadyFinalized, InvalidAccuracy (over 1_000_000 ppm). Mines a block; the round then refuses claims and
   * submissions (RoundNotOpen), and `getFinalization` reads it. What `TestRoundAuthority` calls.
   */
  readonly finalizeRound: (finalization: FinalizeRound) => Effect.Effect<FinalizationReceipt, ChainRevertError>
  /**
   * The next `count` submission broadcasts never reach the chain: the transaction is signed and handed to
   * `beforeBroadcast` (journaled), then `submitGradient` fails with a NetworkError and nothing is mined. The same
   * bytes re-sent (`rebroadcast`) are mined.
   */
  readonly loseBroadcasts: (count: number) => Effect.Effect<void>
  /** Another transaction of the account takes the next nonce (as a second wallet on the same key would). */
  readonly useNextNonce: Effect.Effect<void>
  /**
   * The chain loses every block after `blockNumber` (a devnet restarted from an older state, a reorg): their claims,
   * submissions and completions are gone, and new blocks get other hashes.
   */
  readonly rewindTo: (blockNumber: bigint) => Effect.Effect<void>
  /** A new chain at the same address: new genesis, the seeded rounds only, nothing claimed or submitted. */
  readonly reset: Effect.Effect<void>
}>()("r3mes/testing/TestChain") {
  /**
   * The MiningRegistry in memory, with its rules (contracts/MiningRegistry.sol is the reference):
   *
   * - chain time is effect's `Clock` in Unix seconds, so `TestClock` drives leases and deadlines;
   * - `claimChunk` hands out never-claimed chunks in order, then the lowest chunk whose lease expired without a
   *   submission; else NoFreeChunk. RoundNotOpen for an unknown round, RoundExpired after the deadline;
   * - `submitGradient` checks, in the contract's order: RoundNotOpen, AlreadySubmitted (before the deadline and the
   *   lease), RoundExpired, ChunkNotClaimed (see `requireClaim`), LeaseExpired, InsufficientWork (see `checkPow`);
   *   the checks are made when signing (the simulation) and again when mining;
   * - submissions are signed with the account's next nonce and mined at once; a transaction whose nonce another one
   *   used is dropped (`transactionStatus`), one never broadcast is pending until re-sent;
   * - `completeChunk` is idempotent (true each time) and reverts ChunkNotClaimed for a chunk with no submission of ours;
   * - `recordVerdict` checks, in the contract's order: NotVerifier (the account is one when built with
   *   `verifier: true`, or after `setVerifier`), NoSubmission, InvalidVerdict (not 1, 2, 16..20), AlreadyVerified;
   *   it is signed, journaled and mined like a submission (same nonces, `loseBroadcasts`, `rebroadcast`);
   * - `submissionsBetween` lists every miner's submissions (`submitAs` adds another's) mined in the range;
   * - a round finalized by the owner (`finalizeRound` here, or a `TestRoundAuthority` on top) is closed: claims and
   *   submissions revert RoundNotOpen (a submission after AlreadySubmitted, as in the contract), its leases leave
   *   `ownClaims`; verdicts and completions are still recorded.
   *
   * Every state-changing transaction (claim, accepted submission, first completion) mines the next block (from 1;
   * block 0 is the genesis the fingerprint names). A submission's tx hash is `0x` + sha256 of the identity, the
   * submission's fields and its nonce, so it is the same across instances. Reverts are ChainRevertErrors with the
   * contract's error name and arguments as strings. test/support/chainContract.ts holds this fake and ViemChain on
   * anvil to the same behaviours.
   *
   * The parts: testChain/registry.ts (the contract's storage and rules), testChain/verdicts.ts (verifiers and
   * verdicts), testChain/finalizations.ts (the owner's round finalizations), testChain/transactions.ts (nonces,
   * broadcast, mining of submissions and verdicts), testChain/blocks.ts (block numbers and hashes across rewinds and
   * resets), testChain/reverts.ts (reverts as ViemChain decodes them).
   * `setVerifier` mines a block but is not undone by `rewindTo`.
   */
  static readonly layer = (options: TestChainOptions = {}): Layer.Layer<Chain | TestChain> =>
    Layer.effectContext(Effect.gen(function*() {
      const faults = yield* makeFaultInjector(options.faults)
      const identity = new MinerIdentity({ ...defaultTestIdentity, ...options.identity })
      const blocks = makeBlocks()
      const finalizations = makeFinalizations({
        identity,
        blocks,
        roundExists: (roundId) => Option.isSome(registry.getRound(roundId))
      })
      const registry = makeRegistry({ identity, options, blocks, isFinalized: finalizations.isFinalized })
      const verdicts = makeVerdicts({
        identity,
        registry,
        verifierAtGenesis: options.verifier ?? false,
        isFinalized: finalizations.isFinalized
      })
      const transactions = makeTransactions({ identity, registry, verdicts, blocks })
      const invalidSeed = registry.seedRounds()
      if (invalidSeed !== undefined) return yield* Effect.die(new Error(invalidSeed))

      const port = Chain.of({
        identity: faults.wrap("identity", Effect.succeed(identity)),
        fingerprint: faults.wrap(
          "fingerprint",
          Effect.sync(() =>
            new ChainFingerprint({ genesisHash: blocks.genesisHash(), registryCodeHash: sha256Hex("MiningRegistry code") })
          )
        ),
        rounds: faults.wrap("rounds", Effect.sync(registry.rounds)),
        getRound: (roundId) => faults.wrap("getRound", Effect.sync(() => registry.getRound(roundId))),
        claimChunk: (roundId) => faults.wrap("claimChunk", registry.claimChunk(roundId)),
        ownClaims: faults.wrap("ownClaims", registry.ownClaims),
        submitGradient: (submission, beforeBroadcast) =>
          faults.wrap("submitGradient", transactions.submitGradient(submission, beforeBroadcast)),
        transactionStatus: (signed) =>
          faults.wrap("transactionStatus", Effect.sync(() => transactions.transactionStatus(signed))),
        rebroadcast: (signed) => faults.wrap("rebroadcast", transactions.rebroadcast(signed)),
        completeChunk: (roundId, chunkId) => faults.wrap("completeChunk", registry.complete(roundId, chunkId)),
        getSubmission: (roundId, chunkId) =>
          faults.wrap("getSubmission", Effect.sync(() => registry.getSubmission(roundId, chunkId))),
        ownSubmissions: faults.wrap("ownSubmissions", Effect.sync(registry.ownSubmissions)),
        submissionsBetween: (fromBlock, toBlock) =>
          faults.wrap("submissionsBetween", Effect.sync(() => registry.submissionsBetween(fromBlock, toBlock))),
        recordVerdict: (record, beforeBroadcast) =>
          faults.wrap("recordVerdict", transactions.recordVerdict(record, beforeBroadcast)),
        getVerdict: (roundId, chunkId, verifier) =>
          faults.wrap("getVerdict", Effect.sync(() => verdicts.getVerdict(roundId, chunkId, verifier))),
        isVerifier: faults.wrap("isVerifier", Effect.sync(() => verdicts.isVerifier(identity.miner))),
        getFinalization: (roundId) =>
          faults.wrap("getFinalization", Effect.sync(() => finalizations.getFinalization(roundId))),
        head: faults.wrap("head", Effect.sync(() => ({ number: blocks.head(), hash: blocks.hashOf(blocks.head())! }))),
        blockHash: (block) => faults.wrap("blockHash", Effect.sync(() => Option.fromUndefinedOr(blocks.hashOf(block)))),
        now: faults.wrap("now", chainNow)
      })

      const control = TestChain.of({
        setFaults: faults.set,
        calls: faults.calls,
        submissions: Effect.sync(registry.recordedSubmissions),
        transactions: Effect.sync(transactions.all),
        verdictTransactions: Effect.sync(transactions.verdicts),
        verdicts: Effect.sync(verdicts.all),
        setVerifier: (address, allowed) =>
          Effect.map(chainNow, (now) => {
            blocks.mine(now)
            verdicts.setVerifier(address, allowed)
          }),
        submitAs: registry.submitAs,
        claims: Effect.sync(registry.recordedClaims),
        completedChunks: Effect.sync(registry.completedChunks),
        openRound: registry.openRound,
        finalizeRound: finalizations.finalizeRound,
        loseBroadcasts: (count) => Effect.sync(() => transactions.loseBroadcasts(count)),
        useNextNonce: Effect.sync(transactions.useNextNonce),
        rewindTo: (target) =>
          Effect.sync(() => {
            registry.rewindTo(target)
            verdicts.rewindTo(target)
            finalizations.rewindTo(target)
            transactions.rewindTo(target)
            blocks.rewindTo(target)
          }),
        reset: Effect.sync(() => {
          transactions.reset()
          blocks.reset()
          registry.reset()
          verdicts.reset()
          finalizations.reset()
        })
      })

      return Context.make(Chain, port).pipe(Context.add(TestChain, control))
    }))
}
