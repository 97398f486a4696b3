import { type Context, Effect, Layer } from "effect"
import { ValidationError } from "../domain/errors.ts"
import type { MinerAdapters } from "../app/minerLayer.ts"
import { Chain } from "../services/Chain.ts"
import { GradientStore } from "../services/GradientStore.ts"
import { Journal } from "../services/Journal.ts"
import { TaskSource } from "../services/TaskSource.ts"
import { Trainer } from "../services/Trainer.ts"

/**
 * TEST HOOK — crash points: named places in a mining transaction where a chaos test can have the miner die on the
 * spot (SIGKILL to itself: no finalizer, no compensation, no flush), to prove that recovery at the next start
 * finishes or cleanly undoes whatever the crash left half done. Nothing happens unless `R3MES_CRASH_AT` is set;
 * never set it on a real miner.
 *
 *   R3MES_CRASH_AT=after_pin:3        SIGKILL the 3rd time any transaction of this process passes "after_pin"
 *
 * The count is per process and spans all transactions, those that recovery resumes included. The points are
 * decorations of the ports (`withCrashPoints`), not calls woven through the coordinator: each fires when the port
 * call that reaches it returns.
 */
export const crashPointNames = [
  /** The pending record is journaled; nothing else happened. */
  "after_create",
  /** The envelope is trained; the record still says `training`. */
  "after_training",
  /** The CID is journaled (pin_intent); nothing is pinned yet. */
  "after_pin_intent",
  /** The envelope is pinned; nothing is on chain. */
  "after_pin",
  /** The PoW nonce is journaled; nothing is signed yet. */
  "after_pow",
  /** The signed transaction is journaled (submit_intent) and not broadcast. */
  "after_submit_intent",
  /** The submission is on chain (receipt read); the journal does not know yet. */
  "after_broadcast",
  /** The task is marked complete (or failed to be); `committed` is not journaled yet. */
  "after_task_complete"
] as const

/**
 * The verifier's points (DESIGN.md "Verification"), apart from the mining transaction's: a mining transaction passes
 * every point of `crashPointNames`, and none of these.
 */
export const verifierCrashPointNames = [
  /**
   * The verdict's signed transaction is journaled (the intent) and not broadcast: the riskiest window, where only
   * the journal knows the verdict and a restart must send those very bytes, not sign a second verdict.
   */
  "before_verdict_broadcast",
  /** The verdict is on chain (receipt read); the verifier's journal does not know yet. */
  "after_verdict"
] as const

export type CrashPoint = typeof crashPointNames[number] | typeof verifierCrashPointNames[number]

const allCrashPointNames: ReadonlyArray<CrashPoint> = [...crashPointNames, ...verifierCrashPointNames]

/** Where and when to crash: the `nth` pass (1-based) through `point`. */
export interface CrashPlan {
  readonly point: CrashPoint
  readonly nth: number
}

export interface CrashPointsShape {
  /** Passes a crash point: a no-op, except under a crash plan whose turn it is (then the process dies). */
  readonly hit: (point: CrashPoint) => Effect.Effect<void>
}

/** The environment variable the composition root reads. */
export const CRASH_AT_ENV = "R3MES_CRASH_AT"

/**
 * `point:nth` (or `point`, meaning the 1st pass), `point` one of `known`: the points the process can pass (a
 * verifier passes none of the mining transaction's), so a plan that could never fire is refused at start instead of
 * letting a chaos test pass without its crash.
 */
export const parseCrashPlan = (
  spec: string,
  known: ReadonlyArray<CrashPoint> = allCrashPointNames
): Effect.Effect<CrashPlan, ValidationError> => {
  const [name = "", nthText = "1", ...rest] = spec.trim().split(":")
  const nth = Number(nthText)
  if (!known.includes(name as CrashPoint) || rest.length > 0 || !Number.isSafeInteger(nth) || nth < 1) {
    return Effect.fail(
      new ValidationError({
        message: `${CRASH_AT_ENV}=${spec} is not a crash plan`,
        field: CRASH_AT_ENV,
        hint: `a test hook: POINT[:N], POINT one of ${known.join(", ")}, N ≥ 1; unset it to run normally`
      })
    )
  }
  return Effect.succeed({ point: name as CrashPoint, nth })
}

/** Counts passes and calls `die` on the plan's one; `die` defaults to SIGKILL of this process. */
export const crashPointsOf = (plan: CrashPlan, die: () => void = killThisProcess): CrashPointsShape => {
  let passes = 0
  return {
    hit: (point) =>
      Effect.sync(() => {
        if (point !== plan.point) return
        passes += 1
        if (passes === plan.nth) die()
      })
  }
}

/**
 * SIGKILL of this very process: the kernel ends it before the call returns control to any JavaScript. Written to
 * stderr first, so a test's log says why the miner died.
 */
const killThisProcess = (): void => {
  process.stderr.write(`${CRASH_AT_ENV}: crash point reached, killing process ${process.pid}\n`)
  process.kill(process.pid, "SIGKILL")
}

/**
 * The crash points the environment asks for: none (no-op) unless `R3MES_CRASH_AT` is set; a point outside `known`
 * (default: every point) is refused.
 */
export const crashPointsFromEnv = (
  env: Readonly<Record<string, string | undefined>> = process.env,
  known: ReadonlyArray<CrashPoint> = allCrashPointNames
): Effect.Effect<CrashPointsShape | undefined, ValidationError> => {
  const spec = env[CRASH_AT_ENV]
  if (spec === undefined || spec === "") return Effect.succeed(undefined)
  return Effect.map(parseCrashPlan(spec, known), (plan) => crashPointsOf(plan))
}

/** The journal events after which a crash point fires. */
const afterEvent: Readonly<Record<string, CrashPoint>> = {
  created: "after_create",
  pin_intent: "after_pin_intent",
  pow_solved: "after_pow",
  submit_intent: "after_submit_intent"
}

const decorate = <I, S, E, R>(
  tag: Context.Service<I, S>,
  layer: Layer.Layer<I, E, R>,
  f: (service: S) => S
): Layer.Layer<I, E, R> =>
  Layer.effect(tag, Effect.gen(function*() {
    return f(yield* tag)
  })).pipe(Layer.provide(layer))

/**
 * The verdict's points on a Chain service: `before_verdict_broadcast` once `beforeBroadcast` (the journaled intent)
 * succeeded, `after_verdict` once the receipt is read.
 */
const verdictCrashPoints = (chain: Chain["Service"], points: CrashPointsShape): Chain["Service"] => ({
  ...chain,
  recordVerdict: (record, beforeBroadcast) =>
    chain.recordVerdict(record, (signed) =>
      (beforeBroadcast === undefined ? Effect.void : beforeBroadcast(signed)).pipe(
        Effect.andThen(points.hit("before_verdict_broadcast"))
      )).pipe(Effect.tap(() => points.hit("after_verdict")))
})

/** A verifier's chain (`r3mes-miner verify`) with the verifier's crash points of `points`. */
export const withVerifierCrashPoints = <E, R>(chain: Layer.Layer<Chain, E, R>, points: CrashPointsShape): Layer.Layer<Chain, E, R> =>
  decorate(Chain, chain, (service) => verdictCrashPoints(service, points))

/** The miner's ports with the crash points of `points` fired after the port calls that reach them. */
export const withCrashPoints = <E, R>(adapters: MinerAdapters<E, R>, points: CrashPointsShape): MinerAdapters<E, R> => ({
  ...adapters,
  trainer: decorate(Trainer, adapters.trainer, (trainer) => ({
    ...trainer,
    train: (task, miner) => trainer.train(task, miner).pipe(Effect.tap(() => points.hit("after_training")))
  })),
  gradientStore: decorate(GradientStore, adapters.gradientStore, (store) => ({
    ...store,
    add: (bytes) => store.add(bytes).pipe(Effect.tap(() => points.hit("after_pin")))
  })),
  chain: decorate(Chain, adapters.chain, (chain) => ({
    ...verdictCrashPoints(chain, points),
    submitGradient: (submission, beforeBroadcast) =>
      chain.submitGradient(submission, beforeBroadcast).pipe(Effect.tap(() => points.hit("after_broadcast")))
  })),
  journal: decorate(Journal, adapters.journal, (journal) => ({
    ...journal,
    save: (record, event) =>
      journal.save(record, event).pipe(
        Effect.tap(() => (afterEvent[event.event] === undefined ? Effect.void : points.hit(afterEvent[event.event]!)))
      )
  })),
  taskSource: decorate(TaskSource, adapters.taskSource, (tasks) => ({
    ...tasks,
    complete: (task, receipt) => tasks.complete(task, receipt).pipe(Effect.onExit(() => points.hit("after_task_complete")))
  }))
})
