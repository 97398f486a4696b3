import { Duration, Effect } from "effect"
import { FleetRoster } from "./FleetRoster.ts"
import { MiningCoordinator } from "./MiningCoordinator.ts"

/**
 * A fleet runner that dies and does not come back leaves unfinished transactions: chunks leased to the account,
 * pinned gradients, maybe a signed submission on its way. A live runner takes them over and recovers them as its own
 * crash recovery would (from the last journaled step: a signed submission finished with the same bytes, a pinned
 * gradient never trained again). Returns how many transactions it took.
 */
export const takeOverGoneRunners = Effect.fn("FleetRecovery.takeOverGoneRunners")(function*(
  /** Which of the runners found gone now are taken over (default all). */
  confirm: (gone: ReadonlyArray<string>) => ReadonlyArray<string> = (gone) => gone
) {
  const roster = yield* FleetRoster
  const coordinator = yield* MiningCoordinator
  let taken = 0
  for (const runner of confirm(yield* roster.gone)) {
    const ids = yield* roster.takeOver(runner)
    if (ids.length === 0) continue
    taken += ids.length
    yield* Effect.logWarning(
      `fleet runner ${runner} is gone with ${ids.length} unfinished transaction(s): ${roster.self} takes them over ` +
        `(${ids.join(", ")})`
    )
  }
  if (taken > 0) yield* coordinator.recoverTransactions({ orphanGrace: "0 seconds" })
  return taken
})

/** One look for gone runners; a failed look is logged (the next one tries again). */
export const lookForGoneRunners = (confirm?: (gone: ReadonlyArray<string>) => ReadonlyArray<string>) =>
  takeOverGoneRunners(confirm).pipe(
    Effect.catch((error) => Effect.logWarning(`looking for gone fleet runners: ${error.message}`))
  )

export interface FleetWatchOptions {
  /** Ends the watch: no new look starts after it, and a takeover under way is finished first. */
  readonly stop: Effect.Effect<void>
  /** How long between looks (default 5 s); the first look is one interval after the start. */
  readonly interval?: Duration.Input | undefined
}

/**
 * Looks for gone runners every `interval` until `stop`, taking over those found gone at two looks in a row; a failed look is logged and tried again. A look is never cut
 * short by `stop`: the transactions it took are this runner's, and a runner that exits with them half-recovered
 * leaves them to whichever runner looks next — none, when it was the last. The caller bounds the wait (its stop
 * grace) and interrupts the watch past it (then they are left to the next look, as a crash would leave them).
 */
export const watchFleet = (options: FleetWatchOptions) =>
  Effect.gen(function*() {
    const interval = Duration.fromInputUnsafe(options.interval ?? "5 seconds")
    const stopped = options.stop.pipe(Effect.as(true))
    // A runner is taken over once it was found gone at two looks in a row: a running runner whose database session
    // dropped (the database restarted) is without its name until it takes it again, within a second or so.
    let goneBefore = new Set<string>()
    const twice = (gone: ReadonlyArray<string>) => {
      const confirmed = gone.filter((runner) => goneBefore.has(runner))
      goneBefore = new Set(gone)
      return confirmed
    }
    while (!(yield* Effect.raceFirst(Effect.sleep(interval).pipe(Effect.as(false)), stopped))) {
      yield* lookForGoneRunners(twice)
    }
  })
