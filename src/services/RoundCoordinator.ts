import { Context, Effect, Layer, Option, Semaphore } from "effect"
import type { MiningError } from "../domain/errors.ts"
import { type Closing, closingOf } from "../domain/learningRound.ts"
import type { RoundInfo } from "../domain/mining.ts"
import { canonicalJson } from "../domain/gradientEnvelope.ts"
import { initialWeightsEnvelope } from "../domain/training/model.ts"
import { childRoundSpec, type RoundSpecV2 } from "../domain/training/spec.ts"
import { Chain } from "./Chain.ts"
import { GradientStore } from "./GradientStore.ts"
import { type RoundAggregate, RoundAggregator, type RoundReport } from "./RoundAggregator.ts"
import { RoundAuthority } from "./RoundAuthority.ts"

/** A finalized round as this coordinator closed it. */
export interface ClosedRound extends RoundReport {
  readonly closing: Closing
}

/** The newest finalized round as the chain records it (the test loss only when this coordinator closed it). */
export interface LatestRound {
  readonly roundId: bigint
  readonly acceptedCount: number
  readonly testAccuracy: number
  readonly testLoss: number | undefined
  readonly weightsCid: string
}

/** The next round's task: its spec starts from a finalized parent's weights. */
export interface NextRound {
  readonly spec: RoundSpecV2
  /** The parent's weights CID: the round's modelCid. */
  readonly modelCid: string
}

/**
 * The network's round coordinator (DESIGN.md "Learning rounds"): closes the newest learning round once every chunk
 * has a submission judged by the spec's verifiers (or at its deadline), aggregates what was accepted, pins the new
 * weights (and momentum), and records `finalizeRound`; then says what the next round starts from. Who opens rounds
 * is the caller's business (the devnet's round keeper asks `nextRound`).
 *
 * Crash-safe by construction: the aggregate is a function of the chain and the content, so a coordinator that died
 * between pinning and finalizing computes the same bytes again; a finalization already on chain (ours, with its
 * answer lost) is success when it records the same weights.
 */
export class RoundCoordinator extends Context.Service<RoundCoordinator, {
  /** One look at the newest round: finalizes it when it may close; the round it finalized, if any. */
  readonly step: Effect.Effect<Option.Option<ClosedRound>, MiningError>
  /** Rounds this coordinator finalized, oldest first. */
  readonly closed: Effect.Effect<ReadonlyArray<ClosedRound>>
  /** The newest finalized round on chain (whoever finalized it, this run or an earlier one). */
  readonly latest: Effect.Effect<Option.Option<LatestRound>, MiningError>
  /**
   * Round `roundId`'s task, made from `template` (the coordinator's settings: model, hyper-parameters, aggregation,
   * verifiers): from round `roundId − 1`'s weights when that is a finalized learning round of the same model; none
   * while it is a learning round not finalized yet; else a new series from generated weights (init seed = round id).
   * Every round draws its examples with dataset_seed = its id.
   */
  readonly nextRound: (roundId: bigint, template: RoundSpecV2) => Effect.Effect<Option.Option<NextRound>, MiningError>
}>()("r3mes/services/RoundCoordinator") {
  static readonly layer = Layer.effect(
    RoundCoordinator,
    Effect.gen(function*() {
      const chain = yield* Chain
      const store = yield* GradientStore
      const authority = yield* RoundAuthority
      const aggregator = yield* RoundAggregator
      const closed: Array<ClosedRound> = []
      const finalized = new Set<bigint>()
      /** Momentum CIDs of finalized rounds (recomputed once after a restart: the chain records only the weights). */
      const momentumOf = new Map<bigint, RoundReport["momentum"]>()

      const isFinalized = Effect.fnUntraced(function*(roundId: bigint) {
        if (finalized.has(roundId)) return true
        const found = Option.isSome(yield* chain.getFinalization(roundId))
        if (found) finalized.add(roundId)
        return found
      })

      const pinAll = (aggregate: RoundAggregate) =>
        Effect.forEach(aggregate.envelopes, (bytes) => store.add(bytes), { discard: true })

      const finalize = Effect.fnUntraced(function*(aggregate: RoundAggregate) {
        const { report } = aggregate
        yield* pinAll(aggregate)
        const ours = yield* authority.finalizeRound({
          roundId: report.roundId,
          modelCid: report.weightsCid,
          weightsHash: report.weightsHash,
          acceptedCount: report.accepted.length,
          testAccuracyPpm: report.testAccuracyPpm
        }).pipe(
          Effect.as(true),
          Effect.catchTag("ChainRevertError", (e) =>
            e.errorName !== "RoundAlreadyFinalized" ? Effect.fail(e) : Effect.gen(function*() {
              const onChain = yield* chain.getFinalization(report.roundId)
              const same = Option.isSome(onChain) && onChain.value.weightsHash.toLowerCase() === report.weightsHash.toLowerCase()
              if (!same) {
                yield* Effect.logWarning(
                  `round ${report.roundId} was finalized by someone else with other weights ` +
                    `(${Option.match(onChain, { onNone: () => "none", onSome: (f) => f.weightsHash })}); keeping the chain's`
                )
              }
              return same
            }))
        )
        finalized.add(report.roundId)
        // The chain's finalization is what counts: ours is only remembered when it is the chain's.
        if (ours) momentumOf.set(report.roundId, report.momentum)
        return ours
      })

      /**
       * The chain as last seen. One that no longer holds that block lost state (a devnet restarted from an older
       * dump): finalizations, submissions and verdicts remembered since may be gone, so they are read again.
       */
      let seen: { readonly number: bigint; readonly hash: string } | undefined
      const forgetIfRewound = Effect.gen(function*() {
        if (seen !== undefined && Option.getOrUndefined(yield* chain.blockHash(seen.number)) !== seen.hash) {
          yield* Effect.logWarning(`round coordinator: the chain no longer holds block ${seen.number}; reading rounds again`)
          finalized.clear()
          momentumOf.clear()
          yield* aggregator.forget
        }
        seen = yield* chain.head
      })

      // One step at a time: a step run on demand (e.g. at the end of a run) must not race the periodic one.
      const stepping = yield* Semaphore.make(1)
      const step = Effect.fn("RoundCoordinator.step")(function*() {
        yield* forgetIfRewound
        const rounds = yield* chain.rounds
        const newest = rounds.at(-1)
        if (newest === undefined || (yield* isFinalized(newest.roundId))) return Option.none<ClosedRound>()
        const spec = yield* aggregator.learningSpec(newest)
        if (Option.isNone(spec)) return Option.none<ClosedRound>()
        const ledger = yield* aggregator.ledger(newest, spec.value)
        const closing = closingOf({
          chunkCount: newest.chunkCount,
          standings: ledger.entries.map((e) => e.standing),
          now: yield* chain.now,
          deadline: newest.deadline
        })
        if (closing === undefined) return Option.none<ClosedRound>()
        const aggregate = yield* aggregator.aggregate(ledger)
        if (!(yield* finalize(aggregate))) return Option.none<ClosedRound>()
        const round: ClosedRound = { ...aggregate.report, closing }
        closed.push(round)
        const { test } = round
        yield* Effect.logInfo(
          `round ${round.roundId} finalized (${closing}): ${round.accepted.length} of ${round.submitted} submissions ` +
            `aggregated, test accuracy ${(test.accuracy * 100).toFixed(2)}%, loss ${test.loss.toFixed(4)}, ` +
            `weights ${round.weightsCid}`
        )
        return Option.some(round)
      })

      const momentumAfter = Effect.fnUntraced(function*(parent: RoundInfo, spec: RoundSpecV2, weightsHash: string) {
        if (momentumOf.has(parent.roundId)) return momentumOf.get(parent.roundId)
        // After a restart: the same bytes again (the aggregate is a function of chain and content), pinned again —
        // unless the chain's weights are not what this aggregate gives (finalized by someone else): then the
        // momentum would belong to other weights, and the child starts without.
        const aggregate = yield* aggregator.aggregate(yield* aggregator.ledger(parent, spec))
        const momentum = aggregate.report.weightsHash.toLowerCase() === weightsHash.toLowerCase()
          ? aggregate.report.momentum
          : undefined
        if (momentum !== undefined) yield* pinAll(aggregate)
        momentumOf.set(parent.roundId, momentum)
        return momentum
      })

      const nextRound = Effect.fn("RoundCoordinator.nextRound")(function*(roundId: bigint, template: RoundSpecV2) {
        const seed = Number(BigInt.asUintN(32, roundId))
        const parent = roundId > 0n ? yield* chain.getRound(roundId - 1n) : Option.none()
        const parentSpec = Option.isSome(parent) ? yield* aggregator.learningSpec(parent.value) : Option.none()
        if (Option.isSome(parent) && Option.isSome(parentSpec)) {
          const finalization = yield* chain.getFinalization(parent.value.roundId)
          if (Option.isNone(finalization)) return Option.none<NextRound>()
          if (canonicalJson(parentSpec.value.model) === canonicalJson(template.model)) {
            const f = finalization.value
            const momentum = template.aggregation.momentum > 0 && parentSpec.value.aggregation.momentum > 0
              ? yield* momentumAfter(parent.value, parentSpec.value, f.weightsHash)
              : undefined
            const child = childRoundSpec(template, {
              parent_round: parent.value.roundId.toString(),
              weights_cid: f.modelCid,
              weights_sha256: f.weightsHash.toLowerCase(),
              ...(momentum ? { momentum_cid: momentum.cid, momentum_sha256: momentum.sha256 } : {})
            })
            return Option.some({ spec: { ...child, dataset_seed: seed }, modelCid: f.modelCid })
          }
        }
        // No learning round before it (or another model): a new series from generated weights.
        const fresh: RoundSpecV2 = { ...template, init: { seed }, dataset_seed: seed }
        return Option.some({ spec: fresh, modelCid: yield* store.computeCid(yield* initialWeightsEnvelope(fresh)) })
      })

      const latest = Effect.gen(function*() {
        const rounds = yield* chain.rounds
        for (const round of [...rounds].reverse()) {
          const finalization = yield* chain.getFinalization(round.roundId)
          if (Option.isNone(finalization)) continue
          const f = finalization.value
          const ours = closed.find((c) => c.roundId === f.roundId)
          return Option.some<LatestRound>({
            roundId: f.roundId,
            acceptedCount: f.acceptedCount,
            testAccuracy: f.testAccuracyPpm / 1_000_000,
            testLoss: ours?.test.loss,
            weightsCid: f.modelCid
          })
        }
        return Option.none<LatestRound>()
      }).pipe(Effect.withSpan("RoundCoordinator.latest"))

      return RoundCoordinator.of({ step: Semaphore.withPermit(stepping, step()), closed: Effect.sync(() => [...closed]), latest, nextRound })
    })
  )
}
