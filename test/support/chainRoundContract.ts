import { assert } from "@effect/vitest"
import { Context, Effect, Layer, Option, type Scope } from "effect"
import type { MiningError } from "../../src/domain/errors.ts"
import type { FinalizeRound } from "../../src/domain/rounds.ts"
import { VerdictRecord } from "../../src/domain/verification.ts"
import { sha256Hex } from "../../src/layers/sha256Hex.ts"
import { RoundAuthority } from "../../src/services/RoundAuthority.ts"
import { type ChainSubject, CID, hex32, prove, type Register, revertOf, setupOf } from "./chainContract.ts"

/**
 * The learning-round contract (DESIGN.md "Learning rounds"): the owner's `RoundAuthority.finalizeRound` and
 * `Chain.getFinalization`, run against ViemChain + ViemRoundAuthority on anvil and the TestChain fake +
 * TestRoundAuthority like the rest of chainContract.ts, so the fake keeps the contract's finalization rules: once,
 * owner only, accuracy at most 1_000_000 ppm, and a finalized round closed to claims and submissions but not to
 * verdicts and completions.
 */

const finalization = (roundId: bigint, seed: string, overrides: Partial<FinalizeRound> = {}): FinalizeRound => ({
  roundId,
  modelCid: CID,
  weightsHash: sha256Hex(`weights ${seed}`),
  acceptedCount: 3,
  testAccuracyPpm: 912_345,
  ...overrides
})

const authorityOf = (layer: Layer.Layer<RoundAuthority, MiningError>) =>
  Effect.map(Layer.build(layer), (context) => Context.get(context, RoundAuthority))

export const chainRoundContract = <R>(
  register: Register<R>,
  makeSubject: Effect.Effect<ChainSubject, MiningError, R | Scope.Scope>
) => {
  const setup = Effect.gen(function*() {
    const base = yield* setupOf(makeSubject)
    return { ...base, authority: yield* authorityOf(base.subject.authority) }
  })

  register("finalizeRound: recorded once with its block's time, read back by getFinalization; a second one reverts RoundAlreadyFinalized", () =>
    Effect.gen(function*() {
      const { authority, chain, round } = yield* setup
      assert.isTrue(Option.isNone(yield* chain.getFinalization(round.roundId)))
      assert.isTrue(Option.isNone(yield* chain.getFinalization(round.roundId + 1000n)))

      const headBefore = (yield* chain.head).number
      const f = finalization(round.roundId, "a")
      const receipt = yield* authority.finalizeRound(f)
      assert.match(receipt.txHash, hex32)
      assert.isTrue(receipt.blockNumber > headBefore)
      assert.deepStrictEqual(yield* chain.blockHash(receipt.blockNumber), Option.some(receipt.blockHash))
      // The finalization's block is the newest, and `now` is the newest block's time.
      const minedAt = yield* chain.now

      const stored = Option.getOrThrow(yield* chain.getFinalization(round.roundId))
      assert.strictEqual(stored.roundId, round.roundId)
      assert.strictEqual(stored.modelCid, f.modelCid)
      assert.strictEqual(stored.weightsHash.toLowerCase(), f.weightsHash)
      assert.strictEqual(stored.acceptedCount, 3)
      assert.strictEqual(stored.testAccuracyPpm, 912_345)
      assert.strictEqual(stored.finalizedAt, minedAt)

      const again = yield* revertOf(authority.finalizeRound(finalization(round.roundId, "b", { acceptedCount: 4 })))
      assert.strictEqual(again.errorName, "RoundAlreadyFinalized")
      assert.deepStrictEqual(again.args, [round.roundId.toString()])
      assert.deepStrictEqual(yield* chain.getFinalization(round.roundId), Option.some(stored))
      // The round is still listed, with what it held.
      assert.deepStrictEqual((yield* chain.rounds).map((r) => r.roundId), [round.roundId])
    }), 60_000)

  register("finalizeRound reverts NotOwner from another account, RoundNotOpen for an unknown round, InvalidAccuracy over 1_000_000 ppm", () =>
    Effect.gen(function*() {
      const { authority, chain, round, subject } = yield* setup
      const outsider = yield* authorityOf(subject.outsider)
      const notOwner = yield* revertOf(outsider.finalizeRound(finalization(round.roundId, "outsider")))
      assert.strictEqual(notOwner.errorName, "NotOwner")
      assert.deepStrictEqual(notOwner.args, [])
      // The owner check comes first, whatever else is wrong.
      assert.strictEqual(
        (yield* revertOf(outsider.finalizeRound(finalization(round.roundId + 1000n, "x", { testAccuracyPpm: 1_000_001 }))))
          .errorName,
        "NotOwner"
      )

      const unknown = yield* revertOf(
        authority.finalizeRound(finalization(round.roundId + 1000n, "unknown", { testAccuracyPpm: 1_000_001 }))
      )
      assert.strictEqual(unknown.errorName, "RoundNotOpen")
      assert.deepStrictEqual(unknown.args, [(round.roundId + 1000n).toString()])

      const invalid = yield* revertOf(authority.finalizeRound(finalization(round.roundId, "x", { testAccuracyPpm: 1_000_001 })))
      assert.strictEqual(invalid.errorName, "InvalidAccuracy")
      assert.deepStrictEqual(invalid.args, ["1000001"])
      assert.isTrue(Option.isNone(yield* chain.getFinalization(round.roundId)))

      // 100 % is the most, and allowed; none of the refusals above recorded anything.
      yield* authority.finalizeRound(finalization(round.roundId, "perfect", { testAccuracyPpm: 1_000_000, acceptedCount: 0 }))
      const stored = Option.getOrThrow(yield* chain.getFinalization(round.roundId))
      assert.strictEqual(stored.testAccuracyPpm, 1_000_000)
      assert.strictEqual(stored.acceptedCount, 0)
      assert.strictEqual(
        (yield* revertOf(authority.finalizeRound(finalization(round.roundId, "x", { testAccuracyPpm: 1_000_001 })))).errorName,
        "RoundAlreadyFinalized"
      )
    }), 60_000)

  register("a finalized round is closed: claims and new submissions revert RoundNotOpen, a replayed one AlreadySubmitted; completions and verdicts are still recorded", () =>
    Effect.gen(function*() {
      const { authority, chain, id, round, subject } = yield* setup
      const a = yield* chain.claimChunk(round.roundId)
      const submitted = yield* prove(id, round, a.chunkId, "before")
      yield* chain.submitGradient(submitted)
      const b = yield* chain.claimChunk(round.roundId)
      const late = yield* prove(id, round, b.chunkId, "after")
      const theirs = yield* subject.submitAs(round.roundId, "theirs")
      yield* subject.setVerifier(id.miner, true)
      assert.deepStrictEqual((yield* chain.ownClaims).map((c) => c.chunkId), [b.chunkId])
      const other = yield* subject.openRound(2, 3600)

      yield* authority.finalizeRound(finalization(round.roundId, "closed"))

      const claim = yield* revertOf(chain.claimChunk(round.roundId))
      assert.strictEqual(claim.errorName, "RoundNotOpen")
      assert.deepStrictEqual(claim.args, [round.roundId.toString()])
      const submit = yield* revertOf(chain.submitGradient(late))
      assert.strictEqual(submit.errorName, "RoundNotOpen")
      assert.deepStrictEqual(submit.args, [round.roundId.toString()])
      assert.isTrue(Option.isNone(yield* chain.getSubmission(round.roundId, b.chunkId)))
      // A miner replaying its own submission still learns it is recorded.
      assert.strictEqual((yield* revertOf(chain.submitGradient(submitted))).errorName, "AlreadySubmitted")
      // Our lease in the closed round is worth nothing now.
      assert.deepStrictEqual(yield* chain.ownClaims, [])

      // Completions are harmless, and recorded; a new verdict is not (the aggregate took the verdicts it had).
      assert.isTrue(yield* chain.completeChunk(round.roundId, a.chunkId))
      assert.isTrue(Option.getOrThrow(yield* chain.getSubmission(round.roundId, a.chunkId)).completed)
      const lateVerdict = yield* revertOf(chain.recordVerdict(
        new VerdictRecord({ roundId: round.roundId, chunkId: theirs.chunkId, verdict: 1, reportHash: sha256Hex("late report") })
      ))
      assert.strictEqual(lateVerdict.errorName, "RoundNotOpen")
      assert.deepStrictEqual(lateVerdict.args, [round.roundId.toString()])
      assert.isTrue(Option.isNone(yield* chain.getVerdict(round.roundId, theirs.chunkId, id.miner)))

      // Another round is not touched.
      assert.isTrue(Option.isNone(yield* chain.getFinalization(other)))
      const next = yield* chain.claimChunk(other)
      assert.strictEqual(next.roundId, other)
    }), 60_000)
}
