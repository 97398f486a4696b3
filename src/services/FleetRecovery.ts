import { Duration, Effect, Schedule } from "effect"
import { FleetRoster } from "./FleetRoster.ts"
import { MiningCoordinator } from "./MiningCoordinator.ts"

/**
 * A fleet runner that dies and does not come back leaves unfinished transactions: chunks leased to the account,
 * pinned gradients, maybe a signed submission on its way. A live runner takes them over and recovers them as its own
 * crash recovery would (from the last journaled step: a signed submission finished with the same bytes, a pinned
 * gradient never trained again). Returns how many transactions it took.
 */
export const takeOverGoneRunners = Effect.fn("FleetRecovery.takeOverGoneRunners")(function*() {
  const roster = yield* FleetRoster
  const coordinator = yield* MiningCoordinator
  let taken = 0
  for (const runner of yield* roster.gone) {
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

/** Looks for gone runners every `interval`, for as long as it runs; a failed look is logged and tried again. */
export const watchFleet = (interval: Duration.Input = "5 seconds") =>
  takeOverGoneRunners().pipe(
    Effect.catch((error) => Effect.logWarning(`looking for gone fleet runners: ${error.message}`)),
    Effect.repeat(Schedule.spaced(Duration.fromInputUnsafe(interval)))
  )
