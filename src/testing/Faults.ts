import { type Duration, Effect } from "effect"
import type { MiningError } from "../domain/errors.ts"

/**
 * What goes wrong with one method of a test port. Every field is optional; an empty spec (or none) means the call
 * behaves normally. When several are set they apply in this order, per call:
 *
 *   1. the call is counted (`calls` includes failed and hung calls);
 *   2. `latency` is slept (with `Effect.sleep`, so `TestClock` controls it);
 *   3. `hang` suspends the call forever (only interruption ends it, like a peer that never answers);
 *   4. `alwaysFail`, then `failFirst`, then `failWhen` may fail the call without running it;
 *   5. the real in-memory operation runs;
 *   6. `failAfter` may then fail the call even though its effect happened (the answer was lost).
 *
 * `failFirst`, `failAfter` and `failWhen` count calls from the moment the spec was installed (with the layer's
 * options or `setFaults`), so `setFaults({ add: { failFirst: { times: 2, error } } })` in the middle of a test
 * fails the next two calls.
 */
export interface FaultSpec {
  /** The first `times` calls fail with `error` without running the operation; later calls succeed. */
  readonly failFirst?: { readonly times: number; readonly error: MiningError }
  /** Every call fails with this error without running the operation. */
  readonly alwaysFail?: MiningError
  /** Added before every call (including calls that then fail). */
  readonly latency?: Duration.Input
  /** Every call waits forever (interruptible): a service that accepts the request and never answers. */
  readonly hang?: boolean
  /**
   * Decides per call: `callIndex` is 0 for the first call since this spec was installed. Returning an error fails
   * the call without running the operation; `undefined` lets it run.
   */
  readonly failWhen?: (callIndex: number) => MiningError | undefined
  /**
   * The first `times` calls run the operation and then fail with `error`: the side effect happened (a block is
   * pinned, a submission is on chain, a record is saved) but the caller never learns it. The fault that tests
   * idempotency and crash recovery.
   */
  readonly failAfter?: { readonly times: number; readonly error: MiningError }
}

/** Faults per method name of a port; methods not named behave normally. */
export type FaultPlan<K extends string> = Partial<Record<K, FaultSpec>>

export interface FaultInjector<K extends string> {
  /** Applies the current plan's spec for `method` around `effect` each time the returned effect runs. */
  readonly wrap: <A, E, R>(method: K, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | MiningError, R>
  /** Replaces the whole plan (methods not named in `plan` go back to normal). Call counts are kept. */
  readonly set: (plan: FaultPlan<K>) => Effect.Effect<void>
  /** Removes every fault. Call counts are kept. */
  readonly clear: Effect.Effect<void>
  /** How many times `method` was called since the injector was made, including failed and hung calls. */
  readonly calls: (method: K) => Effect.Effect<number>
}

/**
 * Makes the fault injector the test ports share. Its state is per instance: each test layer builds its own, so
 * tests that build their own layers do not see each other's faults or counts.
 */
export const makeFaultInjector = <K extends string>(initial?: FaultPlan<K>): Effect.Effect<FaultInjector<K>> =>
  Effect.sync(() => {
    let plan: FaultPlan<K> = { ...initial }
    const total = new Map<K, number>()
    // Calls since the method's current spec was installed: what failFirst / failAfter / failWhen count.
    const sincePlan = new Map<K, number>()

    const set = (next: FaultPlan<K>): Effect.Effect<void> =>
      Effect.sync(() => {
        plan = { ...next }
        sincePlan.clear()
      })

    const wrap = <A, E, R>(method: K, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | MiningError, R> =>
      Effect.suspend(() => {
        total.set(method, (total.get(method) ?? 0) + 1)
        const index = sincePlan.get(method) ?? 0
        sincePlan.set(method, index + 1)
        const spec = plan[method]
        if (spec === undefined) return effect

        const failure = (): MiningError | undefined => {
          if (spec.alwaysFail !== undefined) return spec.alwaysFail
          if (spec.failFirst !== undefined && index < spec.failFirst.times) return spec.failFirst.error
          return spec.failWhen?.(index)
        }
        const lostAnswer = spec.failAfter !== undefined && index < spec.failAfter.times
          ? spec.failAfter.error
          : undefined

        const run: Effect.Effect<A, E | MiningError, R> = Effect.suspend(() => {
          const error = failure()
          if (error !== undefined) return Effect.fail(error)
          return lostAnswer === undefined ? effect : Effect.flatMap(effect, () => Effect.fail(lostAnswer))
        })
        const afterHang = spec.hang === true ? Effect.andThen(Effect.never, run) : run
        return spec.latency === undefined ? afterHang : Effect.andThen(Effect.sleep(spec.latency), afterHang)
      })

    return {
      wrap,
      set,
      clear: set({}),
      calls: (method) => Effect.sync(() => total.get(method) ?? 0)
    }
  })
