import { Context, Duration, Effect, Layer, type Metric, Option, PubSub, type Scope, Semaphore } from "effect"
import { AuthenticationError, isRetryable, type MiningError } from "../domain/errors.ts"
import type { MinerIdentity, OnChainSubmission } from "../domain/mining.ts"
import { verdictCodes, verdictName, type VerdictName } from "../domain/verification.ts"
import { Chain } from "./Chain.ts"
import { GradientStore } from "./GradientStore.ts"
import { Journal } from "./Journal.ts"
import { Settings } from "./Settings.ts"
import { Trainer } from "./Trainer.ts"
import { sha256Hex } from "./verification/contentHash.ts"
import { makeEvaluator } from "./verification/evaluate.ts"
import { makeVerdictRecorder } from "./verification/recordVerdict.ts"
import { reportBytes } from "./verification/report.ts"
import { retrying } from "./verification/retrying.ts"
import { isSampled } from "./verification/sampling.ts"
import { makeVerifierJournal, verifierKeys } from "./verification/verifierJournal.ts"
import { makeVerifierStats, type VerifierSnapshot } from "./verification/VerifierStats.ts"

export * from "./verification/VerifierStats.ts"

/** What one pass (`runOnce`) did. JSON-ready: `r3mes-miner verify --once --json` prints it. */
export interface VerifierRunSummary {
  /** The blocks read, inclusive; from > to when there was nothing new. */
  readonly from_block: string
  readonly to_block: string
  /** The next block to read. */
  readonly cursor: string
  readonly submissions: number
  /** Verdicts recorded by this pass, by name. */
  readonly verdicts: Readonly<Partial<Record<VerdictName, number>>>
  readonly not_sampled: number
  readonly already_on_chain: number
  readonly no_verdict: number
  /** A verdict journaled by an earlier run and settled at the start of this one. */
  readonly recovered: "recorded" | "not_recorded" | null
}

/** A verdict this verifier recorded, as it is recorded: for a miner's live output. */
export interface RecordedVerdict {
  readonly roundId: bigint
  readonly chunkId: number
  readonly miner: string
  readonly verdict: VerdictName
  readonly reason: string
}

type Outcome = { readonly _tag: "Verdict"; readonly verdict: VerdictName } | {
  readonly _tag: "NotSampled" | "AlreadyOnChain" | "NoVerdict"
}

/** Blocks asked of the chain at once: bounds one event query (RPC providers cap log ranges) and the memory of a catch-up. */
const blocksPerQuery = 2_000n

/** How often `run` looks for new submissions once it has caught up: about a block time on the devnet and L2s. */
const pollInterval = Duration.seconds(2)

/**
 * Core service: the network's verifier role (DESIGN.md "Verification"). It follows every miner's GradientSubmitted
 * events from a durable cursor, in block order, and records one verdict per sampled submission: fetched, checked,
 * recomputed with this process's Trainer, compared, its report pinned and its hash on chain.
 *
 * Durable like mining: the verdict's signed transaction is journaled before its broadcast, and a start settles a
 * journaled verdict before new work; a verdict of ours already on chain is never sent again; the cursor passes a
 * block only once every submission in it is settled, so a crash resumes there and redoes at most that block (whose
 * settled submissions answer from the chain at once). Submissions are judged one at a time.
 *
 * Parts: verification/evaluate.ts (fetch, checks, recomputation), domain/verdict.ts (the comparison),
 * verification/report.ts, verification/recordVerdict.ts (journal and chain), verification/verifierJournal.ts (the
 * meta keys), verification/sampling.ts, verification/VerifierStats.ts.
 */
export class Verifier extends Context.Service<Verifier, {
  /** Settles a verdict journaled by an earlier run (a crash between journal and chain); none when there is none. */
  readonly recover: Effect.Effect<"recorded" | "not_recorded" | null, MiningError>
  /** Recovers, then judges every submission up to the chain's head, then returns what it did. */
  readonly runOnce: Effect.Effect<VerifierRunSummary, MiningError>
  /** `runOnce` forever, polling; retryable failures are logged and retried, others end it. */
  readonly run: Effect.Effect<never, MiningError>
  /** The `verifier` section of /stats. */
  readonly snapshot: Effect.Effect<VerifierSnapshot>
  /** This verifier's own metrics: what /metrics formats. */
  readonly metricRegistry: Metric.MetricRegistry
  /** Each verdict as it is recorded, from the moment of subscribing. */
  readonly verdicts: Effect.Effect<PubSub.Subscription<RecordedVerdict>, never, Scope.Scope>
}>()("r3mes/services/Verifier") {
  static readonly make = Effect.gen(function*() {
    const chain = yield* Chain
    const store = yield* GradientStore
    const trainer = yield* Trainer
    const journal = yield* Journal
    const config = yield* Settings
    const profile = yield* trainer.profile
    const stats = makeVerifierStats()
    const recorded = yield* PubSub.unbounded<RecordedVerdict>()
    const retry = retrying(config)
    // One pass at a time (`run`'s loop, a `--once`, an admin trigger): two would judge the same chunk twice.
    const singlePass = (yield* Semaphore.make(1)).withPermits(1)

    /** Everything bound to the chain's identity, read on each pass (the chain may be unreachable when built). */
    const bind = Effect.fnUntraced(function*() {
      const identity: MinerIdentity = yield* retry(chain.identity)
      const verifierJournal = makeVerifierJournal(journal, verifierKeys(identity))
      const evaluator = makeEvaluator({ chain, store, trainer, config })
      const recorder = makeVerdictRecorder({ chain, journal: verifierJournal, config, self: identity.miner })
      return { identity, verifierJournal, evaluator, recorder }
    })
    type Bound = Effect.Success<ReturnType<typeof bind>>

    const recoverWith = Effect.fnUntraced(function*(bound: Bound) {
      stats.pending((yield* bound.verifierJournal.intent) === undefined ? 0 : 1)
      const settled = yield* bound.recorder.recoverIntent()
      stats.pending(0)
      if (settled === undefined) return null
      yield* Effect.logInfo(
        `verdict journaled by an earlier run: ${settled._tag === "Recorded" ? "on chain" : `not recorded (${settled.reason})`}`
      )
      return settled._tag === "Recorded" ? "recorded" as const : "not_recorded" as const
    })

    const judge = Effect.fn("Verifier.judge")(function*(bound: Bound, submission: OnChainSubmission): Effect.fn.Return<Outcome, MiningError> {
      const { evaluator, identity, recorder } = bound
      const { chunkId, roundId } = submission
      const sampled = isSampled({ ...identity, verifier: identity.miner, roundId, chunkId, fraction: config.verifySample })
      if (!sampled) return { _tag: "NotSampled" }
      if (Option.isSome(yield* retry(recorder.ownVerdict(roundId, chunkId)))) return { _tag: "AlreadyOnChain" }

      const { judgement, recomputeSeconds } = yield* evaluator.evaluate(submission)
      if (recomputeSeconds !== null) stats.recomputed(recomputeSeconds)
      const report = reportBytes({ identity, submission, judgement, profile, tolerance: config.verifyTolerance })
      const reportCid = yield* retry(store.add(report))
      const reportHash = yield* sha256Hex(report)
      stats.pending(1)
      const recording = yield* recorder.record({ roundId, chunkId, verdict: verdictCodes[judgement.verdict], reportHash, reportCid })
      stats.pending(0)
      if (recording._tag === "NoVerdict") return { _tag: "NoVerdict" }
      const verdict = verdictName(recording.verdict) ?? judgement.verdict
      yield* Effect.logInfo(`round ${roundId} chunk ${chunkId} of ${submission.miner}: ${verdict} (${judgement.reason})`)
      yield* PubSub.publish(recorded, { roundId, chunkId, miner: submission.miner, verdict, reason: judgement.reason })
      return { _tag: "Verdict", verdict }
    })

    const runOnce = Effect.gen(function*() {
      const bound = yield* bind()
      const recovered = yield* recoverWith(bound)
      if (!(yield* retry(chain.isVerifier))) {
        return yield* new AuthenticationError({
          message: `account ${bound.identity.miner} is not a verifier of registry ${bound.identity.registry}`,
          hint: `the registry's owner must call setVerifier(${bound.identity.miner}, true); on the devnet, use the verifier account its JSON names`
        })
      }
      const head = (yield* retry(chain.head)).number
      const from = yield* bound.verifierJournal.cursor(0n)
      const verdicts: Partial<Record<VerdictName, number>> = {}
      let submissions = 0
      let notSampled = 0
      let alreadyOnChain = 0
      let noVerdict = 0
      let cursor = from
      const advance = Effect.fnUntraced(function*(next: bigint) {
        if (next <= cursor) return
        yield* bound.verifierJournal.setCursor(next)
        cursor = next
        stats.cursor(next)
      })
      stats.cursor(from)
      for (let start = from; start <= head; start += blocksPerQuery) {
        const end = start + blocksPerQuery - 1n < head ? start + blocksPerQuery - 1n : head
        for (const submission of yield* retry(chain.submissionsBetween(start, end))) {
          // Every submission of the blocks before this one is settled.
          yield* advance(submission.blockNumber)
          submissions++
          const outcome = yield* judge(bound, submission)
          if (outcome._tag === "Verdict") {
            verdicts[outcome.verdict] = (verdicts[outcome.verdict] ?? 0) + 1
            stats.verdict(outcome.verdict)
          } else if (outcome._tag === "NotSampled") {
            notSampled++
            stats.notSampled()
          } else if (outcome._tag === "AlreadyOnChain") {
            alreadyOnChain++
            stats.alreadyOnChain()
          } else {
            noVerdict++
            stats.noVerdict()
          }
        }
        yield* advance(end + 1n)
      }
      return {
        from_block: from.toString(),
        to_block: head.toString(),
        cursor: cursor.toString(),
        submissions,
        verdicts,
        not_sampled: notSampled,
        already_on_chain: alreadyOnChain,
        no_verdict: noVerdict,
        recovered
      } satisfies VerifierRunSummary
    }).pipe(singlePass, Effect.withSpan("Verifier.runOnce"))

    const run: Effect.Effect<never, MiningError> = runOnce.pipe(
      Effect.catchIf(isRetryable, (error) => Effect.logWarning(`verifier pass failed, trying again: ${error.message}`)),
      Effect.andThen(Effect.sleep(pollInterval)),
      Effect.forever
    )

    return Verifier.of({
      recover: singlePass(Effect.flatMap(bind(), recoverWith)),
      runOnce,
      run,
      snapshot: Effect.sync(stats.snapshot),
      metricRegistry: stats.registry,
      verdicts: PubSub.subscribe(recorded)
    })
  })

  /** Needs the ports (Chain, GradientStore, Trainer, Journal) and Settings. */
  static readonly layer = Layer.effect(Verifier, Verifier.make)
}
