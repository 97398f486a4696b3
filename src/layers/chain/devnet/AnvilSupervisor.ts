import { Clock, Deferred, Duration, Effect, Exit, Ref, Result, Scope } from "effect"
import { type MiningError, ResourceError, type TimeoutError, ValidationError } from "../../../domain/errors.ts"
import { type AnvilExit, type AnvilInstance, type AnvilOptions, startAnvil } from "./Anvil.ts"

/** What a supervised anvil is doing; snake_case, because it goes as it is into the miner's /health and /ready. */
export interface AnvilHealth {
  /** `restarting`: it died on its own and is being started again; `down`: it could not be, for good. */
  readonly state: "running" | "restarting" | "down"
  /** Successful restarts so far. */
  readonly restarts: number
  /** How the last anvil that died on its own ended: pid, signal or exit code, the last line of its stderr. */
  readonly last_exit: string | null
  /**
   * Why the last restart attempt failed (kept after a later success: `state` says whether anvil is up), or why it is
   * down.
   */
  readonly last_error: string | null
}

export interface RestartPolicy {
  /** Restart attempts (failed ones included) allowed within `window`; one more death and anvil is down. Default 3. */
  readonly maxRestarts?: number
  /** Default 60 s. */
  readonly window?: Duration.Input
  /** The wait before the first attempt of a window, doubled for each further one. Default 250 ms. */
  readonly backoff?: Duration.Input
}

export interface SupervisedAnvil {
  /** The anvil process now: another pid after each restart; the same port, chain id and state file. */
  readonly current: () => AnvilInstance
  readonly health: Effect.Effect<AnvilHealth>
  /** Never completes while anvil runs or is being restarted; fails once it is down for good. */
  readonly failure: Effect.Effect<never, ResourceError>
  /**
   * Watches anvil until the scope closes (the watcher stops before anvil does, so a normal stop is never taken for
   * a death): an anvil that dies on its own is started again on the same port, then `afterRestart` runs on it. A
   * failed `afterRestart` takes anvil down for good, as do failed attempts past the policy's budget.
   */
  readonly supervise: (
    afterRestart: (anvil: AnvilInstance) => Effect.Effect<void, MiningError>
  ) => Effect.Effect<void, never, Scope.Scope>
}

const describeExit = (pid: number, exit: AnvilExit): string => {
  const how = exit.signal !== null ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`
  const lastLine = exit.stderr.split("\n").at(-1)?.trim()
  return `pid ${pid} ${how}${lastLine ? ` (${lastLine.slice(0, 200)})` : ""}`
}

/**
 * {@link startAnvil}, supervised (DESIGN.md "Durability": an embedded devnet that dies is restarted from its state or
 * the miner stops with a clear error). Restarting on the same port keeps every client's RPC URL valid; in persistent
 * mode the chain comes back as of its last state dump (`stateIntervalSeconds` bounds what a SIGKILL loses), without
 * a state file it comes back empty. Call `supervise` once the chain is set up.
 */
export const startSupervisedAnvil = Effect.fn("startSupervisedAnvil")(function*(
  options: AnvilOptions = {},
  policy: RestartPolicy = {}
): Effect.fn.Return<SupervisedAnvil, ResourceError | TimeoutError | ValidationError, Scope.Scope> {
  const maxRestarts = policy.maxRestarts ?? 3
  if (!Number.isSafeInteger(maxRestarts) || maxRestarts < 0) {
    return yield* new ValidationError({
      message: `anvil restart policy maxRestarts = ${maxRestarts} is not a whole number ≥ 0`,
      field: "maxRestarts"
    })
  }
  const window = Duration.fromInputUnsafe(policy.window ?? "60 seconds")
  const windowMs = Duration.toMillis(window)
  const backoffMs = Duration.toMillis(Duration.fromInputUnsafe(policy.backoff ?? "250 millis"))

  // Each process in a scope of its own: closed when it dies (its watchdog must not outlive it, the pid may be
  // reused), and the one of the running process when the enclosing scope closes.
  let scope = yield* Scope.make()
  // `closing` keeps a stop from being taken for a death even if the enclosing scope ran its finalizers in parallel.
  let closing = false
  yield* Effect.addFinalizer(() =>
    Effect.suspend(() => {
      closing = true
      return Scope.close(scope, Exit.void)
    })
  )
  let current = yield* startAnvil(options).pipe(Scope.provide(scope))
  const health = yield* Ref.make<AnvilHealth>({ state: "running", restarts: 0, last_exit: null, last_error: null })
  const down = yield* Deferred.make<never, ResourceError>()

  const goDown = Effect.fnUntraced(function*(error: ResourceError) {
    yield* Scope.close(scope, Exit.void)
    yield* Ref.update(health, (h) => ({ ...h, state: "down" as const, last_error: error.message }))
    yield* Effect.logError(`anvil is down for good: ${error.message}${error.hint ? ` (hint: ${error.hint})` : ""}`)
    yield* Deferred.fail(down, error)
  })

  /** Start times of the restart attempts within the window. */
  const attempts: Array<number> = []

  /** Starts anvil again: true once it runs, false once it is down (or the scope is closing). */
  const restart = Effect.fnUntraced(function*(
    died: string,
    afterRestart: (anvil: AnvilInstance) => Effect.Effect<void, MiningError>
  ) {
    let lastError: ResourceError | TimeoutError | ValidationError | undefined
    for (;;) {
      const now = yield* Clock.currentTimeMillis
      while (attempts.length > 0 && now - attempts[0]! > windowMs) attempts.shift()
      if (attempts.length >= maxRestarts) {
        yield* goDown(
          new ResourceError({
            message: `the devnet's anvil (port ${current.port}) ${died}, and ${
              maxRestarts === 0
                ? "restarts are off"
                : `${attempts.length} restart${attempts.length === 1 ? "" : "s"} within ${Duration.format(window)} ` +
                  "did not keep it up"
            }${lastError === undefined ? "" : `: ${lastError.message}`}`,
            resource: "anvil",
            ...(lastError?.cause === undefined ? {} : { cause: lastError.cause }),
            hint: lastError?.hint ??
              "anvil keeps dying: look for what kills it (out of memory? another tool?), then start again"
          })
        )
        return false
      }
      yield* Effect.sleep(backoffMs * 2 ** attempts.length)
      if (closing) return false
      attempts.push(yield* Clock.currentTimeMillis)
      scope = yield* Scope.make()
      const started = yield* startAnvil({ ...options, port: current.port }).pipe(Scope.provide(scope), Effect.result)
      if (Result.isFailure(started)) {
        lastError = started.failure
        yield* Scope.close(scope, Exit.void)
        yield* Ref.update(health, (h) => ({ ...h, last_error: lastError!.message }))
        yield* Effect.logWarning(`anvil restart attempt ${attempts.length} failed: ${lastError.message}`)
        continue
      }
      current = started.success
      const checked = yield* Effect.result(afterRestart(current))
      if (Result.isFailure(checked)) {
        const e = checked.failure
        yield* goDown(
          new ResourceError({
            message: `the devnet's anvil was restarted (pid ${current.pid}), but ${e.message}`,
            resource: "anvil",
            ...(e.cause === undefined ? {} : { cause: e.cause }),
            hint: e.hint ?? "restart the miner: it starts a new devnet"
          })
        )
        return false
      }
      const restarts = (yield* Ref.get(health)).restarts + 1
      yield* Ref.update(health, (h) => ({ ...h, state: "running" as const, restarts }))
      yield* Effect.logWarning(`anvil restarted: pid ${current.pid} on port ${current.port} (restart ${restarts})`)
      return true
    }
  })

  const supervise: SupervisedAnvil["supervise"] = Effect.fnUntraced(
    function*(afterRestart: (anvil: AnvilInstance) => Effect.Effect<void, MiningError>) {
      for (;;) {
        const died = describeExit(current.pid, yield* current.exited)
        if (closing) return
        yield* Ref.update(health, (h) => ({ ...h, state: "restarting" as const, last_exit: died }))
        yield* Effect.logWarning(
          `anvil (port ${current.port}) ${died}: restarting it ${
            current.stateFile === undefined ? "(no state file: an empty chain)" : `from ${current.stateFile}`
          }`
        )
        yield* Scope.close(scope, Exit.void)
        if (!(yield* restart(died, afterRestart))) return
      }
    },
    (watching) => Effect.asVoid(Effect.forkScoped(watching))
  )

  return {
    current: () => current,
    health: Ref.get(health),
    failure: Deferred.await(down),
    supervise
  } satisfies SupervisedAnvil
})
