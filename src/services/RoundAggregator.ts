import { Context, Effect, Layer, Option } from "effect"
import type { PseudoGradient } from "../domain/aggregation.ts"
import { type MiningError, ValidationError } from "../domain/errors.ts"
import { pseudoGradientBound, pseudoGradientOf } from "../domain/learningRound.ts"
import type { RoundInfo } from "../domain/mining.ts"
import type { RoundFinalization } from "../domain/rounds.ts"
import { heldOutTestIndices } from "../domain/training/data.ts"
import { evaluateModel } from "../domain/training/evaluate.ts"
import { decodeWeightsEnvelope } from "../domain/training/model.ts"
import { maxRoundWeightsBytes } from "../domain/training/roundWeights.ts"
import { parseRoundSpec, type RoundSpecV2 } from "../domain/training/spec.ts"
import { type VerdictName, verdictName } from "../domain/verification.ts"
import { Chain } from "./Chain.ts"
import { GradientStore } from "./GradientStore.ts"
import { type RoundResult, recomputeRound } from "./rounds/recomputeRound.ts"
import { makeRoundLedgerReader, type RoundLedger } from "./rounds/roundLedger.ts"
import { sha256Hex } from "./verification/contentHash.ts"
import { TrainingData } from "./TrainingData.ts"

/** A learning round's aggregate: what went in, what came out, and how the new model scores. */
export interface RoundReport {
  readonly roundId: bigint
  readonly chunkCount: number
  readonly submitted: number
  /** The chunks aggregated, ascending. */
  readonly accepted: ReadonlyArray<number>
  readonly rejected: number
  /** Submitted but judged by none of the spec's verifiers when the round closed: left out. */
  readonly unjudged: number
  /** Accepted by the verdicts but whose content is not a pseudo-gradient of the round: left out, with why. */
  readonly excluded: ReadonlyArray<{ readonly chunkId: number; readonly reason: string }>
  /** Verdict counts by name, from the spec's verifiers. */
  readonly verdicts: Readonly<Partial<Record<VerdictName, number>>>
  /** Each submitting address's chunks by standing (the dashboard's per-miner table), by its lowest chunk. */
  readonly miners: ReadonlyArray<MinerTally>
  readonly test: RoundResult["test"]
  readonly testAccuracyPpm: number
  readonly medianNorm: number
  readonly weightsCid: string
  readonly weightsHash: string
  /** The momentum state after the round, when the spec uses momentum. */
  readonly momentum: { readonly cid: string; readonly sha256: string } | undefined
}

/** One miner's submissions in a round, by the verdicts' standing (accepted counts chunks left out as excluded). */
export interface MinerTally {
  readonly miner: string
  readonly submitted: number
  readonly accepted: number
  readonly rejected: number
}

/** `aggregate ROUND --check`: the round recomputed from chain and content, against what the chain recorded. */
export interface RoundCheck {
  readonly roundId: bigint
  readonly finalization: RoundFinalization
  readonly recomputed: RoundReport
  /** The fields that differ (weights hash, CID, accepted count, test accuracy); empty when it reproduces. */
  readonly mismatches: ReadonlyArray<string>
}

/** One line of `r3mes-miner rounds`: a round as the chain records it (and its weights, when the store has them). */
export interface RoundSummary {
  readonly roundId: bigint
  /** A learning round (version 2 spec): one that is aggregated into the next round's model. */
  readonly learning: boolean
  readonly chunkCount: number
  readonly submitted: number
  /** By the spec's verifiers' verdicts now. */
  readonly rejected: number
  /** The finalization on chain, none while the round is not finalized. */
  readonly finalization: Option.Option<RoundFinalization>
  /** The finalized weights on the held-out test split, recomputed from the store (none when it cannot fetch them). */
  readonly test: Option.Option<RoundResult["test"]>
}

/** What a round's aggregate needs and produces, before anything is pinned or recorded. */
export interface RoundAggregate {
  readonly ledger: RoundLedger
  readonly result: RoundResult
  readonly report: RoundReport
  /** The envelopes to pin: the weights, and the momentum state when there is one. */
  readonly envelopes: ReadonlyArray<Uint8Array>
}

const notLearning = (roundId: bigint, why: string) =>
  new ValidationError({
    message: `round ${roundId} ${why}`,
    field: "round",
    hint: "learning rounds are the devnet's rounds with a version 2 spec: list them with `r3mes-miner rounds`"
  })

const tallyByMiner = (ledger: RoundLedger): ReadonlyArray<MinerTally> => {
  const tallies = new Map<string, { miner: string; submitted: number; accepted: number; rejected: number }>()
  for (const entry of ledger.entries) {
    // Checksummed and lower-case spellings of one address are one miner.
    const key = entry.submission.miner.toLowerCase()
    const tally = tallies.get(key) ?? { miner: entry.submission.miner, submitted: 0, accepted: 0, rejected: 0 }
    tally.submitted += 1
    if (entry.standing === "accepted") tally.accepted += 1
    if (entry.standing === "rejected") tally.rejected += 1
    tallies.set(key, tally)
  }
  return [...tallies.values()]
}

/**
 * The aggregation side of learning rounds (DESIGN.md "Learning rounds"), from ports only: a round's ledger from the
 * chain, its accepted content from the store, the test split from the training data. Anyone can run it: the round
 * coordinator to close a round, `aggregate ROUND --check` to recompute one.
 */
export class RoundAggregator extends Context.Service<RoundAggregator, {
  /** The round's spec, when it is a learning round (version 2). */
  readonly learningSpec: (round: RoundInfo) => Effect.Effect<Option.Option<RoundSpecV2>, MiningError>
  readonly ledger: (round: RoundInfo, spec: RoundSpecV2) => Effect.Effect<RoundLedger, MiningError>
  /** The round's aggregate from this ledger (whatever its closing state: the caller decides when to close). */
  readonly aggregate: (ledger: RoundLedger) => Effect.Effect<RoundAggregate, MiningError>
  /** The round as `r3mes-miner rounds` shows it. */
  readonly summary: (round: RoundInfo) => Effect.Effect<RoundSummary, MiningError>
  /** Forgets the submissions and verdicts read so far (the chain lost state: they may be gone). */
  readonly forget: Effect.Effect<void>
  /** Recomputes a finalized round and compares it with its finalization. */
  readonly check: (roundId: bigint) => Effect.Effect<RoundCheck, MiningError>
}>()("r3mes/services/RoundAggregator") {
  static readonly layer = (options: { readonly maxGradientBytes: number }) =>
    Layer.effect(
      RoundAggregator,
      Effect.gen(function*() {
        const chain = yield* Chain
        const store = yield* GradientStore
        const data = yield* TrainingData
        const reader = makeRoundLedgerReader(chain)
        const fetch = (cid: string, maxBytes: number) => store.get(cid, maxBytes)

        const learningSpec = Effect.fnUntraced(function*(round: RoundInfo) {
          const spec = yield* parseRoundSpec(round.spec).pipe(Effect.option)
          return Option.filter(spec, (s): s is RoundSpecV2 => s.version === 2)
        })

        /** The accepted submissions' pseudo-gradients; content that is not one is left out, with the reason. */
        const acceptedGradients = Effect.fnUntraced(function*(ledger: RoundLedger) {
          const gradients: Array<PseudoGradient> = []
          const excluded: Array<{ chunkId: number; reason: string }> = []
          for (const entry of ledger.entries) {
            if (entry.standing !== "accepted") continue
            // Bounded by the spec, so an over-sized upload is left out the same way by anyone whatever their limit.
            const limit = Math.min(options.maxGradientBytes, pseudoGradientBound(ledger.spec))
            const fetched = yield* Effect.result(store.get(entry.submission.cid, limit))
            if (fetched._tag === "Failure") {
              const e = fetched.failure
              if (e._tag !== "ResourceError" || e.resource !== "size") return yield* e
              excluded.push({ chunkId: entry.submission.chunkId, reason: `chunk ${entry.submission.chunkId}: ${e.message}` })
              continue
            }
            const bytes = fetched.success
            const read = yield* Effect.result(pseudoGradientOf(ledger.spec, entry.submission, bytes))
            if (read._tag === "Success") gradients.push(read.success)
            else excluded.push({ chunkId: entry.submission.chunkId, reason: read.failure.message })
          }
          return { gradients, excluded }
        })

        const aggregate = Effect.fn("RoundAggregator.aggregate")(function*(ledger: RoundLedger) {
          const { excluded, gradients } = yield* acceptedGradients(ledger)
          const dataset = yield* data.dataset
          const result = yield* recomputeRound({ roundId: ledger.round.roundId, spec: ledger.spec, gradients, fetch, dataset })
          const verdicts: Partial<Record<VerdictName, number>> = {}
          for (const entry of ledger.entries) {
            for (const code of entry.verdicts) {
              const name = verdictName(code)
              if (name !== undefined) verdicts[name] = (verdicts[name] ?? 0) + 1
            }
          }
          const momentum = result.momentumEnvelope === undefined ? undefined : {
            cid: yield* store.computeCid(result.momentumEnvelope),
            sha256: yield* sha256Hex(result.momentumEnvelope)
          }
          const report: RoundReport = {
            roundId: ledger.round.roundId,
            chunkCount: ledger.round.chunkCount,
            submitted: ledger.entries.length,
            accepted: result.accepted,
            rejected: ledger.entries.filter((e) => e.standing === "rejected").length,
            unjudged: ledger.entries.filter((e) => e.standing === "unjudged").length,
            excluded,
            verdicts,
            miners: tallyByMiner(ledger),
            test: result.test,
            testAccuracyPpm: result.testAccuracyPpm,
            medianNorm: result.medianNorm,
            weightsCid: yield* store.computeCid(result.weightsEnvelope),
            weightsHash: yield* sha256Hex(result.weightsEnvelope),
            momentum
          }
          const envelopes = [result.weightsEnvelope, ...(result.momentumEnvelope ? [result.momentumEnvelope] : [])]
          return { ledger, result, report, envelopes }
        })

        const check = Effect.fn("RoundAggregator.check")(function*(roundId: bigint) {
          const round = yield* chain.getRound(roundId)
          if (Option.isNone(round)) return yield* notLearning(roundId, "does not exist on this chain")
          const spec = yield* learningSpec(round.value)
          if (Option.isNone(spec)) return yield* notLearning(roundId, "is not a learning round (its spec is not version 2)")
          const finalization = yield* chain.getFinalization(roundId)
          if (Option.isNone(finalization)) return yield* notLearning(roundId, "is not finalized yet")
          const { report } = yield* aggregate(yield* reader.read(round.value, spec.value))
          const f = finalization.value
          const mismatches = [
            report.weightsHash.toLowerCase() === f.weightsHash.toLowerCase() ? [] : [`weights hash ${report.weightsHash} ≠ ${f.weightsHash}`],
            report.weightsCid === f.modelCid ? [] : [`weights CID ${report.weightsCid} ≠ ${f.modelCid}`],
            report.accepted.length === f.acceptedCount ? [] : [`accepted ${report.accepted.length} ≠ ${f.acceptedCount}`],
            report.testAccuracyPpm === f.testAccuracyPpm ? [] : [`test accuracy ${report.testAccuracyPpm} ppm ≠ ${f.testAccuracyPpm}`]
          ].flat()
          return { roundId, finalization: f, recomputed: report, mismatches }
        })

        const summary = Effect.fn("RoundAggregator.summary")(function*(round: RoundInfo) {
          const spec = yield* learningSpec(round)
          if (Option.isNone(spec)) {
            const none = { finalization: Option.none(), test: Option.none(), rejected: 0 }
            return { roundId: round.roundId, learning: false, chunkCount: round.chunkCount, submitted: round.submittedCount, ...none }
          }
          const ledger = yield* reader.read(round, spec.value)
          const finalization = yield* chain.getFinalization(round.roundId)
          const test = Option.isNone(finalization) ? Option.none() : yield* Effect.gen(function*() {
            const bytes = yield* store.get(finalization.value.modelCid, maxRoundWeightsBytes)
            const weights = yield* decodeWeightsEnvelope(spec.value, bytes)
            return evaluateModel(spec.value.model, weights, yield* data.dataset, heldOutTestIndices())
          }).pipe(Effect.option)
          return {
            roundId: round.roundId,
            learning: true,
            chunkCount: round.chunkCount,
            submitted: ledger.entries.length,
            rejected: ledger.entries.filter((e) => e.standing === "rejected").length,
            finalization,
            test
          } satisfies RoundSummary
        })

        return RoundAggregator.of({ learningSpec, ledger: reader.read, aggregate, summary, forget: reader.forget, check })
      })
    )
}
