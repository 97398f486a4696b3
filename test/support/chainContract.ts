import { assert } from "@effect/vitest"
import { Context, Effect, Layer, Option, type Scope } from "effect"
import { type MiningError, ResourceError } from "../../src/domain/errors.ts"
import { type MinerIdentity, type RoundInfo, type SignedTransaction, Submission } from "../../src/domain/mining.ts"
import { challenge, meetsDifficulty, powHash, solveReference } from "../../src/domain/pow.ts"
import { sha256Hex } from "../../src/layers/sha256Hex.ts"
import { Chain } from "../../src/services/Chain.ts"
import type { RoundAuthority } from "../../src/services/RoundAuthority.ts"

/**
 * The Chain contract: the behaviours of the port that the core relies on (SubmissionJudge, Recovery, ChainAudit,
 * transactionSteps, ChainTaskSource), one suite run against ViemChain on a real anvil and against the TestChain fake,
 * so a test passing on the fake means something for the real one. Reverts are the contract's, by name: the adapter
 * translates, the core decides (an AlreadySubmitted of our own gradient is a success only in SubmissionJudge).
 */
export interface ChainSubject {
  /**
   * The port for the miner's account on a fresh registry that has one open round: the only round, at difficulty 16,
   * with `subjectRound.chunkCount` chunks, closing an hour from now, leases of `subjectRound.leaseSeconds`.
   */
  readonly layer: Layer.Layer<Chain, MiningError>
  /** Opens a round as the registry's owner: difficulty 16, `chunkCount` chunks, closing `deadlineIn` seconds from now. */
  readonly openRound: (chunkCount: number, deadlineIn: number) => Effect.Effect<bigint, MiningError>
  /** Moves chain time forward by `seconds` and mines a block that carries it. */
  readonly advanceTime: (seconds: number) => Effect.Effect<void, MiningError>
  /**
   * Replaces the chain with a new one at the same address (a devnet restarted without its state): new genesis, the
   * registry as new with its first round open, nothing claimed or submitted. The built port keeps working on it.
   */
  readonly reset: Effect.Effect<void, MiningError>
  /** The owner's setVerifier: allows or disallows `address` to record verdicts. */
  readonly setVerifier: (address: string, allowed: boolean) => Effect.Effect<void, MiningError>
  /**
   * Another miner (not the port's account) claims the next free chunk of `roundId` and submits a gradient for it (seed
   * `seed`); what it put on chain.
   */
  readonly submitAs: (roundId: bigint, seed: string) => Effect.Effect<OtherSubmission, MiningError>
  /** The RoundAuthority port as the registry's owner, on the same registry (chainRoundContract.ts). */
  readonly authority: Layer.Layer<RoundAuthority, MiningError>
  /** The RoundAuthority port as an account that is not the owner. */
  readonly outsider: Layer.Layer<RoundAuthority, MiningError>
}

/**
 * The status once the node has taken re-sent bytes in: anvil's automine answers `eth_sendRawTransaction` before the
 * block is mined, so on a loaded machine the first look can still say Pending (seen in CI). An in-memory chain
 * answers at once.
 */
export const settledStatus = (chain: Chain["Service"], signed: SignedTransaction) =>
  Effect.gen(function*() {
    let status = yield* chain.transactionStatus(signed)
    for (let i = 0; i < 250 && status._tag === "Pending"; i++) {
      yield* Effect.sleep("20 millis")
      status = yield* chain.transactionStatus(signed)
    }
    return status
  })

/** A submission by another miner (`ChainSubject.submitAs`). */
export interface OtherSubmission {
  readonly chunkId: number
  readonly miner: string
  readonly gradientHash: string
  readonly blockNumber: bigint
}

export const subjectRound = { chunkCount: 4, difficulty: 16, deadlineIn: 3600, leaseSeconds: 600 } as const

/** What @effect/vitest's `it.effect` / `it.live` are: a test registration for effects needing R. */
export type Register<R> = <A, E>(name: string, self: () => Effect.Effect<A, E, R | Scope.Scope>, timeout?: number) => void

export const CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
const OTHER_CID = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
export const gradientHash = (seed: string) => sha256Hex(`gradient ${seed}`)
export const hex32 = /^0x[0-9a-f]{64}$/i

/** A submission with a real proof of work at the round's difficulty (the reference solver: ~0.1 s at 16). */
export const prove = Effect.fnUntraced(function*(
  id: MinerIdentity,
  round: RoundInfo,
  chunkId: number,
  seed: string,
  cid: string = CID
) {
  const hash = gradientHash(seed)
  const solution = yield* solveReference({ ...id, roundId: round.roundId, chunkId, gradientHash: hash, cid, difficulty: round.difficulty })
  return new Submission({ roundId: round.roundId, chunkId, cid, gradientHash: hash, powNonce: solution.nonce })
})

/** The same submission with the first nonce whose proof of work falls short of the round's difficulty. */
const withWrongWork = (id: MinerIdentity, round: RoundInfo, submission: Submission): Submission => {
  const bytes = challenge({ ...id, ...submission })
  let nonce = 0n
  while (meetsDifficulty(powHash(bytes, nonce), round.difficulty)) nonce++
  return new Submission({ ...submission, powNonce: nonce })
}

/** The failure of `effect`; a success is a defect of the test. */
export const failureOf = <A>(effect: Effect.Effect<A, MiningError>) =>
  Effect.flip(effect).pipe(Effect.catch(() => Effect.die(new Error("expected a failure, got a success"))))

/** The revert `effect` fails with; a success or another failure is a defect of the test. */
export const revertOf = <A>(effect: Effect.Effect<A, MiningError>) =>
  Effect.flatMap(failureOf(effect), (error) =>
    error._tag === "ChainRevertError"
      ? Effect.succeed(error)
      : Effect.die(new Error(`expected a revert, got ${error._tag}: ${error.message}`)))

/** The subject, its port built once for the test, the miner's identity and the open round. */
export const setupOf = <R>(makeSubject: Effect.Effect<ChainSubject, MiningError, R | Scope.Scope>) =>
  Effect.gen(function*() {
    const subject = yield* makeSubject
    const chain = Context.get(yield* Layer.build(subject.layer), Chain)
    const id = yield* chain.identity
    const rounds = yield* chain.rounds
    assert.strictEqual(rounds.length, 1)
    return { subject, chain, id, round: rounds[0]! }
  })

export const chainContract = <R>(
  register: Register<R>,
  makeSubject: Effect.Effect<ChainSubject, MiningError, R | Scope.Scope>
) => {
  const setup = setupOf(makeSubject)

  register("identity: chain id, registry and miner, the same on every read", () =>
    Effect.gen(function*() {
      const { chain, id } = yield* setup
      assert.isTrue(Number.isSafeInteger(id.chainId) && id.chainId > 0)
      assert.match(id.registry, /^0x[0-9a-fA-F]{40}$/)
      assert.match(id.miner, /^0x[0-9a-fA-F]{40}$/)
      assert.deepStrictEqual(yield* chain.identity, id)
    }))

  register("fingerprint: stable on a chain, its genesis is block 0; after a reset it differs and the chain holds nothing of ours", () =>
    Effect.gen(function*() {
      const { chain, id, round, subject } = yield* setup
      const before = yield* chain.fingerprint
      assert.match(before.genesisHash, hex32)
      assert.match(before.registryCodeHash, hex32)
      assert.deepStrictEqual(Option.getOrUndefined(yield* chain.blockHash(0n)), before.genesisHash)
      const claim = yield* chain.claimChunk(round.roundId)
      yield* chain.submitGradient(yield* prove(id, round, claim.chunkId, "reset"))
      assert.deepStrictEqual(yield* chain.fingerprint, before)

      yield* subject.reset
      const after = yield* chain.fingerprint
      assert.notStrictEqual(after.genesisHash, before.genesisHash)
      assert.deepStrictEqual(yield* chain.identity, id)
      assert.isTrue(Option.isNone(yield* chain.getSubmission(round.roundId, claim.chunkId)))
      assert.deepStrictEqual(yield* chain.ownSubmissions, [])
      assert.deepStrictEqual(yield* chain.ownClaims, [])
      const [fresh] = yield* chain.rounds
      assert.strictEqual(fresh?.nextChunk, 0)
      assert.strictEqual(fresh?.submittedCount, 0)
    }), 60_000)

  register("rounds / getRound: oldest first, with the spec whose sha256 is specHash; none for an unknown round", () =>
    Effect.gen(function*() {
      const { chain, round, subject } = yield* setup
      assert.strictEqual(round.chunkCount, subjectRound.chunkCount)
      assert.strictEqual(round.difficulty, subjectRound.difficulty)
      assert.strictEqual(round.nextChunk, 0)
      assert.strictEqual(round.submittedCount, 0)
      assert.strictEqual(round.specHash.toLowerCase(), sha256Hex(round.spec))
      const now = yield* chain.now
      assert.isAbove(round.deadline, now)
      assert.deepStrictEqual(yield* chain.getRound(round.roundId), Option.some(round))

      const second = yield* subject.openRound(2, 100)
      const rounds = yield* chain.rounds
      assert.deepStrictEqual(rounds.map((r) => r.roundId), [round.roundId, second])
      assert.strictEqual(rounds[1]!.chunkCount, 2)
      assert.deepStrictEqual(yield* chain.getRound(second), Option.some(rounds[1]!))
      assert.isTrue(Option.isNone(yield* chain.getRound(second + 1000n)))
    }))

  register("claimChunk: distinct chunks leased to us; NoFreeChunk when all are leased, RoundExpired after the deadline, RoundNotOpen for an unknown round", () =>
    Effect.gen(function*() {
      const { chain, id, subject } = yield* setup
      const roundId = yield* subject.openRound(2, 100)
      const now = yield* chain.now
      const first = yield* chain.claimChunk(roundId)
      const second = yield* chain.claimChunk(roundId)
      assert.notStrictEqual(first.chunkId, second.chunkId)
      for (const claim of [first, second]) {
        assert.strictEqual(claim.roundId, roundId)
        assert.isTrue(claim.chunkId >= 0 && claim.chunkId < 2)
        assert.strictEqual(claim.miner.toLowerCase(), id.miner.toLowerCase())
        assert.isAtLeast(claim.leaseExpiry, now + subjectRound.leaseSeconds)
        assert.match(claim.txHash, hex32)
      }
      assert.notStrictEqual(first.txHash, second.txHash)
      assert.strictEqual((yield* chain.getRound(roundId)).pipe(Option.getOrThrow).nextChunk, 2)

      assert.strictEqual((yield* revertOf(chain.claimChunk(roundId))).errorName, "NoFreeChunk")
      yield* subject.advanceTime(101)
      assert.strictEqual((yield* revertOf(chain.claimChunk(roundId))).errorName, "RoundExpired")
      assert.strictEqual((yield* revertOf(chain.claimChunk(roundId + 1000n))).errorName, "RoundNotOpen")
    }))

  register("leases and deadlines: an expired lease is claimed again (lowest chunk first) and its holder's submission reverts LeaseExpired; past the deadline, RoundExpired", () =>
    Effect.gen(function*() {
      const { chain, id, subject } = yield* setup
      const roundId = yield* subject.openRound(2, 3 * subjectRound.leaseSeconds)
      const round = Option.getOrThrow(yield* chain.getRound(roundId))
      yield* chain.claimChunk(roundId)
      yield* chain.claimChunk(roundId)
      yield* subject.advanceTime(subjectRound.leaseSeconds + 1)
      const again = yield* chain.claimChunk(roundId)
      assert.strictEqual(again.chunkId, 0)
      const expired = yield* revertOf(chain.submitGradient(yield* prove(id, round, 1, "expired")))
      assert.strictEqual(expired.errorName, "LeaseExpired")
      assert.deepStrictEqual(expired.args.slice(0, 2), [roundId.toString(), "1"])

      yield* subject.advanceTime(2 * subjectRound.leaseSeconds)
      const late = yield* revertOf(chain.submitGradient(yield* prove(id, round, 0, "late")))
      assert.strictEqual(late.errorName, "RoundExpired")
      assert.deepStrictEqual(late.args, [roundId.toString(), String(round.deadline)])
      assert.deepStrictEqual(yield* chain.ownClaims, [])
    }))

  register("ownClaims: our leased chunks without a submission, until their lease runs out", () =>
    Effect.gen(function*() {
      const { chain, id, round, subject } = yield* setup
      assert.deepStrictEqual(yield* chain.ownClaims, [])
      const a = yield* chain.claimChunk(round.roundId)
      const b = yield* chain.claimChunk(round.roundId)
      const c = yield* chain.claimChunk(round.roundId)
      yield* chain.submitGradient(yield* prove(id, round, b.chunkId, "b"))
      const sortById = (claims: ReadonlyArray<{ readonly chunkId: number }>) =>
        [...claims].sort((x, y) => x.chunkId - y.chunkId)
      assert.deepStrictEqual(sortById(yield* chain.ownClaims), sortById([a, c]))
      yield* subject.advanceTime(subjectRound.leaseSeconds + 1)
      assert.deepStrictEqual(yield* chain.ownClaims, [])
    }))

  register("submitGradient: a receipt with the block and tx hash; the chain records it; the second submission reverts AlreadySubmitted", () =>
    Effect.gen(function*() {
      const { chain, id, round } = yield* setup
      const claim = yield* chain.claimChunk(round.roundId)
      const submission = yield* prove(id, round, claim.chunkId, "first")
      const receipt = yield* chain.submitGradient(submission)
      assert.match(receipt.txHash, hex32)
      assert.isTrue(receipt.blockNumber > 0n)
      assert.isFalse(receipt.alreadySubmitted)
      assert.deepStrictEqual(yield* chain.blockHash(receipt.blockNumber), Option.some(receipt.blockHash))
      const onChain = Option.getOrThrow(yield* chain.getSubmission(round.roundId, claim.chunkId))
      assert.strictEqual(onChain.miner.toLowerCase(), id.miner.toLowerCase())
      assert.strictEqual(onChain.cid, submission.cid)
      assert.strictEqual(onChain.gradientHash.toLowerCase(), submission.gradientHash)
      assert.strictEqual(onChain.powNonce, submission.powNonce)
      assert.strictEqual(onChain.blockNumber, receipt.blockNumber)
      assert.strictEqual(onChain.txHash, receipt.txHash)
      assert.strictEqual(onChain.blockHash, receipt.blockHash)
      assert.isFalse(onChain.completed)
      assert.strictEqual(Option.getOrThrow(yield* chain.getRound(round.roundId)).submittedCount, 1)

      // The same submission again, and another gradient for the chunk: both the contract's AlreadySubmitted, naming
      // the recorded gradient, so the core can tell its own resent work from a conflict.
      for (const again of [submission, yield* prove(id, round, claim.chunkId, "second", OTHER_CID)]) {
        const revert = yield* revertOf(chain.submitGradient(again))
        assert.strictEqual(revert.errorName, "AlreadySubmitted")
        assert.deepStrictEqual(revert.args.map((a) => a.toLowerCase()), [
          round.roundId.toString(),
          String(claim.chunkId),
          id.miner.toLowerCase(),
          submission.gradientHash
        ])
      }
      assert.strictEqual(Option.getOrThrow(yield* chain.getSubmission(round.roundId, claim.chunkId)).cid, CID)
    }))

  register("submitGradient reverts InsufficientWork for a nonce short of the difficulty, ChunkNotClaimed for a chunk not leased to us", () =>
    Effect.gen(function*() {
      const { chain, id, round } = yield* setup
      const claim = yield* chain.claimChunk(round.roundId)
      const valid = yield* prove(id, round, claim.chunkId, "work")
      const short = yield* revertOf(chain.submitGradient(withWrongWork(id, round, valid)))
      assert.strictEqual(short.errorName, "InsufficientWork")
      assert.strictEqual(short.args[1], String(round.difficulty))

      const unclaimed = yield* revertOf(chain.submitGradient(yield* prove(id, round, claim.chunkId + 1, "unclaimed")))
      assert.strictEqual(unclaimed.errorName, "ChunkNotClaimed")
      assert.deepStrictEqual(unclaimed.args, [round.roundId.toString(), String(claim.chunkId + 1)])
      const outside = yield* revertOf(chain.submitGradient(yield* prove(id, round, round.chunkCount, "outside")))
      assert.strictEqual(outside.errorName, "ChunkNotClaimed")
      assert.strictEqual((yield* revertOf(chain.submitGradient(new Submission({ ...valid, roundId: 999n })))).errorName, "RoundNotOpen")

      assert.deepStrictEqual(yield* chain.ownSubmissions, [])
      assert.strictEqual(yield* chain.submitGradient(valid).pipe(Effect.map((r) => r.alreadySubmitted)), false)
    }))

  register("beforeBroadcast runs once with the signed transaction before it is sent; when it fails nothing is sent and the nonce is kept", () =>
    Effect.gen(function*() {
      const { chain, id, round } = yield* setup
      const first = yield* chain.claimChunk(round.roundId)
      const second = yield* chain.claimChunk(round.roundId)
      const headBefore = yield* chain.head

      const refused: Array<SignedTransaction> = []
      const journalFull = new ResourceError({ message: "journal full", resource: "disk" })
      const failed = yield* failureOf(chain.submitGradient(
        yield* prove(id, round, first.chunkId, "refused"),
        (signed) => Effect.andThen(Effect.sync(() => refused.push(signed)), Effect.fail(journalFull))
      ))
      assert.strictEqual(failed, journalFull)
      assert.strictEqual(refused.length, 1)
      assert.match(refused[0]!.hash, hex32)
      assert.match(refused[0]!.raw, /^0x[0-9a-f]+$/i)
      assert.deepStrictEqual(yield* chain.head, headBefore)
      assert.isTrue(Option.isNone(yield* chain.getSubmission(round.roundId, first.chunkId)))
      assert.deepStrictEqual(yield* chain.transactionStatus(refused[0]!), { _tag: "Pending" })

      const seen: Array<{ readonly signed: SignedTransaction; readonly head: bigint }> = []
      const receipt = yield* chain.submitGradient(
        yield* prove(id, round, second.chunkId, "accepted"),
        (signed) => Effect.map(chain.head, (head) => void seen.push({ signed, head: head.number }))
      )
      assert.strictEqual(seen.length, 1)
      assert.strictEqual(seen[0]!.head, headBefore.number, "beforeBroadcast ran after the transaction was sent")
      assert.strictEqual(seen[0]!.signed.nonce, refused[0]!.nonce, "the refused transaction consumed its nonce")
      assert.strictEqual(seen[0]!.signed.hash, receipt.txHash)
      // Its nonce now used by another transaction, the refused one can never be mined: dropped, and re-sending it
      // changes nothing.
      assert.deepStrictEqual(yield* chain.transactionStatus(refused[0]!), { _tag: "Dropped" })
      const head = yield* chain.head
      yield* chain.rebroadcast(refused[0]!)
      assert.deepStrictEqual(yield* chain.head, head)
      assert.deepStrictEqual(yield* chain.transactionStatus(refused[0]!), { _tag: "Dropped" })
      // The first chunk is still ours to submit.
      assert.isFalse((yield* chain.submitGradient(yield* prove(id, round, first.chunkId, "later"))).alreadySubmitted)
    }))

  register("a signed submission that never left (a crash between journal and broadcast) is Pending; the same bytes re-sent are mined", () =>
    Effect.gen(function*() {
      const { chain, id, round } = yield* setup
      const claim = yield* chain.claimChunk(round.roundId)
      const submission = yield* prove(id, round, claim.chunkId, "crashed")
      let signed: SignedTransaction | undefined
      const crash = new ResourceError({ message: "crashed before the broadcast", resource: "process" })
      yield* failureOf(chain.submitGradient(submission, (s) => Effect.andThen(Effect.sync(() => void (signed = s)), Effect.fail(crash))))
      assert.deepStrictEqual(yield* chain.transactionStatus(signed!), { _tag: "Pending" })

      yield* chain.rebroadcast(signed!)
      const status = yield* settledStatus(chain, signed!)
      if (status._tag !== "Mined") return assert.fail(`the re-sent transaction is ${status._tag}, not Mined`)
      assert.isTrue(status.success)
      const { receipt } = status
      assert.strictEqual(receipt.txHash, signed!.hash)
      assert.deepStrictEqual(yield* chain.blockHash(receipt.blockNumber), Option.some(receipt.blockHash))
      const onChain = Option.getOrThrow(yield* chain.getSubmission(round.roundId, claim.chunkId))
      assert.strictEqual(onChain.txHash, signed!.hash)
      assert.strictEqual(onChain.gradientHash.toLowerCase(), submission.gradientHash)
      assert.strictEqual(onChain.powNonce, submission.powNonce)
    }))

  register("a write after re-sent bytes were mined takes the next nonce at once (the re-sent ones used theirs)", () =>
    Effect.gen(function*() {
      const { chain, id, round } = yield* setup
      const first = yield* chain.claimChunk(round.roundId)
      const second = yield* chain.claimChunk(round.roundId)
      let signed: SignedTransaction | undefined
      const crash = new ResourceError({ message: "crashed before the broadcast", resource: "process" })
      yield* failureOf(chain.submitGradient(
        yield* prove(id, round, first.chunkId, "resent"),
        (s) => Effect.andThen(Effect.sync(() => void (signed = s)), Effect.fail(crash))
      ))
      yield* chain.rebroadcast(signed!)
      assert.strictEqual((yield* settledStatus(chain, signed!))._tag, "Mined")

      // One attempt, no retry: a writer still counting on the re-sent nonce would sign over it, be told "nonce too
      // low", and fail the write as retryable.
      let next: SignedTransaction | undefined
      const receipt = yield* chain.submitGradient(
        yield* prove(id, round, second.chunkId, "after"),
        (s) => Effect.sync(() => void (next = s))
      )
      assert.strictEqual(next!.nonce, signed!.nonce + 1)
      assert.strictEqual(receipt.txHash, next!.hash)
      assert.isFalse(receipt.alreadySubmitted)
      assert.strictEqual(Option.getOrThrow(yield* chain.getSubmission(round.roundId, second.chunkId)).txHash, next!.hash)
    }))

  register("transactionStatus of a mined submission is Mined with its receipt; rebroadcasting it succeeds and changes nothing", () =>
    Effect.gen(function*() {
      const { chain, id, round } = yield* setup
      const claim = yield* chain.claimChunk(round.roundId)
      let signed: SignedTransaction | undefined
      const receipt = yield* chain.submitGradient(
        yield* prove(id, round, claim.chunkId, "mined"),
        (s) => Effect.sync(() => void (signed = s))
      )
      assert.deepStrictEqual(yield* chain.transactionStatus(signed!), { _tag: "Mined", success: true, receipt })
      const head = yield* chain.head
      const submissions = yield* chain.ownSubmissions
      yield* chain.rebroadcast(signed!)
      assert.deepStrictEqual(yield* chain.head, head)
      assert.deepStrictEqual(yield* chain.ownSubmissions, submissions)
      assert.deepStrictEqual(yield* chain.transactionStatus(signed!), { _tag: "Mined", success: true, receipt })
    }))

  register("completeChunk: true, and true again (idempotent); ChunkNotClaimed for a chunk we did not submit", () =>
    Effect.gen(function*() {
      const { chain, id, round } = yield* setup
      const claim = yield* chain.claimChunk(round.roundId)
      const other = yield* chain.claimChunk(round.roundId)
      yield* chain.submitGradient(yield* prove(id, round, claim.chunkId, "complete"))
      assert.strictEqual((yield* revertOf(chain.completeChunk(round.roundId, other.chunkId))).errorName, "ChunkNotClaimed")
      assert.isTrue(yield* chain.completeChunk(round.roundId, claim.chunkId))
      assert.isTrue(yield* chain.completeChunk(round.roundId, claim.chunkId))
      assert.isTrue(Option.getOrThrow(yield* chain.getSubmission(round.roundId, claim.chunkId)).completed)
      assert.deepStrictEqual((yield* chain.ownSubmissions).map((s) => s.completed), [true])
    }))

  register("getSubmission: none for a chunk without one or an unknown round; ownSubmissions: exactly ours, oldest first", () =>
    Effect.gen(function*() {
      const { chain, id, round } = yield* setup
      assert.isTrue(Option.isNone(yield* chain.getSubmission(round.roundId, 0)))
      assert.isTrue(Option.isNone(yield* chain.getSubmission(round.roundId + 1000n, 0)))
      assert.deepStrictEqual(yield* chain.ownSubmissions, [])
      const a = yield* chain.claimChunk(round.roundId)
      const b = yield* chain.claimChunk(round.roundId)
      // Submitted in the other order than claimed: the list follows the chain's blocks.
      const rb = yield* chain.submitGradient(yield* prove(id, round, b.chunkId, "b"))
      const ra = yield* chain.submitGradient(yield* prove(id, round, a.chunkId, "a", OTHER_CID))
      const own = yield* chain.ownSubmissions
      assert.deepStrictEqual(own.map((s) => [s.chunkId, s.txHash, s.blockNumber]), [
        [b.chunkId, rb.txHash, rb.blockNumber],
        [a.chunkId, ra.txHash, ra.blockNumber]
      ])
      assert.deepStrictEqual(own, [
        Option.getOrThrow(yield* chain.getSubmission(round.roundId, b.chunkId)),
        Option.getOrThrow(yield* chain.getSubmission(round.roundId, a.chunkId))
      ])
      assert.isTrue(Option.isNone(yield* chain.getSubmission(round.roundId, 3)))
    }))

  register("head / blockHash agree: blockHash of the head is its hash, none past the head; now follows the blocks", () =>
    Effect.gen(function*() {
      const { chain, round, subject } = yield* setup
      const head = yield* chain.head
      assert.match(head.hash, hex32)
      assert.deepStrictEqual(yield* chain.blockHash(head.number), Option.some(head.hash))
      assert.isTrue(Option.isNone(yield* chain.blockHash(head.number + 1n)))
      assert.isTrue(Option.isNone(yield* chain.blockHash(head.number + 1000n)))

      const now = yield* chain.now
      const claim = yield* chain.claimChunk(round.roundId)
      const next = yield* chain.head
      assert.isTrue(next.number > head.number)
      assert.notStrictEqual(next.hash, head.hash)
      assert.deepStrictEqual(yield* chain.blockHash(next.number), Option.some(next.hash))
      assert.deepStrictEqual(yield* chain.blockHash(head.number), Option.some(head.hash))
      assert.isAtLeast(yield* chain.now, now)
      assert.isAtLeast(claim.leaseExpiry, now + subjectRound.leaseSeconds)

      yield* subject.advanceTime(100)
      assert.isAtLeast(yield* chain.now, now + 100)
    }))
}
