import { Clock, Context, Effect, Layer } from "effect"
import { ValidationError } from "../domain/errors.ts"
import { isTerminal } from "../domain/TransactionState.ts"
import { FleetRoster } from "../services/FleetRoster.ts"
import { Journal } from "../services/Journal.ts"
import { type FaultPlan, makeFaultInjector } from "./Faults.ts"
import { InMemoryJournal } from "./InMemoryJournal.ts"

export type FleetRosterMethod = "gone" | "takeOver" | "census"

export interface TestFleetRosterOptions {
  /** This runner's name (the in-memory journal's owner, for what it starts). */
  readonly self: string
  /** Runners running at the start (default none but this one). */
  readonly running?: ReadonlyArray<string>
  readonly faults?: FaultPlan<FleetRosterMethod>
}

/** Control side of the test FleetRoster: which runners run. */
export class TestFleetRoster extends Context.Service<TestFleetRoster, {
  /** A process runs `runner` (true) or none does (false). */
  readonly setRunning: (runner: string, running: boolean) => Effect.Effect<void>
  readonly setFaults: (faults: FaultPlan<FleetRosterMethod>) => Effect.Effect<void>
}>()("r3mes/testing/TestFleetRoster") {
  /**
   * The FleetRoster port on the in-memory journal (the fleet's shared journal in tests), with PgFleetRoster's rules
   * (test/support/fleetRosterContract.ts holds both to them): gone = other owners of unfinished records that do not
   * run; a takeover moves only unfinished records, each with a `taken_over` event, and the old owner's writes are
   * refused after it.
   */
  static readonly layer = (
    options: TestFleetRosterOptions
  ): Layer.Layer<FleetRoster | TestFleetRoster, never, Journal | InMemoryJournal> =>
    Layer.effectContext(Effect.gen(function*() {
      const journal = yield* Journal
      const records = yield* InMemoryJournal
      const faults = yield* makeFaultInjector(options.faults)
      const running = new Set([options.self, ...(options.running ?? [])])

      const unfinishedOf = (runner: string) =>
        Effect.map(records.all, (all) => all.filter((r) => r.owner === runner && !isTerminal(r.state)))

      const gone = faults.wrap(
        "gone",
        Effect.map(records.all, (all) => [
          ...new Set(all.flatMap((r) => (r.owner !== null && !isTerminal(r.state) && !running.has(r.owner) ? [r.owner] : [])))
        ])
      )

      const takeOver = (runner: string) =>
        faults.wrap(
          "takeOver",
          Effect.gen(function*() {
            if (runner === options.self) {
              return yield* new ValidationError({ message: `fleet runner ${runner} cannot take its own work over`, field: "runner" })
            }
            if (running.has(runner)) return []
            const at = new Date(yield* Clock.currentTimeMillis).toISOString()
            const taken = yield* unfinishedOf(runner)
            for (const record of taken) {
              yield* records.takeOver(record.transaction_id, options.self)
              yield* journal.save({ ...record, owner: options.self }, {
                at,
                state: record.state,
                event: "taken_over",
                detail: `from runner ${runner}, gone, by ${options.self}`
              }).pipe(Effect.orDie)
            }
            return taken.map((r) => r.transaction_id)
          })
        )

      const census = faults.wrap("census", Effect.map(records.all, (all) => {
        const byRunner = new Map<string, Record<string, number>>([[options.self, {}]])
        for (const r of all) {
          if (r.owner === null) continue
          const counts = byRunner.get(r.owner) ?? {}
          byRunner.set(r.owner, { ...counts, [r.state]: (counts[r.state] ?? 0) + 1 })
        }
        return [...byRunner].sort(([a], [b]) => a.localeCompare(b))
          .map(([runner, transactions]) => ({ runner, running: running.has(runner), transactions }))
      }))

      const port = FleetRoster.of({ self: options.self, gone, takeOver, census })
      const control = TestFleetRoster.of({
        setRunning: (runner, on) => Effect.sync(() => void (on ? running.add(runner) : running.delete(runner))),
        setFaults: faults.set
      })
      return Context.make(FleetRoster, port).pipe(Context.add(TestFleetRoster, control))
    }))
}
