import { Cause, Clock, Effect, Exit, type Scope } from "effect"
import type { MiningError } from "../domain/errors.ts"
import type { RollbackAction } from "../domain/TransactionRecord.ts"

export interface Compensation {
  /** What the compensation does, e.g. "unpin". */
  readonly action: string
  /** What it acts on, e.g. the CID. */
  readonly target: string
  /** Undoes the side effect. Must be idempotent: it may run for a side effect that only half happened. */
  readonly undo: Effect.Effect<void, MiningError>
  /** Checked when the scope closes: true once the side effect must be kept (e.g. it is referenced on chain). */
  readonly keep?: (() => boolean) | undefined
  /** Receives the outcome, done or failed with its cause: a failed compensation is never swallowed. */
  readonly record: (action: RollbackAction) => Effect.Effect<void>
}

/**
 * Registers a compensation in the current scope, to be called before the side effect it undoes. When the scope
 * closes with a failure or an interruption the compensations run in reverse order of registration (a scope's
 * finalizers do); on success they do nothing.
 */
export const registerCompensation = (compensation: Compensation): Effect.Effect<void, never, Scope.Scope> =>
  Effect.addFinalizer((exit) =>
    Exit.isSuccess(exit) || compensation.keep?.() === true
      ? Effect.void
      : Effect.gen(function*() {
        const outcome = yield* Effect.exit(compensation.undo)
        const at = new Date(yield* Clock.currentTimeMillis).toISOString()
        yield* compensation.record(
          Exit.isSuccess(outcome)
            ? { action: compensation.action, target: compensation.target, status: "done", error: null, at }
            : {
              action: compensation.action,
              target: compensation.target,
              status: "failed",
              error: Cause.pretty(outcome.cause),
              at
            }
        )
      })
  )
