import { Context, type Effect } from "effect"
import type { MiningError } from "../domain/errors.ts"

/**
 * Port: the runners of a fleet (DESIGN.md "Fleet") as its shared database knows them. A runner is running while a
 * process holds its name; one that is not, with unfinished transactions in the journal, is gone, and a live runner
 * takes its work over and recovers it by the usual rules (services/FleetRecovery.ts).
 */
/** One runner as the fleet's journal knows it: whether a process runs it, and its transactions by state. */
export interface RunnerCensus {
  readonly runner: string
  readonly running: boolean
  readonly transactions: Readonly<Record<string, number>>
}

export class FleetRoster extends Context.Service<FleetRoster, {
  /** This runner's name. */
  readonly self: string
  /** Runners other than this one with unfinished transactions in the journal that no process is running. */
  readonly gone: Effect.Effect<ReadonlyArray<string>, MiningError>
  /**
   * Makes `runner`'s unfinished transactions this runner's, if no process runs `runner` (its name is held meanwhile:
   * two takers, or the runner starting again, cannot interleave). Each gets a `taken_over` event; its old owner's
   * writes are refused from then on (Journal's `takenOver`). The ids taken; none when `runner` is running.
   */
  readonly takeOver: (runner: string) => Effect.Effect<ReadonlyArray<string>, MiningError>
  /** Every runner with transactions in the journal, and this one, by name: the fleet as /stats shows it. */
  readonly census: Effect.Effect<ReadonlyArray<RunnerCensus>, MiningError>
}>()("r3mes/services/FleetRoster") {}
