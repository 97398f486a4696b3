import { Clock, Effect, Option } from "effect"
import { ChainRevertError, ValidationError } from "../../domain/errors.ts"
import { ChunkClaim, type MinerIdentity, OnChainSubmission, RoundInfo, type Submission, SubmissionReceipt } from "../../domain/mining.ts"
import { bytesToHex, challenge, meetsDifficulty, powHash } from "../../domain/pow.ts"
import { sha256Hex } from "../../layers/sha256Hex.ts"
import { rawCidV0 } from "../TestGradientStore.ts"
import type { Blocks } from "./blocks.ts"
import { revert, roundFinalized, roundNotOpen } from "./reverts.ts"
import { type CompletedChunk, defaultLeaseSeconds, defaultTestRound, type RecordedSubmission, type TestChainOptions, type TestRound } from "./types.ts"

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
  /** Whose it is: this miner's, or another's (`submitAs`). */
  readonly miner: string
  completed: boolean
  completedIn: bigint | undefined
}

/** Chain time: effect's `Clock` in Unix seconds, so `TestClock` drives leases and deadlines. */
export const chainNow = Effect.map(Clock.currentTimeMillis, (ms) => Math.floor(ms / 1000))

const chunkKey = (roundId: bigint, chunkId: number) => `${roundId}:${chunkId}`

/**
 * The MiningRegistry's storage and rules in memory (contracts/MiningRegistry.sol is the reference): rounds, leases,
 * submissions and completions, each remembering the block that wrote it so a rewind can forget it. Every claim on
 * this chain is the miner's own; another miner only appears through `submitAs`, which claims and submits at once.
 */
export const makeRegistry = (deps: {
  readonly identity: MinerIdentity
  readonly options: TestChainOptions
  readonly blocks: Blocks
  /** Whether the owner finalized the round (testChain/finalizations.ts): closed to claims and submissions. */
  readonly isFinalized: (roundId: bigint) => boolean
}) => {
  const { blocks, identity, isFinalized, options } = deps
  const leaseSeconds = options.leaseSeconds ?? defaultLeaseSeconds
  const requireClaim = options.requireClaim ?? false
  const checkPow = options.checkPow ?? false
  const defaultModelCid = rawCidV0(new TextEncoder().encode("r3mes test model"))

  const isOurs = (miner: string) => miner.toLowerCase() === identity.miner.toLowerCase()
  const rounds = new Map<bigint, RoundState>()
  const claims = new Map<string, ClaimState>()
  const byChunk = new Map<string, SubmissionState>()
  const recordedSubmissions: Array<RecordedSubmission> = []
  /** Every miner's submissions, in block order. */
  const allSubmissions: Array<SubmissionState> = []
  const recordedClaims: Array<ChunkClaim> = []
  const completed: Array<CompletedChunk & { readonly block: bigint }> = []

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

  /** The seeded rounds, as at genesis; an invalid one is a defect of the test. */
  const seedRounds = (): string | undefined => {
    for (const round of options.rounds ?? [defaultTestRound]) {
      const problem = roundProblem(round)
      if (problem !== undefined) return `TestChain seed round: ${problem.message}`
      addRound(round, 0n)
    }
    return undefined
  }

  const openRound = Effect.fnUntraced(function*(round: TestRound) {
    const problem = roundProblem(round)
    if (problem !== undefined) return yield* problem
    const now = yield* chainNow
    if (round.deadline <= now) {
      return yield* revert("RoundExpired", [round.roundId.toString(), String(round.deadline)])
    }
    return roundInfo(addRound(round, blocks.mine(now)))
  })

  /** Never-claimed chunks in order, then the lowest one whose lease expired without a submission. */
  const freeChunk = (round: RoundState, now: number): number | undefined => {
    // Skipping submitted chunks only matters when requireClaim is off: the contract cannot reach that state.
    while (round.nextChunk < round.chunkCount && byChunk.has(chunkKey(round.roundId, round.nextChunk))) {
      round.nextChunk += 1
    }
    if (round.nextChunk < round.chunkCount) return round.nextChunk++
    for (let i = 0; i < round.chunkCount; i++) {
      const claim = claims.get(chunkKey(round.roundId, i))
      if (!byChunk.has(chunkKey(round.roundId, i)) && (claim === undefined || claim.leaseExpiry < now)) return i
    }
    return undefined
  }

  const claimChunk = Effect.fnUntraced(function*(roundId: bigint) {
    const now = yield* chainNow
    const round = rounds.get(roundId)
    if (round === undefined) return yield* roundNotOpen(roundId)
    if (isFinalized(roundId)) return yield* roundFinalized(roundId)
    if (now > round.deadline) return yield* revert("RoundExpired", [roundId.toString(), String(round.deadline)])
    const chunkId = freeChunk(round, now)
    if (chunkId === undefined) return yield* revert("NoFreeChunk", [roundId.toString()])
    const leaseExpiry = now + leaseSeconds
    const block = blocks.mine(now)
    const claim = new ChunkClaim({
      roundId,
      chunkId,
      miner: identity.miner,
      leaseExpiry,
      txHash: sha256Hex(
        ["claimChunk", identity.chainId, identity.registry.toLowerCase(), identity.miner.toLowerCase(), roundId, chunkId,
          block, blocks.fork()].join(":")
      )
    })
    claims.set(chunkKey(roundId, chunkId), { leaseExpiry, claim, block })
    recordedClaims.push(claim)
    return claim
  })

  const checkWork = Effect.fnUntraced(function*(submission: Submission, difficulty: number) {
    const hash = yield* Effect.try({
      try: () => powHash(challenge({ ...identity, ...submission }), submission.powNonce),
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

  /**
   * submitGradient's first checks, whoever submits: RoundNotOpen, AlreadySubmitted, RoundNotOpen again for a
   * finalized round (after AlreadySubmitted, so a replayed submission learns it is recorded), RoundExpired.
   */
  const openChunk = (roundId: bigint, chunkId: number, now: number): RoundState | ChainRevertError => {
    const round = rounds.get(roundId)
    if (round === undefined) return roundNotOpen(roundId)
    const existing = byChunk.get(chunkKey(roundId, chunkId))
    if (existing !== undefined) {
      return revert("AlreadySubmitted", [
        roundId.toString(),
        String(chunkId),
        existing.miner,
        existing.recorded.gradientHash.toLowerCase()
      ])
    }
    if (isFinalized(roundId)) return roundFinalized(roundId)
    if (now > round.deadline) return revert("RoundExpired", [roundId.toString(), String(round.deadline)])
    return round
  }

  /** The contract's submitGradient checks, in its order, without changing anything: the round the chunk is of. */
  const check = Effect.fnUntraced(function*(submission: Submission) {
    const now = yield* chainNow
    const { chunkId, roundId } = submission
    const round = openChunk(roundId, chunkId, now)
    if (round instanceof ChainRevertError) return yield* round
    const key = chunkKey(roundId, chunkId)
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

  /** Records a submission that passed `check`, mined with `receipt`; this miner's unless `miner` says otherwise. */
  const record = (submission: Submission, receipt: SubmissionReceipt, miner: string = identity.miner): void => {
    const recorded: RecordedSubmission = {
      roundId: submission.roundId,
      chunkId: submission.chunkId,
      cid: submission.cid,
      gradientHash: submission.gradientHash,
      powNonce: submission.powNonce,
      receipt
    }
    const state: SubmissionState = { recorded, miner, completed: false, completedIn: undefined }
    byChunk.set(chunkKey(submission.roundId, submission.chunkId), state)
    rounds.get(submission.roundId)!.submittedCount += 1
    allSubmissions.push(state)
    if (isOurs(miner)) recordedSubmissions.push(recorded)
  }

  /**
   * Another miner claims `submission.chunkId` and submits it in one block (no proof of work checked): RoundNotOpen,
   * AlreadySubmitted, RoundExpired, and ChunkNotClaimed for a chunk outside the round or leased to this miner.
   */
  const submitAs = Effect.fnUntraced(function*(miner: string, submission: Submission) {
    const now = yield* chainNow
    const { chunkId, roundId } = submission
    // Their claim comes first, and a finalized round refuses it.
    if (rounds.has(roundId) && isFinalized(roundId)) return yield* roundFinalized(roundId)
    const round = openChunk(roundId, chunkId, now)
    if (round instanceof ChainRevertError) return yield* round
    const key = chunkKey(roundId, chunkId)
    const lease = claims.get(key)
    if (chunkId >= round.chunkCount || (lease !== undefined && lease.leaseExpiry >= now)) {
      return yield* revert("ChunkNotClaimed", [roundId.toString(), String(chunkId)], "the chunk is leased to this miner")
    }
    // Their claim, as the contract hands chunks out in order: the next never-claimed one is taken.
    if (chunkId === round.nextChunk) round.nextChunk += 1
    const block = blocks.mine(now)
    const txHash = sha256Hex(
      ["submitAs", identity.chainId, identity.registry.toLowerCase(), miner.toLowerCase(), roundId, chunkId,
        submission.gradientHash.toLowerCase(), block, blocks.fork()].join(":")
    )
    record(submission, new SubmissionReceipt({ txHash, blockNumber: block, blockHash: blocks.hashOf(block)!, alreadySubmitted: false }), miner)
    return onChain(byChunk.get(key)!)
  })

  /** Idempotent (true each time); ChunkNotClaimed for a chunk with no submission. */
  const complete = Effect.fnUntraced(function*(roundId: bigint, chunkId: number) {
    const submission = byChunk.get(chunkKey(roundId, chunkId))
    if (submission === undefined || !isOurs(submission.miner)) {
      return yield* revert("ChunkNotClaimed", [roundId.toString(), String(chunkId)])
    }
    if (!submission.completed) {
      const block = blocks.mine(yield* chainNow)
      submission.completed = true
      submission.completedIn = block
      completed.push({ roundId, chunkId, block })
    }
    return true
  })

  const onChain = (state: SubmissionState) =>
    new OnChainSubmission({
      roundId: state.recorded.roundId,
      chunkId: state.recorded.chunkId,
      miner: state.miner,
      cid: state.recorded.cid,
      gradientHash: state.recorded.gradientHash,
      powNonce: state.recorded.powNonce,
      blockNumber: state.recorded.receipt.blockNumber,
      completed: state.completed,
      txHash: state.recorded.receipt.txHash,
      blockHash: state.recorded.receipt.blockHash,
      blockTime: blocks.timeOf(state.recorded.receipt.blockNumber)!
    })

  const ownClaims = Effect.map(chainNow, (now) =>
    [...claims.values()]
      .filter(({ claim, leaseExpiry }) => {
        const round = rounds.get(claim.roundId)
        return round !== undefined && round.deadline >= now && leaseExpiry >= now && !isFinalized(claim.roundId) &&
          !byChunk.has(chunkKey(claim.roundId, claim.chunkId))
      })
      .map(({ claim }) => claim))

  /** Forgets what the blocks after `target` wrote. */
  const rewindTo = (target: bigint): void => {
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
    for (let i = allSubmissions.length - 1; i >= 0; i--) {
      if (allSubmissions[i]!.recorded.receipt.blockNumber > target) allSubmissions.splice(i, 1)
    }
    for (let i = recordedSubmissions.length - 1; i >= 0; i--) {
      if (recordedSubmissions[i]!.receipt.blockNumber > target) recordedSubmissions.splice(i, 1)
    }
    for (let i = completed.length - 1; i >= 0; i--) if (completed[i]!.block > target) completed.splice(i, 1)
  }

  /** The registry as at genesis: the seeded rounds only. */
  const reset = (): void => {
    rounds.clear()
    claims.clear()
    byChunk.clear()
    recordedSubmissions.length = 0
    allSubmissions.length = 0
    recordedClaims.length = 0
    completed.length = 0
    seedRounds()
  }

  return {
    seedRounds,
    openRound,
    claimChunk,
    check,
    record,
    submitAs,
    complete,
    ownClaims,
    rewindTo,
    reset,
    rounds: () => [...rounds.values()].map(roundInfo),
    getRound: (roundId: bigint) => Option.map(Option.fromUndefinedOr(rounds.get(roundId)), roundInfo),
    getSubmission: (roundId: bigint, chunkId: number) =>
      Option.map(Option.fromUndefinedOr(byChunk.get(chunkKey(roundId, chunkId))), onChain),
    /** Every miner's submissions mined in `fromBlock`..`toBlock`, in block order. */
    submissionsBetween: (fromBlock: bigint, toBlock: bigint) =>
      allSubmissions
        .filter((s) => s.recorded.receipt.blockNumber >= fromBlock && s.recorded.receipt.blockNumber <= toBlock)
        .map(onChain),
    hasSubmission: (roundId: bigint, chunkId: number) => byChunk.has(chunkKey(roundId, chunkId)),
    ownSubmissions: () => recordedSubmissions.map((r) => onChain(byChunk.get(chunkKey(r.roundId, r.chunkId))!)),
    recordedSubmissions: () => [...recordedSubmissions],
    recordedClaims: () => [...recordedClaims],
    completedChunks: () => completed.map(({ chunkId, roundId }): CompletedChunk => ({ roundId, chunkId }))
  }
}

export type Registry = ReturnType<typeof makeRegistry>
