/**
 * The ports of the soak bench (bench/soak.ts): in-memory fakes whose own state stays bounded however long the miner
 * runs, so that the resident set measures the miner and not its fakes. src/testing's fakes keep everything for a
 * test to inspect (every submission, pin, claim, training and solve); over 20,000 transactions that bookkeeping is
 * nearly all of the growth (`npm run bench:soak -- --ports testing`).
 *
 * - Work comes in rounds of `chunksPerRound` chunks: round 1 chunk 0, 1, …, then round 2. The chain keeps the
 *   submissions (and signed transactions) of the newest `keepRounds` rounds and forgets older ones, as a closed
 *   round no longer matters to a miner.
 * - Block hashes are a function of the block number, so the journal's audit (`blockHash`) is answered without a
 *   table of blocks.
 * - The store counts pins and bytes; it keeps no content (nothing in a mining transaction reads it back).
 * - The trainer answers src/testing's deterministic envelope (`testEnvelope`); the PoW solver answers nonce 0 (the
 *   chain checks no work), like TestPowSolver; neither records anything.
 * - Faults, deterministic by call number, so that the soak also runs the retry and rollback paths: every
 *   `submitRetryEvery`-th broadcast fails once with a NetworkError before it is signed (retried), every
 *   `uploadRollbackEvery`-th pin fails with a ValidationError (rolled back: the unpin compensation runs), every
 *   `trainFailEvery`-th training fails with a ResourceError (failed), every `completeFailEvery`-th task completion
 *   fails with a NetworkError (retried, like the broadcast). 0 turns one off.
 */
import { createHash } from "node:crypto"
import { Effect, Layer, Option } from "effect"
import { ChainRevertError, NetworkError, ResourceError, ValidationError } from "../src/domain/errors.ts"
import {
  ChainFingerprint,
  MinerIdentity,
  OnChainSubmission,
  PowSolution,
  RoundInfo,
  SignedTransaction,
  type Submission,
  SubmissionReceipt,
  Task,
  TrainingResult,
  type TransactionStatus
} from "../src/domain/mining.ts"
import { Chain } from "../src/services/Chain.ts"
import { GradientStore } from "../src/services/GradientStore.ts"
import { PowSolver } from "../src/services/PowSolver.ts"
import { TaskSource } from "../src/services/TaskSource.ts"
import { Trainer } from "../src/services/Trainer.ts"
import { defaultTestIdentity } from "../src/testing/TestChain.ts"
import { rawCidV0 } from "../src/testing/TestGradientStore.ts"
import { sha256Hex, testEnvelope, testProfile } from "../src/testing/TestTrainer.ts"

export interface SoakFaults {
  readonly submitRetryEvery: number
  readonly uploadRollbackEvery: number
  readonly trainFailEvery: number
  readonly completeFailEvery: number
}

export const noFaults: SoakFaults = { submitRetryEvery: 0, uploadRollbackEvery: 0, trainFailEvery: 0, completeFailEvery: 0 }

/** A little of everything, none of it in a row: the breaker never trips and the consecutive-failure limit is never hit. */
export const mixedFaults: SoakFaults = { submitRetryEvery: 50, uploadRollbackEvery: 200, trainFailEvery: 500, completeFailEvery: 100 }

export interface SoakPortsOptions {
  readonly chunksPerRound?: number
  /** Rounds whose submissions the chain remembers (the newest ones). Default 2. */
  readonly keepRounds?: number
  readonly envelopeBytes?: number
  readonly faults?: SoakFaults
}

/** What the soak fakes hold, to show it stays bounded. */
export interface SoakPortsState {
  readonly claimed: number
  readonly submitted: number
  readonly rememberedSubmissions: number
  readonly rememberedTransactions: number
  readonly pinned: number
  readonly unpinned: number
  readonly pinnedBytes: number
  readonly blockNumber: bigint
  readonly round: bigint
}

/** 2100-01-01: no lease or deadline expires during a soak. */
const farFuture = 4_102_444_800

const sha256 = (text: string): string => `0x${createHash("sha256").update(text).digest("hex")}`

/** `every`-th call (1-based) when `every` > 0. */
const hits = (call: number, every: number) => every > 0 && call % every === 0

/** The six ports over shared, bounded state (one chain, one round sequence), and a look at that state. */
export const makeSoakPorts = (options: SoakPortsOptions = {}) => {
  const chunksPerRound = options.chunksPerRound ?? 1000
  const keepRounds = BigInt(options.keepRounds ?? 2)
  const envelopeBytes = options.envelopeBytes ?? 1024
  const faults = options.faults ?? noFaults
  const identity = new MinerIdentity(defaultTestIdentity)
  const modelCid = rawCidV0(new TextEncoder().encode("r3mes test model"))
  const spec = "{}"
  const specHash = sha256(spec)

  interface Remembered {
    readonly submission: Submission
    readonly receipt: SubmissionReceipt
    completed: boolean
  }
  // The newest rounds' submissions by "round:chunk", and their transactions by hash; older rounds are dropped.
  const submissions = new Map<string, Remembered>()
  const transactions = new Map<string, SubmissionReceipt>()
  const calls = { next: 0, train: 0, add: 0, submit: 0, complete: 0 }
  const counts = { claimed: 0, submitted: 0, pinned: 0, unpinned: 0, pinnedBytes: 0 }
  let blockNumber = 0n
  let accountNonce = 0
  let newestRound = 1n

  const chunkKey = (roundId: bigint, chunkId: number) => `${roundId}:${chunkId}`
  const blockHashOf = (block: bigint) => sha256(`soak block ${block}`)
  const roundOf = (claim: number) => 1n + BigInt(Math.floor(claim / chunksPerRound))

  const forgetOldRounds = (round: bigint) => {
    if (round <= newestRound) return
    newestRound = round
    for (const [key, entry] of submissions) {
      if (entry.submission.roundId > newestRound - keepRounds) continue
      submissions.delete(key)
      transactions.delete(entry.receipt.txHash)
    }
  }

  const roundInfo = (roundId: bigint) =>
    new RoundInfo({
      roundId,
      modelCid,
      spec,
      specHash,
      chunkCount: chunksPerRound,
      difficulty: 16,
      deadline: farFuture,
      nextChunk: roundId < newestRound ? chunksPerRound : counts.claimed % chunksPerRound,
      submittedCount: 0
    })

  const onChain = (entry: Remembered) =>
    new OnChainSubmission({
      roundId: entry.submission.roundId,
      chunkId: entry.submission.chunkId,
      miner: identity.miner,
      cid: entry.submission.cid,
      gradientHash: entry.submission.gradientHash,
      powNonce: entry.submission.powNonce,
      blockNumber: entry.receipt.blockNumber,
      completed: entry.completed,
      txHash: entry.receipt.txHash,
      blockHash: entry.receipt.blockHash,
      // The soak's chain keeps no block times: nothing reads them without a verifier.
      blockTime: 0
    })

  const revert = (errorName: string, args: ReadonlyArray<string>) =>
    new ChainRevertError({ message: `soak chain reverted with ${errorName}(${args.join(", ")})`, errorName, args: [...args] })

  const chain = Layer.succeed(Chain)(Chain.of({
    identity: Effect.succeed(identity),
    fingerprint: Effect.succeed(new ChainFingerprint({ genesisHash: sha256("soak genesis"), registryCodeHash: sha256("soak code") })),
    rounds: Effect.sync(() => [roundInfo(newestRound)]),
    getRound: (roundId) => Effect.sync(() => (roundId <= newestRound ? Option.some(roundInfo(roundId)) : Option.none())),
    claimChunk: () => Effect.die("the soak's task source claims without the chain"),
    ownClaims: Effect.succeed([]),
    submissionsBetween: () => Effect.succeed([]),
    recordVerdict: () => Effect.die("the soak does not verify"),
    getVerdict: () => Effect.succeed(Option.none()),
    isVerifier: Effect.succeed(false),
    getFinalization: () => Effect.succeed(Option.none()),
    submitGradient: (submission, beforeBroadcast) =>
      Effect.gen(function*() {
        if (hits(++calls.submit, faults.submitRetryEvery)) {
          return yield* new NetworkError({ message: "soak: connection reset before signing", service: "chain" })
        }
        const key = chunkKey(submission.roundId, submission.chunkId)
        if (submissions.has(key)) {
          return yield* revert("AlreadySubmitted", [submission.roundId.toString(), String(submission.chunkId)])
        }
        const nonce = accountNonce
        const hash = sha256(`soak tx ${nonce} ${key} ${submission.gradientHash}`)
        const signed = new SignedTransaction({ hash, raw: `0x${nonce.toString(16).padStart(2, "0")}`, nonce })
        if (beforeBroadcast !== undefined) yield* beforeBroadcast(signed)
        accountNonce++
        blockNumber++
        const receipt = new SubmissionReceipt({
          txHash: hash,
          blockNumber,
          blockHash: blockHashOf(blockNumber),
          alreadySubmitted: false
        })
        forgetOldRounds(submission.roundId)
        submissions.set(key, { submission, receipt, completed: false })
        transactions.set(hash, receipt)
        counts.submitted++
        return receipt
      }),
    transactionStatus: (signed) =>
      Effect.sync((): TransactionStatus => {
        const receipt = transactions.get(signed.hash)
        if (receipt !== undefined) return { _tag: "Mined", success: true, receipt }
        return signed.nonce < accountNonce ? { _tag: "Dropped" } : { _tag: "Pending" }
      }),
    rebroadcast: () => Effect.void,
    completeChunk: (roundId, chunkId) =>
      Effect.gen(function*() {
        const entry = submissions.get(chunkKey(roundId, chunkId))
        if (entry === undefined) return yield* revert("ChunkNotClaimed", [roundId.toString(), String(chunkId)])
        if (!entry.completed) {
          entry.completed = true
          blockNumber++
        }
        return true
      }),
    getSubmission: (roundId, chunkId) =>
      Effect.sync(() => Option.map(Option.fromUndefinedOr(submissions.get(chunkKey(roundId, chunkId))), onChain)),
    ownSubmissions: Effect.sync(() => [...submissions.values()].map(onChain)),
    head: Effect.sync(() => ({ number: blockNumber, hash: blockHashOf(blockNumber) })),
    blockHash: (block) => Effect.sync(() => (block >= 1n && block <= blockNumber ? Option.some(blockHashOf(block)) : Option.none())),
    now: Effect.sync(() => Math.floor(Date.now() / 1000))
  }))

  const taskSource = Layer.succeed(TaskSource)(TaskSource.of({
    // The soak's chunks never fail for good: nothing is handed back.
    retry: () => Effect.void,
    next: Effect.sync(() => {
      calls.next++
      const claim = counts.claimed++
      return new Task({
        roundId: roundOf(claim),
        chunkId: claim % chunksPerRound,
        modelCid,
        spec,
        difficulty: 16,
        leaseExpiry: farFuture,
        deadline: farFuture
      })
    }),
    complete: (task) =>
      Effect.gen(function*() {
        if (hits(++calls.complete, faults.completeFailEvery)) {
          return yield* new NetworkError({ message: "soak: task completion lost", service: "chain" })
        }
        const entry = submissions.get(chunkKey(task.roundId, task.chunkId))
        if (entry !== undefined) entry.completed = true
        return true
      })
  }))

  const gradientStore = Layer.succeed(GradientStore)(GradientStore.of({
    add: (bytes) =>
      Effect.gen(function*() {
        if (hits(++calls.add, faults.uploadRollbackEvery)) {
          return yield* new ValidationError({ message: "soak: the store refused the content" })
        }
        counts.pinned++
        counts.pinnedBytes += bytes.byteLength
        return rawCidV0(bytes)
      }),
    computeCid: (bytes) => Effect.sync(() => rawCidV0(bytes)),
    get: (cid) => Effect.fail(new ValidationError({ message: `soak: the store keeps no content (${cid})`, field: "cid" })),
    unpin: () => Effect.sync(() => void counts.unpinned++),
    // Pins are counted, not kept: recovery of a fresh data dir finds none to reconcile.
    pins: Effect.succeed([]),
    gc: Effect.succeed(0)
  }))

  const trainer = Layer.succeed(Trainer)(Trainer.of({
    profile: Effect.succeed(testProfile),
    train: (task) =>
      Effect.gen(function*() {
        if (hits(++calls.train, faults.trainFailEvery)) {
          return yield* new ResourceError({ message: "soak: out of memory while training", resource: "memory" })
        }
        const envelope = testEnvelope(task.roundId, task.chunkId, envelopeBytes)
        return new TrainingResult({ envelope, gradientHash: sha256Hex(envelope), lossBefore: 2.3, lossAfter: 1.9, steps: 10 })
      })
  }))

  const zeroHash = `0x${"0".repeat(64)}`
  const powSolver = Layer.succeed(PowSolver)(PowSolver.of({
    solve: () => Effect.succeed(new PowSolution({ nonce: 0n, powHash: zeroHash, hashes: 1 }))
  }))

  const state = (): SoakPortsState => ({
    ...counts,
    rememberedSubmissions: submissions.size,
    rememberedTransactions: transactions.size,
    blockNumber,
    round: newestRound
  })

  return { chain, taskSource, gradientStore, trainer, powSolver, state }
}
