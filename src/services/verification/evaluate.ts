import { Clock, Duration, Effect, Option } from "effect"
import { type MiningError, ValidationError } from "../../domain/errors.ts"
import { decodeEnvelope, type DeterminismProfile } from "../../domain/gradientEnvelope.ts"
import { maxGradientBytes, type MinerConfig } from "../../domain/MinerConfig.ts"
import { type OnChainSubmission, Task } from "../../domain/mining.ts"
import { compareRecomputation, reproducesExactly, taskMismatch } from "../../domain/verdict.ts"
import type { VerdictName } from "../../domain/verification.ts"
import type { Chain } from "../Chain.ts"
import type { GradientStore } from "../GradientStore.ts"
import type { Trainer } from "../Trainer.ts"
import { sha256Hex } from "./contentHash.ts"
import type { Judgement } from "./report.ts"
import { retrying } from "./retrying.ts"

type Fetched =
  | { readonly _tag: "Fetched"; readonly bytes: Uint8Array }
  | { readonly _tag: "Refused"; readonly verdict: VerdictName; readonly reason: string }

export interface Evaluation {
  readonly judgement: Judgement
  /** Seconds spent recomputing the chunk; null when the submission was judged without recomputing. */
  readonly recomputeSeconds: number | null
}

/**
 * Judges one submission (DESIGN.md "Verification"), cheapest checks first: fetch within the window (else
 * rejected_unavailable), decode and sha256 = on-chain hash (else rejected_malformed), header = the submission's task
 * (else rejected_wrong_task), then recompute the chunk and compare. Records nothing: the caller writes the verdict.
 * Failures are the verifier's own trouble (chain unreachable, a round it cannot train), never a verdict.
 */
export const makeEvaluator = (deps: {
  readonly chain: Chain["Service"]
  readonly store: GradientStore["Service"]
  readonly trainer: Trainer["Service"]
  readonly config: MinerConfig
}) => {
  const { chain, config, store, trainer } = deps
  const retry = retrying(config)
  const windowMs = Duration.toMillis(config.verifyWindow)

  /**
   * The content, tried again on any failure until the window has passed. The window runs from the submission's block
   * time: the miner had to have the content pinned from then on, so a verifier catching up on old submissions owes
   * them no fresh window (and a restart grants none). Chain time is compared with this machine's clock: on a live
   * chain block timestamps follow wall time within seconds, far below a window of minutes. Tried at least once,
   * however late. Content over the size limit is refused at once: no honest gradient is, and waiting will not shrink it.
   */
  const fetchEnvelope = Effect.fnUntraced(function*(submission: OnChainSubmission): Effect.fn.Return<Fetched, MiningError> {
    const since = submission.blockTime * 1000
    let delay = config.retryInitialDelay
    for (;;) {
      const got = yield* Effect.result(store.get(submission.cid, maxGradientBytes(config)))
      if (got._tag === "Success") return { _tag: "Fetched", bytes: got.success }
      // Reasons go into the report, whose bytes must not depend on the attempt: the store's message is logged.
      if (got.failure._tag === "ResourceError" && got.failure.resource === "size") {
        yield* Effect.logInfo(`submission of round ${submission.roundId} chunk ${submission.chunkId}: ${got.failure.message}`)
        return { _tag: "Refused", verdict: "rejected_malformed", reason: `content over the size limit of ${maxGradientBytes(config)} bytes` }
      }
      const left = since + windowMs - (yield* Clock.currentTimeMillis)
      if (left <= 0) {
        yield* Effect.logInfo(`submission of round ${submission.roundId} chunk ${submission.chunkId}: ${got.failure.message}`)
        return {
          _tag: "Refused",
          verdict: "rejected_unavailable",
          reason: `content ${submission.cid} not retrievable within the ${windowMs / 1000} s verification window`
        }
      }
      yield* Effect.sleep(Duration.min(delay, Duration.millis(left)))
      delay = Duration.min(Duration.times(delay, config.retryBackoffFactor), config.retryMaxDelay)
    }
  })

  const refused = (verdict: VerdictName, reason: string, claimedProfile: DeterminismProfile | null = null): Evaluation => ({
    judgement: { verdict, reason, distances: [], recomputed: null, claimedProfile },
    recomputeSeconds: null
  })

  const taskOf = Effect.fnUntraced(function*(submission: OnChainSubmission) {
    const round = yield* retry(chain.getRound(submission.roundId))
    if (Option.isNone(round)) {
      return yield* new ValidationError({
        message: `round ${submission.roundId} of submitted chunk ${submission.chunkId} is not on chain`,
        hint: "the chain lost state (a devnet restarted, a reorg): run the verifier again once the chain is stable"
      })
    }
    const { deadline, difficulty, modelCid, spec } = round.value
    return new Task({ roundId: submission.roundId, chunkId: submission.chunkId, modelCid, spec, difficulty, leaseExpiry: 0, deadline })
  })

  const evaluate = Effect.fn("Verifier.evaluate")(function*(submission: OnChainSubmission): Effect.fn.Return<Evaluation, MiningError> {
    const fetched = yield* fetchEnvelope(submission)
    if (fetched._tag === "Refused") return refused(fetched.verdict, fetched.reason)
    const decoded = yield* Effect.result(decodeEnvelope(fetched.bytes))
    if (decoded._tag === "Failure") return refused("rejected_malformed", decoded.failure.message)
    const submitted = decoded.success
    const hash = yield* sha256Hex(fetched.bytes)
    if (hash !== submission.gradientHash.toLowerCase()) {
      return refused("rejected_malformed", `sha256 ${hash} is not the on-chain gradient hash ${submission.gradientHash}`, submitted.header.profile)
    }
    const wrongTask = taskMismatch(submitted.header, submission)
    if (wrongTask !== undefined) return refused("rejected_wrong_task", wrongTask, submitted.header.profile)

    const task = yield* taskOf(submission)
    const started = yield* Clock.currentTimeMillis
    // With the submitter's thread count, optimisation level and (when this machine has it) execution provider: on
    // the same runtime, provider and CPU class the recomputation is then bit-identical (other thread counts and
    // other providers move ReLU ties: up to 1.4e-2 apart, measured).
    const { ep, graph_optimization, threads } = submitted.header.profile
    const result = yield* retry(trainer.train(task, submission.miner, { threads, graph_optimization, ep }))
    const recomputeSeconds = ((yield* Clock.currentTimeMillis) - started) / 1000
    const own = yield* decodeEnvelope(result.envelope).pipe(
      Effect.mapError((e) => new ValidationError({ message: `the verifier's own training gave an invalid envelope: ${e.message}` }))
    )
    const recomputed = { lossBefore: own.header.loss_before, lossAfter: own.header.loss_after, gradientHash: result.gradientHash }
    const wrongModel = taskMismatch(submitted.header, { ...submission, modelHash: own.header.model_hash })
    if (wrongModel !== undefined) {
      return { ...refused("rejected_wrong_task", wrongModel, submitted.header.profile), recomputeSeconds }
    }
    const comparison = compareRecomputation({
      submitted,
      recomputed: own,
      sameProfile: reproducesExactly(submitted.header.profile, own.header.profile),
      tolerance: config.verifyTolerance
    })
    return {
      judgement: {
        verdict: comparison.verdict,
        reason: comparison.reason,
        distances: comparison.distances,
        recomputed,
        claimedProfile: submitted.header.profile
      },
      recomputeSeconds
    }
  })

  return { evaluate }
}
