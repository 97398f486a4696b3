import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { closingOf, pseudoGradientOf, type Standing, standingOf } from "../../src/domain/learningRound.ts"
import { OnChainSubmission, Task } from "../../src/domain/mining.ts"
import { trainableParameters } from "../../src/domain/training/model.ts"
import { canonicalRoundSpec, modelHash, type RoundSpecV2 } from "../../src/domain/training/spec.ts"
import { verdictCodes } from "../../src/domain/verification.ts"
import { sha256Hex } from "../../src/layers/sha256Hex.ts"
import { testTrainingResult } from "../../src/testing/TestTrainer.ts"
import { type GradientOptions, honestGradient, smallLearningSpec } from "../support/roundGradients.ts"

/** The rules of a learning round (src/domain/learningRound.ts, DESIGN.md "Learning rounds"). */

const { accepted_exact, accepted_within_tolerance, rejected_malformed, rejected_recompute_mismatch } = verdictCodes
const alice = "0x1111111111111111111111111111111111111111"
const bob = "0x2222222222222222222222222222222222222222"
const spec = smallLearningSpec(3)

const submissionOf = (bytes: Uint8Array, overrides: Partial<{ chunkId: number; miner: string; gradientHash: string }> = {}) =>
  new OnChainSubmission({
    roundId: 5n,
    chunkId: overrides.chunkId ?? 2,
    miner: overrides.miner ?? alice,
    cid: "QmNotFetchedHere",
    gradientHash: overrides.gradientHash ?? sha256Hex(bytes),
    powNonce: 0n,
    blockNumber: 1n,
    completed: false,
    txHash: sha256Hex("tx"),
    blockHash: sha256Hex("block"),
    blockTime: 1
  })

const gradient = (options: Partial<GradientOptions> = {}, of: RoundSpecV2 = spec) =>
  honestGradient(of, { roundId: 5n, chunkId: 2, miner: alice, ...options })

/** pseudoGradientOf's ValidationError message for these bytes (fails the test when it succeeds). */
const refusal = (bytes: Uint8Array, submission = submissionOf(bytes)) =>
  Effect.map(Effect.flip(pseudoGradientOf(spec, submission, bytes)), (e) => {
    assert.strictEqual(e._tag, "ValidationError")
    assert.match(e.hint ?? "", /leaves it out/)
    return e.message
  })

describe("standingOf", () => {
  it("a round with no verifiers takes every submission, whatever was recorded on it", () => {
    assert.strictEqual(standingOf([], 0), "accepted")
    assert.strictEqual(standingOf([rejected_malformed], 0), "accepted")
  })

  it("accepted when a verifier accepted it and none rejected it", () => {
    assert.strictEqual(standingOf([accepted_exact], 1), "accepted")
    assert.strictEqual(standingOf([accepted_within_tolerance], 2), "accepted")
    assert.strictEqual(standingOf([accepted_exact, accepted_within_tolerance], 2), "accepted")
  })

  it("a rejection wins over acceptances, in any order", () => {
    assert.strictEqual(standingOf([accepted_exact, rejected_recompute_mismatch], 2), "rejected")
    assert.strictEqual(standingOf([rejected_recompute_mismatch, accepted_exact], 2), "rejected")
    assert.strictEqual(standingOf([rejected_malformed], 1), "rejected")
    // A code the contract does not define is no acceptance.
    assert.strictEqual(standingOf([0], 1), "rejected")
  })

  it("unjudged while none of the spec's verifiers recorded a verdict", () => {
    assert.strictEqual(standingOf([], 1), "unjudged")
    assert.strictEqual(standingOf([], 3), "unjudged")
  })
})

describe("closingOf", () => {
  const judged: ReadonlyArray<Standing> = ["accepted", "rejected", "accepted"]

  it("complete once every chunk has a submission and each is judged, before the deadline", () => {
    assert.strictEqual(closingOf({ chunkCount: 3, standings: judged, now: 10, deadline: 100 }), "complete")
    assert.strictEqual(closingOf({ chunkCount: 3, standings: ["rejected", "rejected", "rejected"], now: 10, deadline: 100 }), "complete")
    // Complete wins over the deadline: the round was whole when it closed.
    assert.strictEqual(closingOf({ chunkCount: 3, standings: judged, now: 500, deadline: 100 }), "complete")
  })

  it("open while a chunk has no submission or a submission is unjudged, until the deadline", () => {
    assert.isUndefined(closingOf({ chunkCount: 3, standings: ["accepted", "accepted"], now: 10, deadline: 100 }))
    assert.isUndefined(closingOf({ chunkCount: 3, standings: ["accepted", "unjudged", "accepted"], now: 10, deadline: 100 }))
    assert.isUndefined(closingOf({ chunkCount: 3, standings: [], now: 99, deadline: 100 }))
    assert.strictEqual(closingOf({ chunkCount: 3, standings: ["accepted", "unjudged"], now: 101, deadline: 100 }), "deadline")
    assert.strictEqual(closingOf({ chunkCount: 3, standings: [], now: 5000, deadline: 100 }), "deadline")
  })

  // The contract takes submissions while block.timestamp <= deadline (submitGradient reverts RoundExpired only
  // after it): a round closed in its deadline second can get a submission mined after the coordinator read its
  // ledger and before its finalization, which `aggregate --check` then counts and the finalization did not.
  it("not at the deadline second itself: the contract still takes submissions then", () => {
    assert.isUndefined(closingOf({ chunkCount: 3, standings: ["accepted"], now: 100, deadline: 100 }))
    assert.strictEqual(closingOf({ chunkCount: 3, standings: ["accepted"], now: 101, deadline: 100 }), "deadline")
  })
})

describe("pseudoGradientOf", () => {
  it.effect("a good envelope: the model's trainable tensors, in order, with the submitted values", () =>
    Effect.gen(function*() {
      const bytes = yield* gradient()
      const read = yield* pseudoGradientOf(spec, submissionOf(bytes), bytes)
      assert.strictEqual(read.chunkId, 2)
      const params = trainableParameters(spec.model)
      assert.deepStrictEqual(read.tensors.map((t) => [t.name, [...t.shape]]), params.map((p) => [p.name, [...p.shape]]))
      for (const t of read.tensors) {
        assert.instanceOf(t.values, Float32Array)
        assert.isTrue(t.values.some((v) => v !== 0))
      }
      // Hashes and addresses compare case-insensitively, as the chain and the verifier do.
      const upper = submissionOf(bytes, { gradientHash: `0x${sha256Hex(bytes).slice(2).toUpperCase()}`, miner: alice.toUpperCase().replace("0X", "0x") })
      assert.deepStrictEqual((yield* pseudoGradientOf(spec, upper, bytes)).tensors, read.tensors)
    }))

  it.effect("content whose sha256 is not the on-chain gradient hash", () =>
    Effect.gen(function*() {
      const bytes = yield* gradient()
      const other = yield* gradient({ chunkId: 3 })
      assert.match(yield* refusal(bytes, submissionOf(bytes, { gradientHash: sha256Hex(other) })), /chunk 2: content hash 0x[0-9a-f]{64} is not the submitted/)
    }))

  it.effect("bytes that are not an R3GR envelope, or a truncated one", () =>
    Effect.gen(function*() {
      assert.match(yield* refusal(new TextEncoder().encode("not a gradient")), /^chunk 2: /)
      const bytes = yield* gradient()
      assert.match(yield* refusal(bytes.subarray(0, bytes.length - 4)), /^chunk 2: /)
    }))

  it.effect("an encoding other than pseudo-gradient (weights, momentum)", () =>
    Effect.gen(function*() {
      assert.match(yield* refusal(yield* gradient({ header: { encoding: "weights" } })), /encoding is weights/)
      assert.match(yield* refusal(yield* gradient({ header: { encoding: "momentum" } })), /encoding is momentum/)
    }))

  it.effect("a header naming another round, chunk, miner or model", () =>
    Effect.gen(function*() {
      assert.match(yield* refusal(yield* gradient({ header: { round_id: "4" } })), /round_id 4 is not round 5/)
      assert.match(yield* refusal(yield* gradient({ header: { chunk_id: 3 } })), /chunk_id 3 is not chunk 2/)
      assert.match(yield* refusal(yield* gradient({ miner: bob })), /miner .* is not the submitter/)
      // Another start (init seed) is another model, even with the same architecture.
      const otherStart = smallLearningSpec(4)
      assert.notStrictEqual(modelHash(otherStart), modelHash(spec))
      assert.match(yield* refusal(yield* gradient({}, otherStart)), /model_hash .* is not the round's model/)
    }))

  it.effect("a tensor list that is not the model's trainable parameters", () =>
    Effect.gen(function*() {
      const params = trainableParameters(spec.model)
      // The test trainer's toy tensors: a well-formed, honest envelope of another model.
      const task = new Task({ roundId: 5n, chunkId: 2, modelCid: "", spec: canonicalRoundSpec(spec), difficulty: 16, leaseExpiry: 1e9, deadline: 1e9 })
      const toy = (yield* testTrainingResult(task, alice)).envelope
      assert.match(yield* refusal(toy), /2 tensors, the model trains 4/)
      assert.match(yield* refusal(yield* gradient({ tensors: params.slice(0, 3) })), /3 tensors, the model trains 4/)
      const swapped = [params[1]!, params[0]!, ...params.slice(2)]
      assert.match(yield* refusal(yield* gradient({ tensors: swapped })), /tensor 0 is fc1.bias float32 \[8\], expected fc1.weight float32 \[784,8\]/)
      const transposed = [{ name: "fc1.weight", shape: [8, 784] }, ...params.slice(1)]
      assert.match(yield* refusal(yield* gradient({ tensors: transposed })), /tensor 0 is fc1.weight float32 \[8,784\]/)
    }))

  // aggregate() refuses non-finite values (a NaN has no place in a sort), so a NaN that pseudoGradientOf lets through
  // fails the whole round's aggregate instead of leaving one submission out: one miner blocks every round without
  // verifiers (see round-coordinator.test.ts).
  it.effect("a gradient with a non-finite value is not a pseudo-gradient of the round", () =>
    Effect.gen(function*() {
      const bytes = yield* gradient({ scale: Number.NaN })
      assert.match(yield* refusal(bytes), /non-finite|NaN/)
      const infinite = yield* gradient({ scale: Number.POSITIVE_INFINITY })
      assert.match(yield* refusal(infinite), /non-finite|Infinity/)
    }))
})
