import { createHash } from "node:crypto"
import { Clock, Context, Effect, Layer, Option } from "effect"
import { ChainRevertError, NetworkError, ValidationError } from "../domain/errors.ts"
import {
  ChainFingerprint,
  ChunkClaim,
  MinerIdentity,
  OnChainSubmission,
  RoundInfo,
  SignedTransaction,
  Submission,
  SubmissionReceipt,
  type TransactionStatus
} from "../domain/mining.ts"
import { bytesToHex, challenge, meetsDifficulty, powHash } from "../domain/pow.ts"
import { Chain } from "../services/Chain.ts"
import type { MiningError } from "../domain/errors.ts"
import { type FaultPlan, makeFaultInjector } from "./Faults.ts"
import { rawCidV0 } from "./TestGradientStore.ts"

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
  /** Submissions recorded on the chain, in block order. */
  readonly submissions: Effect.Effect<ReadonlyArray<RecordedSubmission>>
  /** Every submission transaction signed, in signing order, with what became of it. */
  readonly transactions: Effect.Effect<ReadonlyArray<SignedSubmission>>
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
   * - `completeChunk` is idempotent (true each time) and reverts ChunkNotClaimed for a chunk with no submission.
   *
   * Every state-changing transaction (claim, accepted submission, first completion) mines the next block (from 1).
   * A submission's tx hash is `0x` + sha256 of the identity, the submission's fields and its nonce, so it is the same
   * across instances. Reverts are ChainRevertErrors with the contract's error name and arguments as strings.
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
        readonly openedIn: bigint
        nextChunk: number
        submittedCount: number
      }
      interface ClaimState {
        readonly leaseExpiry: number
        readonly claim: ChunkClaim
        readonly block: bigint
      }
      interface SubmissionState {
        readonly recorded: RecordedSubmission
        completed: boolean
        completedIn: bigint | undefined
      }

      const rounds = new Map<bigint, RoundState>()
      const claims = new Map<string, ClaimState>()
      const byChunk = new Map<string, SubmissionState>()
      const recordedSubmissions: Array<RecordedSubmission> = []
      const recordedClaims: Array<ChunkClaim> = []
      const completed: Array<CompletedChunk & { readonly block: bigint }> = []
      const signedTransactions: Array<SignedSubmission> = []
      let blockNumber = 0n
      /** Account nonce: how many of its transactions are mined (or dropped in favour of another). */
      let accountNonce = 0
      let lostBroadcasts = 0
      // Block hashes depend on the fork: a rewound or reset chain gives new blocks other hashes.
      let fork = 0
      let genesis = 0
      const blockHashes = new Map<bigint, string>()

      const chunkKey = (roundId: bigint, chunkId: number) => `${roundId}:${chunkId}`
      const sha256Hex = (text: string) => `0x${createHash("sha256").update(text).digest("hex")}`
      const chainNow = Effect.map(Clock.currentTimeMillis, (ms) => Math.floor(ms / 1000))

      /** Mines the next block and returns its number. */
      const mineBlock = (): bigint => {
        blockNumber += 1n
        blockHashes.set(blockNumber, sha256Hex(`block:${genesis}:${fork}:${blockNumber}`))
        return blockNumber
      }
      const hashOf = (block: bigint) => blockHashes.get(block)!

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

      const addRound = (round: TestRound, openedIn: bigint): RoundState => {
        const spec = round.spec ?? "{}"
        const state: RoundState = {
          roundId: round.roundId,
          modelCid: round.modelCid ?? defaultModelCid,
          spec,
          specHash: sha256Hex(spec),
          chunkCount: round.chunkCount,
          difficulty: round.difficulty,
          deadline: round.deadline,
          openedIn,
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

      const seedRounds = () => {
        for (const round of options.rounds ?? [defaultTestRound]) addRound(round, 0n)
      }
      for (const round of options.rounds ?? [defaultTestRound]) {
        const problem = roundProblem(round)
        if (problem !== undefined) return yield* Effect.die(new Error(`TestChain seed round: ${problem.message}`))
        addRound(round, 0n)
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
        const block = mineBlock()
        const claim = new ChunkClaim({
          roundId,
          chunkId,
          miner: identity.miner,
          leaseExpiry,
          txHash: sha256Hex(
            ["claimChunk", identity.chainId, identity.registry.toLowerCase(), identity.miner.toLowerCase(), roundId,
              chunkId, block, fork].join(":")
          )
        })
        claims.set(chunkKey(roundId, chunkId), { leaseExpiry, claim, block })
        recordedClaims.push(claim)
        return claim
      })

      const txHashOf = (s: Submission, nonce: number): string =>
        sha256Hex(
          [
            identity.chainId,
            identity.registry.toLowerCase(),
            identity.miner.toLowerCase(),
            s.roundId,
            s.chunkId,
            s.cid,
            s.gradientHash.toLowerCase(),
            s.powNonce,
            nonce
          ].join(":")
        )

      /** What the test chain "signs": the submission's fields and the nonce as JSON, hashed like a transaction. */
      const sign = (s: Submission, nonce: number): SignedTransaction =>
        new SignedTransaction({
          hash: txHashOf(s, nonce),
          raw: `0x${
            Buffer.from(JSON.stringify([s.roundId.toString(), s.chunkId, s.cid, s.gradientHash, s.powNonce.toString(), nonce]))
              .toString("hex")
          }`,
          nonce
        })

      const decodeRaw = (raw: string): Submission | undefined => {
        try {
          const [roundId, chunkId, cid, gradientHash, powNonce] = JSON.parse(Buffer.from(raw.slice(2), "hex").toString())
          return new Submission({ roundId: BigInt(roundId), chunkId, cid, gradientHash, powNonce: BigInt(powNonce) })
        } catch {
          return undefined
        }
      }

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

      /** The contract's submitGradient checks, without changing anything. */
      const check = Effect.fnUntraced(function*(submission: Submission) {
        const now = yield* chainNow
        const { roundId, chunkId } = submission
        const round = rounds.get(roundId)
        if (round === undefined) return yield* openRoundUnknown(roundId)
        const key = chunkKey(roundId, chunkId)
        const existing = byChunk.get(key)
        if (existing !== undefined) {
          return yield* revert("AlreadySubmitted", [
            roundId.toString(),
            String(chunkId),
            identity.miner,
            existing.recorded.gradientHash.toLowerCase()
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
        return round
      })

      /** Mines a signed submission at its nonce: recorded on success, a reverted receipt otherwise. */
      const mine = Effect.fnUntraced(function*(entry: SignedSubmission) {
        const index = signedTransactions.indexOf(entry)
        const outcome = yield* Effect.result(check(entry.submission))
        const block = mineBlock()
        accountNonce = Math.max(accountNonce, entry.signed.nonce + 1)
        const receipt = new SubmissionReceipt({
          txHash: entry.signed.hash,
          blockNumber: block,
          blockHash: hashOf(block),
          alreadySubmitted: false
        })
        signedTransactions[index] = { ...entry, mined: { success: outcome._tag === "Success", receipt } }
        if (outcome._tag === "Failure") return yield* outcome.failure
        const { submission } = entry
        const recorded: RecordedSubmission = {
          roundId: submission.roundId,
          chunkId: submission.chunkId,
          cid: submission.cid,
          gradientHash: submission.gradientHash,
          powNonce: submission.powNonce,
          receipt
        }
        byChunk.set(chunkKey(submission.roundId, submission.chunkId), { recorded, completed: false, completedIn: undefined })
        outcome.success.submittedCount += 1
        recordedSubmissions.push(recorded)
        return receipt
      })

      const submitGradient = Effect.fnUntraced(function*(
        submission: Submission,
        beforeBroadcast?: (signed: SignedTransaction) => Effect.Effect<void, MiningError>
      ) {
        yield* check(submission) // the simulation
        const entry: SignedSubmission = { signed: sign(submission, accountNonce), submission }
        if (beforeBroadcast !== undefined) yield* beforeBroadcast(entry.signed)
        signedTransactions.push(entry)
        if (lostBroadcasts > 0) {
          lostBroadcasts--
          return yield* new NetworkError({ message: `broadcasting ${entry.signed.hash}: connection reset`, service: "chain" })
        }
        return yield* mine(entry)
      })

      const entryOf = (signed: SignedTransaction) => signedTransactions.find((e) => e.signed.hash === signed.hash)

      const transactionStatus = (signed: SignedTransaction): TransactionStatus => {
        const entry = entryOf(signed)
        if (entry?.mined !== undefined) return { _tag: "Mined", success: entry.mined.success, receipt: entry.mined.receipt }
        return signed.nonce < accountNonce ? { _tag: "Dropped" } : { _tag: "Pending" }
      }

      const rebroadcast = Effect.fnUntraced(function*(signed: SignedTransaction) {
        const known = entryOf(signed)
        if (known?.mined !== undefined || signed.nonce < accountNonce) return // "already known" / "nonce too low"
        if (signed.nonce > accountNonce) return // waits in the pool for the nonces before it
        const submission = known?.submission ?? decodeRaw(signed.raw)
        if (submission === undefined) return yield* new ValidationError({ message: `cannot decode ${signed.hash}` })
        const entry = known ?? { signed, submission }
        if (known === undefined) signedTransactions.push(entry)
        yield* mine(entry).pipe(Effect.ignore)
      })

      const complete = Effect.fnUntraced(function*(roundId: bigint, chunkId: number) {
        const submission = byChunk.get(chunkKey(roundId, chunkId))
        if (submission === undefined) return yield* revert("ChunkNotClaimed", [roundId.toString(), String(chunkId)])
        if (!submission.completed) {
          submission.completed = true
          const block = mineBlock()
          submission.completedIn = block
          completed.push({ roundId, chunkId, block })
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
        return roundInfo(addRound(round, mineBlock()))
      })

      const onChain = (roundId: bigint, chunkId: number, state: SubmissionState) =>
        new OnChainSubmission({
          roundId,
          chunkId,
          miner: identity.miner,
          cid: state.recorded.cid,
          gradientHash: state.recorded.gradientHash,
          powNonce: state.recorded.powNonce,
          blockNumber: state.recorded.receipt.blockNumber,
          completed: state.completed,
          txHash: state.recorded.receipt.txHash,
          blockHash: state.recorded.receipt.blockHash
        })

      const ownClaims = Effect.gen(function*() {
        const now = yield* chainNow
        return [...claims.values()]
          .filter(({ claim, leaseExpiry }) => {
            const round = rounds.get(claim.roundId)
            return round !== undefined && round.deadline >= now && leaseExpiry >= now &&
              !byChunk.has(chunkKey(claim.roundId, claim.chunkId))
          })
          .map(({ claim }) => claim)
      })

      const rewindTo = (target: bigint) =>
        Effect.sync(() => {
          for (const [key, c] of claims) if (c.block > target) claims.delete(key)
          for (const [key, s] of byChunk) {
            if (s.recorded.receipt.blockNumber > target) {
              byChunk.delete(key)
              const round = rounds.get(s.recorded.roundId)
              if (round !== undefined) round.submittedCount -= 1
            } else if (s.completedIn !== undefined && s.completedIn > target) {
              s.completed = false
              s.completedIn = undefined
            }
          }
          for (const [id, r] of rounds) if (r.openedIn > target) rounds.delete(id)
          for (let i = recordedSubmissions.length - 1; i >= 0; i--) {
            if (recordedSubmissions[i]!.receipt.blockNumber > target) recordedSubmissions.splice(i, 1)
          }
          for (let i = completed.length - 1; i >= 0; i--) if (completed[i]!.block > target) completed.splice(i, 1)
          for (let i = 0; i < signedTransactions.length; i++) {
            const mined = signedTransactions[i]!.mined
            if (mined !== undefined && mined.receipt.blockNumber > target) {
              signedTransactions[i] = { signed: signedTransactions[i]!.signed, submission: signedTransactions[i]!.submission }
            }
          }
          accountNonce = signedTransactions.filter((e) => e.mined !== undefined).reduce(
            (n, e) => Math.max(n, e.signed.nonce + 1),
            0
          )
          for (const block of [...blockHashes.keys()]) if (block > target) blockHashes.delete(block)
          blockNumber = target
          fork++
        })

      const reset = Effect.sync(() => {
        rounds.clear()
        claims.clear()
        byChunk.clear()
        recordedSubmissions.length = 0
        recordedClaims.length = 0
        completed.length = 0
        signedTransactions.length = 0
        blockHashes.clear()
        blockNumber = 0n
        accountNonce = 0
        genesis++
        seedRounds()
      })

      const port = Chain.of({
        identity: faults.wrap("identity", Effect.succeed(identity)),
        fingerprint: faults.wrap(
          "fingerprint",
          Effect.sync(() =>
            new ChainFingerprint({
              genesisHash: sha256Hex(`genesis:${genesis}`),
              registryCodeHash: sha256Hex("MiningRegistry code")
            })
          )
        ),
        rounds: faults.wrap("rounds", Effect.sync(() => [...rounds.values()].map(roundInfo))),
        getRound: (roundId) =>
          faults.wrap("getRound", Effect.sync(() => Option.map(Option.fromUndefinedOr(rounds.get(roundId)), roundInfo))),
        claimChunk: (roundId) => faults.wrap("claimChunk", claimChunk(roundId)),
        ownClaims: faults.wrap("ownClaims", ownClaims),
        submitGradient: (submission, beforeBroadcast) =>
          faults.wrap("submitGradient", submitGradient(submission, beforeBroadcast)),
        transactionStatus: (signed) => faults.wrap("transactionStatus", Effect.sync(() => transactionStatus(signed))),
        rebroadcast: (signed) => faults.wrap("rebroadcast", rebroadcast(signed)),
        completeChunk: (roundId, chunkId) => faults.wrap("completeChunk", complete(roundId, chunkId)),
        getSubmission: (roundId, chunkId) =>
          faults.wrap(
            "getSubmission",
            Effect.sync(() =>
              Option.map(Option.fromUndefinedOr(byChunk.get(chunkKey(roundId, chunkId))), (state) =>
                onChain(roundId, chunkId, state))
            )
          ),
        ownSubmissions: faults.wrap(
          "ownSubmissions",
          Effect.sync(() =>
            recordedSubmissions.map((r) => onChain(r.roundId, r.chunkId, byChunk.get(chunkKey(r.roundId, r.chunkId))!))
          )
        ),
        head: faults.wrap(
          "head",
          Effect.sync(() => ({ number: blockNumber, hash: blockHashes.get(blockNumber) ?? sha256Hex(`genesis:${genesis}`) }))
        ),
        blockHash: (block) => faults.wrap("blockHash", Effect.sync(() => Option.fromUndefinedOr(blockHashes.get(block)))),
        now: faults.wrap("now", chainNow)
      })

      const control = TestChain.of({
        setFaults: faults.set,
        calls: faults.calls,
        submissions: Effect.sync(() => [...recordedSubmissions]),
        transactions: Effect.sync(() => [...signedTransactions]),
        claims: Effect.sync(() => [...recordedClaims]),
        completedChunks: Effect.sync(() => completed.map(({ chunkId, roundId }) => ({ roundId, chunkId }))),
        openRound,
        loseBroadcasts: (count) => Effect.sync(() => (lostBroadcasts += count)),
        useNextNonce: Effect.sync(() => {
          accountNonce++
        }),
        rewindTo,
        reset
      })

      return Context.make(Chain, port).pipe(Context.add(TestChain, control))
    }))
}
