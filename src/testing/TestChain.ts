import { createHash } from "node:crypto"
import { Clock, Context, Effect, Layer, Option } from "effect"
import { ChainRevertError, ValidationError } from "../domain/errors.ts"
import {
  ChunkClaim,
  MinerIdentity,
  OnChainSubmission,
  RoundInfo,
  SignedTransaction,
  type Submission,
  SubmissionReceipt
} from "../domain/mining.ts"
import { bytesToHex, challenge, meetsDifficulty, powHash } from "../domain/pow.ts"
import { Chain } from "../services/Chain.ts"
import { type FaultPlan, makeFaultInjector } from "./Faults.ts"
import { rawCidV0 } from "./TestGradientStore.ts"

export type ChainMethod =
  | "identity"
  | "rounds"
  | "getRound"
  | "claimChunk"
  | "submitGradient"
  | "resumeSubmission"
  | "completeChunk"
  | "getSubmission"
  | "now"

/** A submission the test chain accepted, with the receipt it answered. */
export interface RecordedSubmission {
  readonly roundId: bigint
  readonly chunkId: number
  readonly cid: string
  readonly gradientHash: string
  readonly powNonce: bigint
  readonly receipt: SubmissionReceipt
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

/** Control side of the test Chain: what a test (as the registry's owner, or an observer) does and sees. */
export class TestChain extends Context.Service<TestChain, {
  readonly setFaults: (faults: FaultPlan<ChainMethod>) => Effect.Effect<void>
  readonly calls: (method: ChainMethod) => Effect.Effect<number>
  /** Submissions recorded on the chain, in block order (answers `alreadySubmitted: true` add nothing). */
  readonly submissions: Effect.Effect<ReadonlyArray<RecordedSubmission>>
  /** Every successful `claimChunk`, in block order (a re-claimed chunk appears again). */
  readonly claims: Effect.Effect<ReadonlyArray<ChunkClaim>>
  /** Chunks marked complete, in block order. */
  readonly completedChunks: Effect.Effect<ReadonlyArray<CompletedChunk>>
  /**
   * Opens a round now, with the contract's checks: RoundExists, InvalidDifficulty (not 1..64), InvalidChunkCount
   * (0), RoundExpired (deadline not after the chain's now).
   */
  readonly openRound: (round: TestRound) => Effect.Effect<RoundInfo, ChainRevertError>
}>()("r3mes/testing/TestChain") {
  /**
   * The MiningRegistry in memory, with its rules (contracts/MiningRegistry.sol is the reference):
   *
   * - chain time is effect's `Clock` in Unix seconds, so `TestClock` drives leases and deadlines;
   * - `claimChunk` hands out never-claimed chunks in order, then the lowest chunk whose lease expired without a
   *   submission; else NoFreeChunk. RoundNotOpen for an unknown round, RoundExpired after the deadline;
   * - `submitGradient` checks, in the contract's order: RoundNotOpen, AlreadySubmitted (before the deadline and the
   *   lease), RoundExpired, ChunkNotClaimed (see `requireClaim`), LeaseExpired, InsufficientWork (see `checkPow`).
   *   A second submission of a chunk with the same gradient hash answers the original receipt with
   *   `alreadySubmitted: true`, as the real adapter does for our own chunk;
   * - `completeChunk` is idempotent (true each time) and reverts ChunkNotClaimed for a chunk with no submission.
   *
   * Every state-changing transaction (claim, accepted submission, first completion) mines the next block (from 1).
   * A submission's tx hash is `0x` + sha256 of the identity and the submission's fields, so it is the same across
   * instances. Reverts are ChainRevertErrors with the contract's error name and arguments as strings.
   */
  static readonly layer = (options: TestChainOptions = {}): Layer.Layer<Chain | TestChain> =>
    Layer.effectContext(Effect.gen(function*() {
      const faults = yield* makeFaultInjector(options.faults)
      const identity = new MinerIdentity({ ...defaultTestIdentity, ...options.identity })
      const leaseSeconds = options.leaseSeconds ?? defaultLeaseSeconds
      const requireClaim = options.requireClaim ?? false
      const checkPow = options.checkPow ?? false
      const defaultModelCid = rawCidV0(new TextEncoder().encode("r3mes test model"))

      interface RoundState {
        readonly roundId: bigint
        readonly modelCid: string
        readonly spec: string
        readonly specHash: string
        readonly chunkCount: number
        readonly difficulty: number
        readonly deadline: number
        nextChunk: number
        submittedCount: number
      }
      interface ClaimState {
        readonly leaseExpiry: number
      }
      interface SubmissionState {
        readonly recorded: RecordedSubmission
        completed: boolean
      }

      const rounds = new Map<bigint, RoundState>()
      const claims = new Map<string, ClaimState>()
      const byChunk = new Map<string, SubmissionState>()
      const recordedSubmissions: Array<RecordedSubmission> = []
      const recordedClaims: Array<ChunkClaim> = []
      const completed: Array<CompletedChunk> = []
      let blockNumber = 0n

      const chunkKey = (roundId: bigint, chunkId: number) => `${roundId}:${chunkId}`
      const sha256Hex = (text: string) => `0x${createHash("sha256").update(text).digest("hex")}`
      const chainNow = Effect.map(Clock.currentTimeMillis, (ms) => Math.floor(ms / 1000))

      const revert = (errorName: string, args: ReadonlyArray<string>, hint?: string) =>
        new ChainRevertError({
          message: `MiningRegistry reverted with ${errorName}(${args.join(", ")})`,
          errorName,
          args: [...args],
          ...(hint === undefined ? {} : { hint })
        })

      /** The contract's openRound checks, except the deadline (seeded rounds may be past theirs). */
      const roundProblem = (round: TestRound): ChainRevertError | undefined => {
        if (rounds.has(round.roundId)) return revert("RoundExists", [round.roundId.toString()])
        if (!Number.isInteger(round.difficulty) || round.difficulty < 1 || round.difficulty > 64) {
          return revert("InvalidDifficulty", [String(round.difficulty)])
        }
        if (!Number.isInteger(round.chunkCount) || round.chunkCount < 1 || round.chunkCount > 0xffffffff) {
          return revert("InvalidChunkCount", [String(round.chunkCount)])
        }
        return undefined
      }

      const addRound = (round: TestRound): RoundState => {
        const spec = round.spec ?? "{}"
        const state: RoundState = {
          roundId: round.roundId,
          modelCid: round.modelCid ?? defaultModelCid,
          spec,
          specHash: sha256Hex(spec),
          chunkCount: round.chunkCount,
          difficulty: round.difficulty,
          deadline: round.deadline,
          nextChunk: 0,
          submittedCount: 0
        }
        rounds.set(round.roundId, state)
        return state
      }

      const roundInfo = (r: RoundState) =>
        new RoundInfo({
          roundId: r.roundId,
          modelCid: r.modelCid,
          spec: r.spec,
          specHash: r.specHash,
          chunkCount: r.chunkCount,
          difficulty: r.difficulty,
          deadline: r.deadline,
          nextChunk: r.nextChunk,
          submittedCount: r.submittedCount
        })

      for (const round of options.rounds ?? [defaultTestRound]) {
        const problem = roundProblem(round)
        if (problem !== undefined) return yield* Effect.die(new Error(`TestChain seed round: ${problem.message}`))
        addRound(round)
      }

      const openRoundUnknown = (roundId: bigint) =>
        revert(
          "RoundNotOpen",
          [roundId.toString()],
          "the test chain has no such round: seed it with TestChain.layer({ rounds }) or open it with openRound"
        )

      const claimChunk = Effect.fnUntraced(function*(roundId: bigint) {
        const now = yield* chainNow
        const round = rounds.get(roundId)
        if (round === undefined) return yield* openRoundUnknown(roundId)
        if (now > round.deadline) return yield* revert("RoundExpired", [roundId.toString(), String(round.deadline)])
        let chunkId: number | undefined
        // Skipping submitted chunks only matters when requireClaim is off: the contract cannot reach that state.
        while (round.nextChunk < round.chunkCount && byChunk.has(chunkKey(roundId, round.nextChunk))) {
          round.nextChunk += 1
        }
        if (round.nextChunk < round.chunkCount) {
          chunkId = round.nextChunk
          round.nextChunk += 1
        } else {
          for (let i = 0; i < round.chunkCount; i++) {
            const claim = claims.get(chunkKey(roundId, i))
            if (!byChunk.has(chunkKey(roundId, i)) && (claim === undefined || claim.leaseExpiry < now)) {
              chunkId = i
              break
            }
          }
        }
        if (chunkId === undefined) return yield* revert("NoFreeChunk", [roundId.toString()])
        const leaseExpiry = now + leaseSeconds
        claims.set(chunkKey(roundId, chunkId), { leaseExpiry })
        blockNumber += 1n
        const claim = new ChunkClaim({
          roundId,
          chunkId,
          miner: identity.miner,
          leaseExpiry,
          txHash: sha256Hex(
            ["claimChunk", identity.chainId, identity.registry.toLowerCase(), identity.miner.toLowerCase(), roundId,
              chunkId, blockNumber].join(":")
          )
        })
        recordedClaims.push(claim)
        return claim
      })

      /** What the test chain "signs": the submission's fields as JSON, hashed like a real transaction hash would be. */
      const signedOf = (s: Submission): SignedTransaction =>
        new SignedTransaction({
          hash: txHashOf(s),
          raw: `0x${Buffer.from(JSON.stringify([s.roundId.toString(), s.chunkId, s.cid, s.gradientHash, s.powNonce.toString()])).toString("hex")}`,
          nonce: 0
        })

      const txHashOf = (s: Submission): string =>
        sha256Hex(
          [
            identity.chainId,
            identity.registry.toLowerCase(),
            identity.miner.toLowerCase(),
            s.roundId,
            s.chunkId,
            s.cid,
            s.gradientHash.toLowerCase(),
            s.powNonce
          ].join(":")
        )

      const checkWork = Effect.fnUntraced(function*(submission: Submission, difficulty: number) {
        const hash = yield* Effect.try({
          try: () =>
            powHash(
              challenge({
                chainId: identity.chainId,
                registry: identity.registry,
                miner: identity.miner,
                roundId: submission.roundId,
                chunkId: submission.chunkId,
                gradientHash: submission.gradientHash,
                cid: submission.cid
              }),
              submission.powNonce
            ),
          catch: (cause) =>
            new ValidationError({
              message: `cannot encode the submission of chunk ${submission.chunkId}: ${(cause as Error).message}`,
              cause: (cause as Error).message
            })
        })
        if (!meetsDifficulty(hash, difficulty)) {
          return yield* revert("InsufficientWork", [bytesToHex(hash), String(difficulty)])
        }
      })

      const submit = Effect.fnUntraced(function*(submission: Submission) {
        const now = yield* chainNow
        const { roundId, chunkId } = submission
        const round = rounds.get(roundId)
        if (round === undefined) return yield* openRoundUnknown(roundId)
        const key = chunkKey(roundId, chunkId)
        const existing = byChunk.get(key)
        if (existing !== undefined) {
          const held = existing.recorded
          if (held.gradientHash.toLowerCase() === submission.gradientHash.toLowerCase()) {
            return new SubmissionReceipt({ ...held.receipt, alreadySubmitted: true })
          }
          return yield* revert("AlreadySubmitted", [
            roundId.toString(),
            String(chunkId),
            identity.miner,
            held.gradientHash.toLowerCase()
          ])
        }
        if (now > round.deadline) return yield* revert("RoundExpired", [roundId.toString(), String(round.deadline)])
        // Every claim on this chain is the miner's own: there is no other account to hold a lease.
        const claim = claims.get(key)
        if (chunkId >= round.chunkCount || (requireClaim && claim === undefined)) {
          return yield* revert("ChunkNotClaimed", [roundId.toString(), String(chunkId)])
        }
        if (claim !== undefined && claim.leaseExpiry < now) {
          return yield* revert("LeaseExpired", [roundId.toString(), String(chunkId), String(claim.leaseExpiry)])
        }
        if (checkPow) yield* checkWork(submission, round.difficulty)

        blockNumber += 1n
        const receipt = new SubmissionReceipt({ txHash: txHashOf(submission), blockNumber, alreadySubmitted: false })
        const recorded: RecordedSubmission = {
          roundId,
          chunkId,
          cid: submission.cid,
          gradientHash: submission.gradientHash,
          powNonce: submission.powNonce,
          receipt
        }
        byChunk.set(key, { recorded, completed: false })
        round.submittedCount += 1
        recordedSubmissions.push(recorded)
        return receipt
      })

      const complete = Effect.fnUntraced(function*(roundId: bigint, chunkId: number) {
        const submission = byChunk.get(chunkKey(roundId, chunkId))
        if (submission === undefined) return yield* revert("ChunkNotClaimed", [roundId.toString(), String(chunkId)])
        if (!submission.completed) {
          submission.completed = true
          blockNumber += 1n
          completed.push({ roundId, chunkId })
        }
        return true
      })

      const openRound = Effect.fnUntraced(function*(round: TestRound) {
        const problem = roundProblem(round)
        if (problem !== undefined) return yield* problem
        const now = yield* chainNow
        if (round.deadline <= now) {
          return yield* revert("RoundExpired", [round.roundId.toString(), String(round.deadline)])
        }
        blockNumber += 1n
        return roundInfo(addRound(round))
      })

      const port = Chain.of({
        identity: faults.wrap("identity", Effect.succeed(identity)),
        rounds: faults.wrap("rounds", Effect.sync(() => [...rounds.values()].map(roundInfo))),
        getRound: (roundId) =>
          faults.wrap("getRound", Effect.sync(() => Option.map(Option.fromUndefinedOr(rounds.get(roundId)), roundInfo))),
        claimChunk: (roundId) => faults.wrap("claimChunk", claimChunk(roundId)),
        submitGradient: (submission, beforeBroadcast) =>
          faults.wrap(
            "submitGradient",
            Effect.gen(function*() {
              const signed = signedOf(submission)
              // A re-submission of what the chain holds answers without a new transaction, as the simulation would.
              if (beforeBroadcast !== undefined && !byChunk.has(chunkKey(submission.roundId, submission.chunkId))) {
                yield* beforeBroadcast(signed)
              }
              return yield* submit(submission)
            })
          ),
        resumeSubmission: (submission, signed) =>
          faults.wrap(
            "resumeSubmission",
            signed.hash === signedOf(submission).hash
              ? submit(submission).pipe(Effect.map((receipt) => new SubmissionReceipt({ ...receipt })))
              : Effect.fail(
                new ValidationError({ message: `signed transaction ${signed.hash} does not carry this submission` })
              )
          ),
        completeChunk: (roundId, chunkId) => faults.wrap("completeChunk", complete(roundId, chunkId)),
        getSubmission: (roundId, chunkId) =>
          faults.wrap(
            "getSubmission",
            Effect.sync(() =>
              Option.map(Option.fromUndefinedOr(byChunk.get(chunkKey(roundId, chunkId))), ({ completed, recorded }) =>
                new OnChainSubmission({
                  roundId,
                  chunkId,
                  miner: identity.miner,
                  cid: recorded.cid,
                  gradientHash: recorded.gradientHash,
                  powNonce: recorded.powNonce,
                  blockNumber: recorded.receipt.blockNumber,
                  completed
                }))
            )
          ),
        now: faults.wrap("now", chainNow)
      })

      const control = TestChain.of({
        setFaults: faults.set,
        calls: faults.calls,
        submissions: Effect.sync(() => [...recordedSubmissions]),
        claims: Effect.sync(() => [...recordedClaims]),
        completedChunks: Effect.sync(() => [...completed]),
        openRound
      })

      return Context.make(Chain, port).pipe(Context.add(TestChain, control))
    }))
}
