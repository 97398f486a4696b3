import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, Logger, Option } from "effect"
import { TestClock } from "effect/testing"
import { NetworkError, ResourceError } from "../../src/domain/errors.ts"
import { pseudoGradientOf } from "../../src/domain/learningRound.ts"
import { Submission, Task } from "../../src/domain/mining.ts"
import type { FinalizeRound } from "../../src/domain/rounds.ts"
import { decodeWeightsEnvelope, initialWeights, initialWeightsEnvelope, type ModelWeights } from "../../src/domain/training/model.ts"
import { canonicalRoundSpec, defaultRoundSpec, type RoundSpecV2 } from "../../src/domain/training/spec.ts"
import { sha256Hex } from "../../src/layers/sha256Hex.ts"
import { Chain } from "../../src/services/Chain.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { RoundAggregator } from "../../src/services/RoundAggregator.ts"
import { RoundAuthority } from "../../src/services/RoundAuthority.ts"
import { RoundCoordinator } from "../../src/services/RoundCoordinator.ts"
import { recomputeRound } from "../../src/services/rounds/recomputeRound.ts"
import { TrainingData } from "../../src/services/TrainingData.ts"
import { TestChain } from "../../src/testing/TestChain.ts"
import { TestGradientStore } from "../../src/testing/TestGradientStore.ts"
import { TestRoundAuthority } from "../../src/testing/TestRoundAuthority.ts"
import { testTrainingResult } from "../../src/testing/TestTrainer.ts"
import { TestTrainingData } from "../../src/testing/TestTrainingData.ts"
import { honestGradient, smallLearningSpec } from "../support/roundGradients.ts"
import {
  alice,
  bob,
  deadline,
  judge,
  learningRound,
  mallory,
  maxGradientBytes,
  recordVerdict,
  roundHarness,
  submitBytes,
  submitHonest
} from "../support/roundHarness.ts"

/**
 * The round coordinator (src/services/RoundCoordinator.ts, DESIGN.md "Learning rounds") on the test ports, as a
 * hostile operator sees it: miners that submit garbage, copies and huge gradients, a verifier that is late, a store
 * that loses content, an answer lost after the chain recorded the finalization, another finalizer.
 */

const judged = smallLearningSpec(11, { verifiers: [judge] })
const open = smallLearningSpec(12, { verifiers: [] })
const carolAndDave = ["0x3333333333333333333333333333333333333333", "0x4444444444444444444444444444444444444444"]
const miners = [alice, bob, mallory, ...carolAndDave]

const finalizationOf = Effect.fnUntraced(function*(roundId: bigint) {
  return Option.getOrThrow(yield* (yield* Chain).getFinalization(roundId))
})

const stepSome = Effect.gen(function*() {
  return Option.getOrThrow(yield* (yield* RoundCoordinator).step)
})
const stepNone = Effect.gen(function*() {
  const stepped = yield* (yield* RoundCoordinator).step
  assert.isTrue(Option.isNone(stepped), "the round must stay open")
})

/** Every chunk of the round submitted by a different miner, honest-looking. */
const submitAll = (spec: RoundSpecV2, roundId: bigint, chunks: ReadonlyArray<number>) =>
  Effect.forEach(chunks, (chunkId) => submitHonest(spec, miners[chunkId % miners.length]!, roundId, chunkId), { discard: true })

const weightsOf = Effect.fnUntraced(function*(spec: RoundSpecV2, cid: string) {
  const bytes = yield* (yield* GradientStore).get(cid, 64 * 1024 * 1024)
  return yield* decodeWeightsEnvelope(spec, bytes)
})

const distance = (a: ModelWeights, b: ModelWeights): number => {
  let sum = 0
  for (const [name, values] of a) {
    const other = b.get(name)!
    for (let i = 0; i < values.length; i++) sum += (values[i]! - other[i]!) ** 2
  }
  return Math.sqrt(sum)
}

describe("RoundCoordinator: when a round closes", () => {
  it.effect("with verifiers: open while a chunk is unsubmitted or unjudged; closed when all are judged, rejected ones left out", () =>
    Effect.gen(function*() {
      const coordinator = yield* RoundCoordinator
      yield* submitHonest(judged, alice, 1n, 0)
      // Chunk 1 is far from the others: were it aggregated, the weights would differ.
      yield* submitHonest(judged, bob, 1n, 1, { scale: 0.5 })
      yield* stepNone
      yield* submitHonest(judged, mallory, 1n, 2)
      yield* stepNone
      yield* recordVerdict(1n, 0, "accepted_exact")
      yield* recordVerdict(1n, 1, "rejected_recompute_mismatch")
      yield* stepNone
      yield* recordVerdict(1n, 2, "accepted_within_tolerance")

      const round = yield* stepSome
      assert.strictEqual(round.closing, "complete")
      assert.deepStrictEqual(round.accepted, [0, 2])
      assert.deepStrictEqual([round.submitted, round.rejected, round.unjudged, round.excluded.length], [3, 1, 0, 0])
      assert.deepStrictEqual(round.verdicts, { accepted_exact: 1, rejected_recompute_mismatch: 1, accepted_within_tolerance: 1 })

      const f = yield* finalizationOf(1n)
      assert.strictEqual(f.acceptedCount, 2)
      assert.strictEqual(f.testAccuracyPpm, round.testAccuracyPpm)
      assert.strictEqual(f.testAccuracyPpm, Math.round(round.test.accuracy * 1_000_000))
      assert.strictEqual(f.modelCid, round.weightsCid)
      assert.strictEqual(f.weightsHash, round.weightsHash.toLowerCase())
      // The weights envelope is pinned, under the CID the chain names, and its sha256 is the finalization's.
      const pinned = yield* (yield* TestGradientStore).pinned
      assert.include(pinned, f.modelCid)
      assert.include(pinned, round.momentum!.cid)
      const bytes = yield* (yield* GradientStore).get(f.modelCid, 64 * 1024 * 1024)
      assert.strictEqual(sha256Hex(bytes), f.weightsHash)

      // Independently: the aggregate of chunks 0 and 2 alone gives exactly these bytes.
      const chain = yield* Chain
      const store = yield* GradientStore
      const gradients = yield* Effect.forEach([0, 2], (chunkId) =>
        Effect.gen(function*() {
          const submission = Option.getOrThrow(yield* chain.getSubmission(1n, chunkId))
          return yield* pseudoGradientOf(judged, submission, yield* store.get(submission.cid, maxGradientBytes))
        }))
      const alone = yield* recomputeRound({
        roundId: 1n,
        spec: judged,
        gradients,
        fetch: store.get,
        dataset: yield* (yield* TrainingData).dataset
      })
      assert.strictEqual(sha256Hex(alone.weightsEnvelope), f.weightsHash)

      // Done once: later steps finalize nothing, and the round is reported.
      yield* stepNone
      assert.strictEqual(yield* (yield* TestRoundAuthority).calls("finalizeRound"), 1)
      assert.deepStrictEqual((yield* coordinator.closed).map((c) => c.roundId), [1n])
      const latest = Option.getOrThrow(yield* coordinator.latest)
      assert.deepStrictEqual(
        [latest.roundId, latest.acceptedCount, latest.weightsCid, latest.testLoss],
        [1n, 2, f.modelCid, round.test.loss]
      )
      assert.strictEqual(latest.testAccuracy, f.testAccuracyPpm / 1_000_000)
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, judged, 3)] }))))

  it.effect("without verifiers: closes as soon as every chunk is submitted, all of them aggregated", () =>
    Effect.gen(function*() {
      yield* submitAll(open, 1n, [0, 1])
      yield* stepNone
      yield* submitAll(open, 1n, [2])
      const round = yield* stepSome
      assert.strictEqual(round.closing, "complete")
      assert.deepStrictEqual(round.accepted, [0, 1, 2])
      assert.deepStrictEqual(round.verdicts, {})
      assert.strictEqual((yield* finalizationOf(1n)).acceptedCount, 3)
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, open, 3)] }))))

  it.effect("at the deadline it closes with what is there: unjudged submissions and missing chunks left out", () =>
    Effect.gen(function*() {
      yield* submitAll(judged, 1n, [0, 1])
      yield* recordVerdict(1n, 0, "accepted_exact")
      yield* TestClock.adjust(Duration.seconds(deadline - 10))
      yield* stepNone
      yield* TestClock.adjust(Duration.seconds(11))
      const round = yield* stepSome
      assert.strictEqual(round.closing, "deadline")
      assert.deepStrictEqual(round.accepted, [0])
      assert.deepStrictEqual([round.submitted, round.unjudged, round.rejected], [2, 1, 0])
      assert.strictEqual((yield* finalizationOf(1n)).acceptedCount, 1)
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, judged, 3)] }))))

  it.effect("without verifiers at the deadline: the chunks submitted so far", () =>
    Effect.gen(function*() {
      yield* submitAll(open, 1n, [0, 1])
      yield* TestClock.adjust(Duration.seconds(deadline + 1))
      const round = yield* stepSome
      assert.strictEqual(round.closing, "deadline")
      assert.deepStrictEqual(round.accepted, [0, 1])
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, open, 4)] }))))

  it.effect("a round whose every submission was rejected is finalized with its starting weights and 0 accepted", () =>
    Effect.gen(function*() {
      yield* submitAll(judged, 1n, [0, 1])
      yield* recordVerdict(1n, 0, "rejected_malformed")
      yield* recordVerdict(1n, 1, "rejected_no_improvement")
      const round = yield* stepSome
      assert.deepStrictEqual([round.accepted, round.rejected], [[], 2])
      const f = yield* finalizationOf(1n)
      assert.strictEqual(f.acceptedCount, 0)
      assert.strictEqual(distance(yield* weightsOf(judged, f.modelCid), initialWeights(judged)), 0)
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, judged, 2)] }))))

  it.effect("only the newest round is looked at, and a round that is not a learning round is never finalized", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust(Duration.seconds(deadline + 1))
      yield* stepNone
      assert.strictEqual(yield* (yield* TestRoundAuthority).calls("finalizeRound"), 0)
    }).pipe(Effect.provide(roundHarness({
      rounds: [learningRound(1n, open, 1), { roundId: 2n, spec: canonicalRoundSpec(defaultRoundSpec(2)), chunkCount: 1, difficulty: 16, deadline }]
    }))))

  // The contract takes submissions while block.timestamp <= deadline. A coordinator that closes in the deadline
  // second reads the ledger, and a submission mined in that same second before its finalization lands on chain
  // outside the aggregate: `aggregate --check` then counts it and disagrees with the chain. Closing only once the
  // chain's time is past the deadline (closingOf: now > deadline) leaves no such window.
  it.effect("a submission mined in the deadline second, before the finalization, does not break the recomputation", () => {
    const late = Layer.effect(
      RoundAuthority,
      Effect.gen(function*() {
        const control = yield* TestChain
        return RoundAuthority.of({
          // The miner's transaction is mined first, when the chain still takes it.
          finalizeRound: (f) =>
            Effect.ignore(control.submitAs(mallory, lateSubmission)).pipe(Effect.andThen(control.finalizeRound(f)))
        })
      })
    )
    let lateSubmission: Submission
    return Effect.gen(function*() {
      const bytes = yield* honestGradient(open, { roundId: 1n, chunkId: 2, miner: mallory })
      lateSubmission = new Submission({
        roundId: 1n,
        chunkId: 2,
        cid: yield* (yield* GradientStore).add(bytes),
        gradientHash: sha256Hex(bytes),
        powNonce: 0n
      })
      yield* submitAll(open, 1n, [0, 1])
      yield* TestClock.adjust(Duration.seconds(deadline))
      yield* (yield* RoundCoordinator).step
      yield* TestClock.adjust(Duration.seconds(1))
      yield* (yield* RoundCoordinator).step
      const check = yield* (yield* RoundAggregator).check(1n)
      assert.deepStrictEqual(check.mismatches, [])
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, open, 3)], authorityLayer: late })))
  })
})

describe("RoundCoordinator.nextRound", () => {
  const template = (aggregation: Partial<RoundSpecV2["aggregation"]> = {}, hidden = 8) =>
    smallLearningSpec(99, { verifiers: [], ...aggregation }, { model: { family: "mlp", hidden } })

  it.effect("none while the parent is open; then a child from the parent's weights and momentum, dataset_seed = its id", () =>
    Effect.gen(function*() {
      const coordinator = yield* RoundCoordinator
      assert.isTrue(Option.isNone(yield* coordinator.nextRound(2n, template())))
      yield* submitAll(open, 1n, [0, 1])
      assert.isTrue(Option.isNone(yield* coordinator.nextRound(2n, template())))
      const parent = yield* stepSome
      const f = yield* finalizationOf(1n)

      const next = Option.getOrThrow(yield* coordinator.nextRound(2n, template()))
      assert.strictEqual(next.modelCid, f.modelCid)
      assert.strictEqual(next.spec.dataset_seed, 2)
      assert.deepStrictEqual(next.spec.init, {
        parent_round: "1",
        weights_cid: f.modelCid,
        weights_sha256: f.weightsHash,
        momentum_cid: parent.momentum!.cid,
        momentum_sha256: parent.momentum!.sha256
      })
      // The template's settings, not the parent's.
      assert.deepStrictEqual(next.spec.aggregation, template().aggregation)
      // The momentum state is pinned and is what the spec names.
      const momentum = yield* (yield* GradientStore).get(parent.momentum!.cid, 64 * 1024 * 1024)
      assert.strictEqual(sha256Hex(momentum), parent.momentum!.sha256)

      // Without momentum in the template: weights only.
      const plain = Option.getOrThrow(yield* coordinator.nextRound(2n, template({ momentum: 0 })))
      assert.deepStrictEqual(plain.spec.init, { parent_round: "1", weights_cid: f.modelCid, weights_sha256: f.weightsHash })

      // Another model: a new series, from weights generated with init.seed = the round id.
      const other = Option.getOrThrow(yield* coordinator.nextRound(2n, template({}, 16)))
      assert.deepStrictEqual(other.spec.init, { seed: 2 })
      assert.strictEqual(other.spec.dataset_seed, 2)
      assert.strictEqual(other.modelCid, yield* (yield* GradientStore).computeCid(yield* initialWeightsEnvelope(other.spec)))

      // A coordinator started afresh (no memory of the momentum) names the same momentum, recomputed and pinned.
      const context = yield* Layer.build(RoundCoordinator.layer.pipe(Layer.provide(RoundAggregator.layer({ maxGradientBytes }))))
      const restarted = Context.get(context, RoundCoordinator)
      assert.deepStrictEqual(Option.getOrThrow(yield* restarted.nextRound(2n, template())).spec, next.spec)

      // The child round runs on the parent's weights, fetched and checked by sha256, and closes like any other.
      const control = yield* TestChain
      yield* control.openRound({ ...learningRound(2n, next.spec, 2), modelCid: next.modelCid })
      yield* submitAll(next.spec, 2n, [0, 1])
      const child = yield* stepSome
      assert.deepStrictEqual(child.accepted, [0, 1])
      assert.deepStrictEqual((yield* (yield* RoundAggregator).check(2n)).mismatches, [])
      assert.isTrue(Option.isSome(yield* coordinator.nextRound(3n, template())))
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, open, 2)] }))))

  it.effect("a fresh series when the parent is not a learning round, or there is none", () =>
    Effect.gen(function*() {
      const coordinator = yield* RoundCoordinator
      for (const roundId of [2n, 1n, 7n]) {
        const next = Option.getOrThrow(yield* coordinator.nextRound(roundId, template()))
        assert.deepStrictEqual(next.spec.init, { seed: Number(roundId) })
        assert.strictEqual(next.spec.dataset_seed, Number(roundId))
        assert.strictEqual(next.modelCid, yield* (yield* GradientStore).computeCid(yield* initialWeightsEnvelope(next.spec)))
      }
    }).pipe(Effect.provide(roundHarness({
      rounds: [{ roundId: 1n, spec: canonicalRoundSpec(defaultRoundSpec(1)), chunkCount: 1, difficulty: 16, deadline }]
    }))))
})

describe("RoundCoordinator: a chain that lost state", () => {
  it.effect("a finalization and submissions the chain lost are read again: the round closes anew when its chunks are back", () =>
    Effect.gen(function*() {
      const chain = yield* TestChain
      const before = (yield* (yield* Chain).head).number
      yield* submitAll(open, 1n, [0, 1, 2])
      yield* stepSome
      assert.isTrue(Option.isSome(yield* (yield* Chain).getFinalization(1n)))
      // A devnet restarted from a dump older than the submissions and the finalization.
      yield* chain.rewindTo(before)
      assert.isTrue(Option.isNone(yield* (yield* Chain).getFinalization(1n)))
      yield* submitAll(open, 1n, [0, 1])
      yield* stepNone
      yield* submitAll(open, 1n, [2])
      const again = yield* stepSome
      assert.deepStrictEqual(again.accepted, [0, 1, 2])
      assert.strictEqual((yield* finalizationOf(1n)).weightsHash, again.weightsHash.toLowerCase())
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, open, 3)] }))))
})

describe("RoundAggregator.check", () => {
  it.effect("reproduces the finalization; recomputing twice gives the same bytes", () =>
    Effect.gen(function*() {
      const aggregator = yield* RoundAggregator
      yield* submitAll(judged, 1n, [0, 1, 2])
      yield* recordVerdict(1n, 0, "accepted_exact")
      yield* recordVerdict(1n, 1, "accepted_exact")
      yield* recordVerdict(1n, 2, "rejected_wrong_task")
      const notYet = yield* Effect.flip(aggregator.check(1n))
      assert.match(notYet.message, /not finalized yet/)
      yield* stepSome

      const check = yield* aggregator.check(1n)
      assert.deepStrictEqual(check.mismatches, [])
      assert.deepStrictEqual(check.recomputed.accepted, [0, 1])
      const round = Option.getOrThrow(yield* (yield* Chain).getRound(1n))
      const first = yield* aggregator.aggregate(yield* aggregator.ledger(round, judged))
      const second = yield* aggregator.aggregate(yield* aggregator.ledger(round, judged))
      assert.deepStrictEqual(second.envelopes, first.envelopes)
      assert.strictEqual(sha256Hex(first.envelopes[0]!), check.finalization.weightsHash)

      assert.match((yield* Effect.flip(aggregator.check(9n))).message, /does not exist/)
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, judged, 3)] }))))

  // The check must be able to fail: a finalization that is not what the chain and content give is named field by field.
  it.effect("a finalization of other weights, count or accuracy is reported as mismatches", () =>
    Effect.gen(function*() {
      yield* submitAll(judged, 1n, [0, 1, 2])
      for (const chunkId of [0, 1, 2]) yield* recordVerdict(1n, chunkId, "accepted_exact")
      const honest = yield* (yield* RoundAggregator).aggregate(
        yield* (yield* RoundAggregator).ledger(Option.getOrThrow(yield* (yield* Chain).getRound(1n)), judged)
      )
      yield* (yield* TestChain).finalizeRound({
        roundId: 1n,
        modelCid: "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn",
        weightsHash: sha256Hex("other weights"),
        acceptedCount: 2,
        testAccuracyPpm: honest.report.testAccuracyPpm + 1
      })
      const check = yield* (yield* RoundAggregator).check(1n)
      assert.strictEqual(check.mismatches.length, 4, check.mismatches.join("; "))
      assert.match(check.mismatches.join("; "), /weights hash .* ≠ .*; weights CID .* ≠ .*; accepted 3 ≠ 2; test accuracy/)
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, judged, 3)] }))))

  // A verdict that came after the finalization would change what `check` recomputes (the ledger it reads is the
  // chain's now): the contract refuses it (RoundNotOpen), so a round closed at its deadline stays reproducible.
  it.effect("a verdict after the finalization is refused, and the recomputation still reproduces it", () =>
    Effect.gen(function*() {
      yield* submitAll(judged, 1n, [0, 1])
      yield* recordVerdict(1n, 0, "accepted_exact")
      yield* TestClock.adjust(Duration.seconds(deadline + 1))
      assert.deepStrictEqual((yield* stepSome).accepted, [0])
      const late = yield* Effect.flip(recordVerdict(1n, 1, "accepted_exact"))
      assert.strictEqual(late._tag === "ChainRevertError" ? late.errorName : late._tag, "RoundNotOpen")
      assert.deepStrictEqual((yield* (yield* RoundAggregator).check(1n)).mismatches, [])
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, judged, 2)] }))))
})

describe("RoundCoordinator: the finalization's answer", () => {
  it.effect("lost after the chain recorded it: the next step does not finalize twice and takes the chain's as done", () =>
    Effect.gen(function*() {
      const authority = yield* TestRoundAuthority
      yield* submitAll(open, 1n, [0, 1])
      const lost = yield* Effect.flip((yield* RoundCoordinator).step)
      assert.strictEqual(lost._tag, "NetworkError")
      const f = yield* finalizationOf(1n)
      yield* stepNone
      yield* stepNone
      assert.strictEqual(yield* authority.calls("finalizeRound"), 1)
      assert.deepStrictEqual(yield* finalizationOf(1n), f)
      assert.deepStrictEqual((yield* (yield* RoundAggregator).check(1n)).mismatches, [])
      // Whoever finalized it, the newest finalized round is this one.
      assert.strictEqual(Option.getOrThrow(yield* (yield* RoundCoordinator).latest).weightsCid, f.modelCid)
    }).pipe(Effect.provide(roundHarness({
      rounds: [learningRound(1n, open, 2)],
      authority: {
        faults: { finalizeRound: { failAfter: { times: 1, error: new NetworkError({ message: "receipt lost" }) } } }
      }
    }))))

  it.effect("an adapter that resends and meets RoundAlreadyFinalized with the same weights: success", () => {
    const resending = Layer.effect(
      RoundAuthority,
      Effect.gen(function*() {
        const control = yield* TestChain
        return RoundAuthority.of({ finalizeRound: (f) => control.finalizeRound(f).pipe(Effect.andThen(control.finalizeRound(f))) })
      })
    )
    return Effect.gen(function*() {
      yield* submitAll(open, 1n, [0, 1])
      const round = yield* stepSome
      assert.strictEqual((yield* finalizationOf(1n)).modelCid, round.weightsCid)
      assert.strictEqual((yield* (yield* RoundCoordinator).closed).length, 1)
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, open, 2)], authorityLayer: resending })))
  })

  it.effect("finalized by someone else with other weights: logged, the chain's kept, never finalized again", () => {
    const logs: Array<string> = []
    const collector = Logger.make((options) => {
      logs.push((options.message as ReadonlyArray<unknown>).map(String).join(" "))
    })
    const other: Pick<FinalizeRound, "modelCid" | "weightsHash"> = {
      modelCid: "QmOtherWeightsOtherWeightsOtherWeightsOtherWeights",
      weightsHash: sha256Hex("someone else's weights")
    }
    const raced = Layer.effect(
      RoundAuthority,
      Effect.gen(function*() {
        const control = yield* TestChain
        return RoundAuthority.of({
          finalizeRound: (f) =>
            Effect.ignore(control.finalizeRound({ ...f, ...other })).pipe(Effect.andThen(control.finalizeRound(f)))
        })
      })
    )
    return Effect.gen(function*() {
      const coordinator = yield* RoundCoordinator
      yield* submitAll(open, 1n, [0, 1])
      yield* coordinator.step
      const f = yield* finalizationOf(1n)
      assert.deepStrictEqual([f.modelCid, f.weightsHash], [other.modelCid, other.weightsHash])
      assert.isTrue(logs.some((line) => line.includes("finalized by someone else") && line.includes(other.weightsHash)))
      yield* stepNone
      assert.deepStrictEqual(yield* finalizationOf(1n), f)
      assert.strictEqual(Option.getOrThrow(yield* coordinator.latest).weightsCid, other.modelCid)
    }).pipe(Effect.provide(Layer.merge(roundHarness({ rounds: [learningRound(1n, open, 2)], authorityLayer: raced }), Logger.layer([collector]))))
  })

  // After someone else's finalization, what the coordinator reports as the round it closed still names its own
  // weights and test loss: /stats's network section shows a weights CID the chain never recorded, and `latest` pairs
  // the chain's weights with the test loss of ours.
  it.effect("finalized by someone else: what the coordinator reports names the chain's weights, not its own", () => {
    const raced = Layer.effect(
      RoundAuthority,
      Effect.gen(function*() {
        const control = yield* TestChain
        return RoundAuthority.of({
          finalizeRound: (f) =>
            Effect.ignore(control.finalizeRound({ ...f, modelCid: "QmSomeoneElse", weightsHash: sha256Hex("x") })).pipe(
              Effect.andThen(control.finalizeRound(f))
            )
        })
      })
    )
    return Effect.gen(function*() {
      const coordinator = yield* RoundCoordinator
      yield* submitAll(open, 1n, [0, 1])
      const stepped = yield* coordinator.step
      const f = yield* finalizationOf(1n)
      for (const round of [...Option.toArray(stepped), ...(yield* coordinator.closed)]) {
        assert.strictEqual(round.weightsCid, f.modelCid)
      }
      const latest = Option.getOrThrow(yield* coordinator.latest)
      assert.isUndefined(latest.testLoss, "the test loss of weights the chain does not hold")
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, open, 2)], authorityLayer: raced })))
  })
})

describe("RoundCoordinator: content", () => {
  it.effect("a store that cannot serve an accepted gradient: the step fails (retryable) and does not finalize; then it does", () =>
    Effect.gen(function*() {
      const storeControl = yield* TestGradientStore
      yield* submitAll(open, 1n, [0, 1])
      yield* storeControl.setFaults({ get: { alwaysFail: new NetworkError({ message: "IPFS node unreachable" }) } })
      const failed = yield* Effect.flip((yield* RoundCoordinator).step)
      assert.strictEqual(failed._tag, "NetworkError")
      assert.isTrue(Option.isNone(yield* (yield* Chain).getFinalization(1n)))
      assert.strictEqual(yield* (yield* TestRoundAuthority).calls("finalizeRound"), 0)
      yield* storeControl.setFaults({})
      assert.deepStrictEqual((yield* stepSome).accepted, [0, 1])
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, open, 2)] }))))

  it.effect("a store that lost an accepted gradient (unpinned, collected): no finalization until the content is back", () =>
    Effect.gen(function*() {
      const store = yield* GradientStore
      yield* submitAll(judged, 1n, [0])
      const bytes = yield* honestGradient(judged, { roundId: 1n, chunkId: 1, miner: bob })
      const submission = yield* submitBytes(bob, 1n, 1, bytes)
      yield* recordVerdict(1n, 0, "accepted_exact")
      yield* recordVerdict(1n, 1, "accepted_exact")
      yield* store.unpin(submission.cid)
      assert.strictEqual(yield* store.gc, 1)
      yield* Effect.flip((yield* RoundCoordinator).step)
      yield* Effect.flip((yield* RoundCoordinator).step)
      assert.isTrue(Option.isNone(yield* (yield* Chain).getFinalization(1n)))
      assert.strictEqual(yield* (yield* TestRoundAuthority).calls("finalizeRound"), 0)
      assert.strictEqual(yield* store.add(bytes), submission.cid)
      assert.deepStrictEqual((yield* stepSome).accepted, [0, 1])
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, judged, 2)] }))))

  it.effect("the training data failing: the step fails and does not finalize; then it does", () =>
    Effect.gen(function*() {
      const data = yield* TestTrainingData
      yield* submitAll(open, 1n, [0])
      yield* data.setFaults({
        dataset: { failFirst: { times: 1, error: new ResourceError({ message: "mnist missing", resource: "dataset" }) } }
      })
      assert.strictEqual((yield* Effect.flip((yield* RoundCoordinator).step))._tag, "ResourceError")
      assert.isTrue(Option.isNone(yield* (yield* Chain).getFinalization(1n)))
      assert.deepStrictEqual((yield* stepSome).accepted, [0])
      assert.strictEqual(yield* data.calls("dataset"), 2)
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, open, 1)] }))))

  it.effect("accepted submissions whose content is no pseudo-gradient of the round are left out, with the reason", () =>
    Effect.gen(function*() {
      const coordinator = yield* RoundCoordinator
      yield* submitAll(judged, 1n, [0])
      // Garbage pinned and submitted with its own sha256, which a careless verifier accepted.
      yield* submitBytes(mallory, 1n, 1, new TextEncoder().encode("definitely not a gradient"))
      // A copy of alice's gradient of chunk 0, submitted by mallory as chunk 2.
      const stolen = yield* honestGradient(judged, { roundId: 1n, chunkId: 0, miner: alice })
      yield* submitBytes(mallory, 1n, 2, stolen)
      // An honest envelope of another model (the test trainer's toy).
      const task = new Task({ roundId: 1n, chunkId: 3, modelCid: "", spec: canonicalRoundSpec(judged), difficulty: 16, leaseExpiry: deadline, deadline })
      yield* submitBytes(bob, 1n, 3, (yield* testTrainingResult(task, bob)).envelope)
      // Content that is not what the chain's gradient hash says.
      const other = yield* honestGradient(judged, { roundId: 1n, chunkId: 4, miner: alice })
      yield* submitBytes(alice, 1n, 4, other, { gradientHash: sha256Hex("something else") })
      for (const chunkId of [0, 1, 2, 3, 4]) yield* recordVerdict(1n, chunkId, "accepted_exact")

      const round = yield* stepSome
      assert.deepStrictEqual(round.accepted, [0])
      assert.deepStrictEqual(round.excluded.map((e) => e.chunkId), [1, 2, 3, 4])
      for (const e of round.excluded) assert.match(e.reason, new RegExp(`^chunk ${e.chunkId}: `))
      assert.match(round.excluded[1]!.reason, /chunk_id 0 is not chunk 2/)
      assert.match(round.excluded[2]!.reason, /2 tensors, the model trains 4/)
      assert.match(round.excluded[3]!.reason, /content hash/)
      assert.strictEqual((yield* finalizationOf(1n)).acceptedCount, 1)
      assert.deepStrictEqual((yield* (yield* RoundAggregator).check(1n)).mismatches, [])
      assert.strictEqual((yield* coordinator.closed)[0]!.excluded.length, 4)
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, judged, 5)] }))))

  // aggregate() refuses non-finite values, and pseudoGradientOf does not check them: one NaN among the accepted
  // gradients fails every step, so a round without verifiers never finalizes (one miner stops the network).
  it.effect("a gradient with a NaN in a round without verifiers is left out; the round finalizes", () =>
    Effect.gen(function*() {
      yield* submitAll(open, 1n, [0, 1])
      yield* submitHonest(open, mallory, 1n, 2, { scale: Number.NaN })
      const round = yield* stepSome
      assert.deepStrictEqual(round.accepted, [0, 1])
      assert.deepStrictEqual(round.excluded.map((e) => e.chunkId), [2])
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, open, 3)] }))))

  // The store's read limit fails the whole step (ResourceError) instead of leaving the submission out: a miner that
  // pins content over the coordinator's limit stops every round without verifiers.
  it.effect("content over the gradient size limit in a round without verifiers is left out; the round finalizes", () =>
    Effect.gen(function*() {
      yield* submitAll(open, 1n, [0, 1])
      yield* submitBytes(mallory, 1n, 2, new Uint8Array(maxGradientBytes + 1))
      const round = yield* stepSome
      assert.deepStrictEqual(round.accepted, [0, 1])
      assert.deepStrictEqual(round.excluded.map((e) => e.chunkId), [2])
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, open, 3)] }))))
})

describe("RoundCoordinator: robust aggregation", () => {
  const honest = [0, 1, 2, 3]

  /** The round's finalized weights and report, with the honest chunks and, if given, the adversary's last. */
  const finalize = (spec: RoundSpecV2, adversary: boolean) =>
    Effect.gen(function*() {
      yield* submitAll(spec, 1n, honest)
      if (adversary) yield* submitHonest(spec, mallory, 1n, honest.length, { scale: 0.01 * 1e6 })
      const round = yield* stepSome
      return { round, weights: yield* weightsOf(spec, round.weightsCid) }
    }).pipe(Effect.provide(roundHarness({ rounds: [learningRound(1n, spec, honest.length + (adversary ? 1 : 0))] })))

  // trim 0: no coordinate is trimmed, so the clip alone holds the adversary back (a plain mean would move the
  // weights by lr · 1e6 · its honest norm / 5, about 1e5 here); the default trim on top of it.
  for (const trim of [0, 0.25]) {
    it.effect(`a gradient ×1e6 among honest ones moves the weights by at most what the clip allows (trim ${trim})`, () =>
      Effect.gen(function*() {
        const spec = smallLearningSpec(21, { verifiers: [], momentum: 0, nesterov: false, trim })
        const without = yield* finalize(spec, false)
        const withIt = yield* finalize(spec, true)
        assert.deepStrictEqual(withIt.round.accepted, [0, 1, 2, 3, 4])
        // The clip bound is an honest norm (the lower median), not the adversary's.
        assert.isBelow(withIt.round.medianNorm, 1.5 * without.round.medianNorm)
        const lr = spec.aggregation.outer_lr
        // The adversary's contribution is clipped to the median norm: the weights move by at most that step.
        assert.isAtMost(distance(withIt.weights, without.weights), lr * withIt.round.medianNorm)
        const start = initialWeights(spec)
        assert.isAbove(distance(without.weights, start), 0)
        assert.isAtMost(distance(withIt.weights, start), lr * withIt.round.medianNorm)
      }))
  }
})
