import { assert } from "@effect/vitest"
import { Effect, Option, type Scope } from "effect"
import { type MiningError, ResourceError } from "../../src/domain/errors.ts"
import type { SignedTransaction } from "../../src/domain/mining.ts"
import { VerdictRecord } from "../../src/domain/verification.ts"
import { sha256Hex } from "../../src/layers/sha256Hex.ts"
import {
  type ChainSubject,
  failureOf,
  hex32,
  prove,
  type Register,
  revertOf,
  setupOf
} from "./chainContract.ts"

/**
 * The Chain contract, verifier side (DESIGN.md "Verification"): `submissionsBetween`, `recordVerdict`, `getVerdict`
 * and `isVerifier`, run against ViemChain on anvil and the TestChain fake like the rest of chainContract.ts, so the
 * fake keeps the contract's verdict rules and the order and range of the submissions a verifier follows.
 */

const report = (seed: string) => sha256Hex(`report ${seed}`)
const lower = (texts: ReadonlyArray<string>) => texts.map((t) => t.toLowerCase())

export const chainVerdictContract = <R>(
  register: Register<R>,
  makeSubject: Effect.Effect<ChainSubject, MiningError, R | Scope.Scope>
) => {
  const setup = setupOf(makeSubject)

  register("submissionsBetween: every miner's submissions in the inclusive block range, in chain order, completed as now", () =>
    Effect.gen(function*() {
      const { chain, id, round, subject } = yield* setup
      const start = (yield* chain.head).number
      assert.deepStrictEqual(yield* chain.submissionsBetween(0n, start), [])

      const a = yield* chain.claimChunk(round.roundId)
      const ra = yield* chain.submitGradient(yield* prove(id, round, a.chunkId, "ours a"))
      const theirs = yield* subject.submitAs(round.roundId, "theirs")
      assert.notStrictEqual(theirs.miner.toLowerCase(), id.miner.toLowerCase())
      const c = yield* chain.claimChunk(round.roundId)
      const rc = yield* chain.submitGradient(yield* prove(id, round, c.chunkId, "ours c"))
      assert.isTrue(yield* chain.completeChunk(round.roundId, a.chunkId))
      const head = (yield* chain.head).number

      const all = yield* chain.submissionsBetween(start, head)
      assert.deepStrictEqual(all.map((s) => [s.chunkId, s.blockNumber]), [
        [a.chunkId, ra.blockNumber],
        [theirs.chunkId, theirs.blockNumber],
        [c.chunkId, rc.blockNumber]
      ])
      assert.deepStrictEqual(lower(all.map((s) => s.miner)), lower([id.miner, theirs.miner, id.miner]))
      assert.deepStrictEqual(all.map((s) => s.completed), [true, false, false])
      assert.strictEqual(all[1]!.gradientHash.toLowerCase(), theirs.gradientHash.toLowerCase())
      // The same values getSubmission reads, and only ours in ownSubmissions.
      for (const s of all) assert.deepStrictEqual(s, Option.getOrThrow(yield* chain.getSubmission(s.roundId, s.chunkId)))
      assert.deepStrictEqual((yield* chain.ownSubmissions).map((s) => s.chunkId), [a.chunkId, c.chunkId])

      // Inclusive at both ends; nothing outside; an empty or reversed range is empty.
      assert.deepStrictEqual(
        (yield* chain.submissionsBetween(theirs.blockNumber, theirs.blockNumber)).map((s) => s.chunkId),
        [theirs.chunkId]
      )
      assert.deepStrictEqual(
        (yield* chain.submissionsBetween(ra.blockNumber, rc.blockNumber)).map((s) => s.chunkId),
        [a.chunkId, theirs.chunkId, c.chunkId]
      )
      assert.deepStrictEqual(
        (yield* chain.submissionsBetween(ra.blockNumber + 1n, rc.blockNumber - 1n)).map((s) => s.chunkId),
        [theirs.chunkId]
      )
      assert.deepStrictEqual(yield* chain.submissionsBetween(rc.blockNumber + 1n, head + 10n), [])
      assert.deepStrictEqual(yield* chain.submissionsBetween(rc.blockNumber, ra.blockNumber), [])
    }), 60_000)

  register("a submission carries its block's timestamp: the chain time it was mined at, alike from every read", () =>
    Effect.gen(function*() {
      const { chain, id, round, subject } = yield* setup
      const a = yield* chain.claimChunk(round.roundId)
      yield* chain.submitGradient(yield* prove(id, round, a.chunkId, "timed a"))
      // The submission's block is the newest, and `now` is the newest block's time.
      const timeA = yield* chain.now
      yield* subject.advanceTime(1000)
      const theirs = yield* subject.submitAs(round.roundId, "timed theirs")
      const timeTheirs = yield* chain.now

      const all = yield* chain.submissionsBetween(0n, (yield* chain.head).number)
      assert.deepStrictEqual(all.map((s) => [s.chunkId, s.blockTime]), [[a.chunkId, timeA], [theirs.chunkId, timeTheirs]])
      // Anvil's blocks also carry wall time: a minute of slack over the 1000 s moved.
      assert.isTrue(timeTheirs - timeA >= 1000 && timeTheirs - timeA < 1060, `${timeTheirs} - ${timeA}`)
      assert.strictEqual(Option.getOrThrow(yield* chain.getSubmission(round.roundId, a.chunkId)).blockTime, timeA)
      assert.strictEqual(Option.getOrThrow(yield* chain.getSubmission(round.roundId, theirs.chunkId)).blockTime, timeTheirs)
      assert.deepStrictEqual((yield* chain.ownSubmissions).map((s) => s.blockTime), [timeA])
    }), 60_000)

  register("isVerifier / recordVerdict: NotVerifier until the owner allows the account, then recorded once, read back by getVerdict", () =>
    Effect.gen(function*() {
      const { chain, id, round, subject } = yield* setup
      const theirs = yield* subject.submitAs(round.roundId, "judged")
      const record = new VerdictRecord({ roundId: round.roundId, chunkId: theirs.chunkId, verdict: 19, reportHash: report("a") })

      assert.isFalse(yield* chain.isVerifier)
      const notVerifier = yield* revertOf(chain.recordVerdict(record))
      assert.strictEqual(notVerifier.errorName, "NotVerifier")
      assert.deepStrictEqual(lower(notVerifier.args), lower([id.miner]))
      assert.isTrue(Option.isNone(yield* chain.getVerdict(round.roundId, theirs.chunkId, id.miner)))

      yield* subject.setVerifier(id.miner, true)
      assert.isTrue(yield* chain.isVerifier)
      const headBefore = (yield* chain.head).number
      const receipt = yield* chain.recordVerdict(record)
      assert.match(receipt.txHash, hex32)
      assert.isTrue(receipt.blockNumber > headBefore)
      assert.isFalse(receipt.alreadySubmitted)
      assert.deepStrictEqual(yield* chain.blockHash(receipt.blockNumber), Option.some(receipt.blockHash))

      const stored = Option.getOrThrow(yield* chain.getVerdict(round.roundId, theirs.chunkId, id.miner))
      assert.strictEqual(stored.roundId, round.roundId)
      assert.strictEqual(stored.chunkId, theirs.chunkId)
      assert.strictEqual(stored.verifier.toLowerCase(), id.miner.toLowerCase())
      assert.strictEqual(stored.verdict, 19)
      assert.strictEqual(stored.reportHash.toLowerCase(), record.reportHash)
      // Another verifier's verdict on the chunk, and ours on another chunk: none.
      assert.isTrue(Option.isNone(yield* chain.getVerdict(round.roundId, theirs.chunkId, theirs.miner)))
      assert.isTrue(Option.isNone(yield* chain.getVerdict(round.roundId, theirs.chunkId + 1, id.miner)))

      const again = yield* revertOf(chain.recordVerdict(new VerdictRecord({ ...record, verdict: 1, reportHash: report("b") })))
      assert.strictEqual(again.errorName, "AlreadyVerified")
      assert.deepStrictEqual(
        lower(again.args),
        lower([round.roundId.toString(), String(theirs.chunkId), id.miner, "19", record.reportHash])
      )
      assert.strictEqual(Option.getOrThrow(yield* chain.getVerdict(round.roundId, theirs.chunkId, id.miner)).verdict, 19)

      // Disallowed again by the owner: refused.
      yield* subject.setVerifier(id.miner, false)
      assert.isFalse(yield* chain.isVerifier)
      const own = yield* chain.claimChunk(round.roundId)
      yield* chain.submitGradient(yield* prove(id, round, own.chunkId, "own"))
      assert.strictEqual(
        (yield* revertOf(chain.recordVerdict(new VerdictRecord({ ...record, chunkId: own.chunkId })))).errorName,
        "NotVerifier"
      )
    }), 60_000)

  register("recordVerdict reverts NoSubmission for a chunk without one and InvalidVerdict outside 1, 2, 16..20", () =>
    Effect.gen(function*() {
      const { chain, id, round, subject } = yield* setup
      yield* subject.setVerifier(id.miner, true)
      const noSubmission = yield* revertOf(
        chain.recordVerdict(new VerdictRecord({ roundId: round.roundId, chunkId: 2, verdict: 1, reportHash: report("none") }))
      )
      assert.strictEqual(noSubmission.errorName, "NoSubmission")
      assert.deepStrictEqual(noSubmission.args, [round.roundId.toString(), "2"])
      assert.strictEqual(
        (yield* revertOf(chain.recordVerdict(
          new VerdictRecord({ roundId: round.roundId + 1000n, chunkId: 0, verdict: 1, reportHash: report("none") })
        ))).errorName,
        "NoSubmission"
      )

      const theirs = yield* subject.submitAs(round.roundId, "invalid")
      for (const bad of [0, 3, 15, 21]) {
        // The domain's schema refuses these codes; the chain must refuse them too, whoever sends them.
        const invalid = { roundId: round.roundId, chunkId: theirs.chunkId, verdict: bad, reportHash: report("x") } as never
        const revert = yield* revertOf(chain.recordVerdict(invalid))
        assert.strictEqual(revert.errorName, "InvalidVerdict")
        assert.deepStrictEqual(revert.args, [String(bad)])
      }
      assert.isTrue(Option.isNone(yield* chain.getVerdict(round.roundId, theirs.chunkId, id.miner)))
      yield* chain.recordVerdict(new VerdictRecord({ roundId: round.roundId, chunkId: theirs.chunkId, verdict: 20, reportHash: report("x") }))
      assert.strictEqual(Option.getOrThrow(yield* chain.getVerdict(round.roundId, theirs.chunkId, id.miner)).verdict, 20)
    }), 60_000)

  register("a verdict follows the submission's signing rules: beforeBroadcast first, Pending when never sent, Mined once re-sent, nonces shared with submissions", () =>
    Effect.gen(function*() {
      const { chain, id, round, subject } = yield* setup
      yield* subject.setVerifier(id.miner, true)
      const first = yield* subject.submitAs(round.roundId, "first")
      const second = yield* subject.submitAs(round.roundId, "second")
      const headBefore = yield* chain.head

      let signed: SignedTransaction | undefined
      const crash = new ResourceError({ message: "crashed before the broadcast", resource: "process" })
      const record = new VerdictRecord({ roundId: round.roundId, chunkId: first.chunkId, verdict: 1, reportHash: report("crash") })
      yield* failureOf(chain.recordVerdict(record, (s) => Effect.andThen(Effect.sync(() => void (signed = s)), Effect.fail(crash))))
      assert.match(signed!.hash, hex32)
      assert.deepStrictEqual(yield* chain.head, headBefore)
      assert.deepStrictEqual(yield* chain.transactionStatus(signed!), { _tag: "Pending" })
      assert.isTrue(Option.isNone(yield* chain.getVerdict(round.roundId, first.chunkId, id.miner)))

      yield* chain.rebroadcast(signed!)
      const status = yield* chain.transactionStatus(signed!)
      if (status._tag !== "Mined") return assert.fail(`the re-sent verdict is ${status._tag}, not Mined`)
      assert.isTrue(status.success)
      assert.strictEqual(status.receipt.txHash, signed!.hash)
      assert.strictEqual(Option.getOrThrow(yield* chain.getVerdict(round.roundId, first.chunkId, id.miner)).verdict, 1)

      // The next write of the account, a submission, then a verdict, take the following nonces.
      const own = yield* chain.claimChunk(round.roundId)
      let submitted: SignedTransaction | undefined
      yield* chain.submitGradient(yield* prove(id, round, own.chunkId, "own"), (s) => Effect.sync(() => void (submitted = s)))
      let next: SignedTransaction | undefined
      const receipt = yield* chain.recordVerdict(
        new VerdictRecord({ roundId: round.roundId, chunkId: second.chunkId, verdict: 2, reportHash: report("next") }),
        (s) => Effect.sync(() => void (next = s))
      )
      assert.isTrue(submitted!.nonce > signed!.nonce)
      assert.strictEqual(next!.nonce, submitted!.nonce + 1)
      assert.strictEqual(receipt.txHash, next!.hash)
      assert.deepStrictEqual(yield* chain.transactionStatus(next!), { _tag: "Mined", success: true, receipt })
    }), 60_000)
}
