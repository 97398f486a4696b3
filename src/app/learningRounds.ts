import { Context, Effect, Layer, Option, Redacted, Result, Schedule, type Scope } from "effect"
import { maxGradientBytes, type MinerConfig } from "../domain/MinerConfig.ts"
import type { MiningError } from "../domain/errors.ts"
import { initialWeightsEnvelope } from "../domain/training/model.ts"
import { canonicalRoundSpec, learningRoundSpec, type RoundSpecV2 } from "../domain/training/spec.ts"
import type { RoundPlan, RunningDevnet } from "../layers/chain/devnet/Devnet.ts"
import { computeCid } from "../layers/ipfs/importOptions.ts"
import { MnistDigits } from "../layers/onnx/MnistDigits.ts"
import type { GradientStore } from "../services/GradientStore.ts"
import { RoundAggregator } from "../services/RoundAggregator.ts"
import { RoundAuthority } from "../services/RoundAuthority.ts"
import { type LatestRound, RoundCoordinator } from "../services/RoundCoordinator.ts"
import { closedRoundJson, latestRoundJson } from "../services/rounds/roundJson.ts"
import { chainLayer } from "./adapters.ts"

/**
 * The devnet's learning rounds (DESIGN.md "Learning rounds"): round one from generated weights, every next round
 * from the previous round's aggregate, which the round coordinator computes beside the devnet. Wired here because
 * the coordinator needs the store that holds the miners' content, which exists only after the devnet started.
 */

/** Chunks per learning round: eight miners' worth of work (DiLoCo's eight workers) per outer step. */
export const learningChunkCount = 8

/** The coordinator looks this often: a round closes within about this long after its last verdict. */
const coordinatorInterval = "250 millis"

export interface LearningPlan {
  /** The devnet's round plan. Until a coordinator is attached it opens only the very first round. */
  readonly plan: RoundPlan
  readonly attach: (coordinator: RoundCoordinator["Service"]) => void
}

/**
 * The learning rounds' plan. `judged(verifier)`: whether the devnet's verifier (that address) judges submissions —
 * then its verdicts decide what is aggregated, and a round waits for them; otherwise every submission counts and
 * robust aggregation alone guards.
 */
export const makeLearningPlan = (options: {
  readonly difficulty: number
  readonly judged: (verifier: string) => boolean
  readonly chunkCount?: number
  readonly durationSeconds?: number
}): LearningPlan => {
  let coordinator: RoundCoordinator["Service"] | undefined
  const params = (spec: RoundSpecV2, modelCid: string) => ({
    modelCid,
    spec: canonicalRoundSpec(spec),
    chunkCount: options.chunkCount ?? learningChunkCount,
    difficulty: options.difficulty,
    durationSeconds: options.durationSeconds ?? 3600
  })
  const plan: RoundPlan = (roundId, devnet) =>
    Effect.gen(function*() {
      const base = learningRoundSpec(0)
      const template: RoundSpecV2 = {
        ...base,
        aggregation: { ...base.aggregation, verifiers: options.judged(devnet.verifier) ? [devnet.verifier.toLowerCase()] : [] }
      }
      if (coordinator === undefined) {
        if (roundId !== 1n) return undefined
        const seed = Number(roundId)
        const fresh: RoundSpecV2 = { ...template, init: { seed }, dataset_seed: seed }
        return params(fresh, yield* computeCid(yield* initialWeightsEnvelope(fresh)))
      }
      const next = yield* coordinator.nextRound(roundId, template)
      return Option.match(next, { onNone: () => undefined, onSome: (n) => params(n.spec, n.modelCid) })
    })
  return { plan, attach: (c) => void (coordinator = c) }
}

/**
 * Starts the devnet's round coordinator on `store` (the content the miners pin, or can be fetched through): every
 * `coordinatorInterval` it looks at the newest round, and once it finalized one it has the keeper open the next at
 * once, so miners wait for a new round about as long as the aggregate takes. A failing step is logged when the
 * failure changes (a dead chain would otherwise log four lines a second) and tried again.
 */
export const startRoundCoordinator = Effect.fn("startRoundCoordinator")(function*(
  config: MinerConfig,
  devnet: RunningDevnet,
  store: Context.Context<GradientStore>,
  learning: LearningPlan
): Effect.fn.Return<RoundCoordinator["Service"], MiningError, Scope.Scope> {
  const chain = chainLayer({
    rpcUrl: devnet.rpcUrl,
    registry: devnet.registry,
    privateKey: Redacted.make(devnet.accounts[0]!.privateKey),
    devnet: true
  })
  const authority = Layer.succeed(RoundAuthority, RoundAuthority.of({ finalizeRound: devnet.finalizeRound }))
  const ports = Layer.mergeAll(chain, Layer.succeedContext(store), MnistDigits.layer(), authority)
  const context = yield* Layer.build(
    RoundCoordinator.layer.pipe(
      Layer.provideMerge(RoundAggregator.layer({ maxGradientBytes: maxGradientBytes(config) })),
      Layer.provideMerge(ports)
    )
  )
  const coordinator = Context.get(context, RoundCoordinator)
  learning.attach(coordinator)

  let problem: string | undefined
  const tick = Effect.gen(function*() {
    const outcome = yield* Effect.result(coordinator.step)
    if (Result.isSuccess(outcome)) {
      if (problem !== undefined) yield* Effect.logInfo("round coordinator: working again")
      problem = undefined
      if (Option.isSome(outcome.success)) yield* Effect.ignore(devnet.keepRound)
    } else if (problem !== outcome.failure.message) {
      problem = outcome.failure.message
      yield* Effect.logWarning(`round coordinator: ${problem} (trying again; said once)`)
    }
  })
  yield* tick.pipe(Effect.repeat(Schedule.spaced(coordinatorInterval)), Effect.forkScoped)
  return coordinator
})

/** /stats's `network` section: the rounds this coordinator finalized (newest last), and the newest on chain. */
export const networkSection = (coordinator: RoundCoordinator["Service"]): Effect.Effect<object> =>
  Effect.gen(function*() {
    const closed = yield* coordinator.closed
    const latest = yield* coordinator.latest.pipe(Effect.orElseSucceed(() => Option.none<LatestRound>()))
    return {
      rounds: closed.slice(-100).map(closedRoundJson),
      latest_finalized: Option.match(latest, { onNone: () => null, onSome: latestRoundJson })
    }
  })
