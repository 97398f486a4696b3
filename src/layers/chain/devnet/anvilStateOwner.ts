import { readFileSync, rmSync, writeFileSync } from "node:fs"
import { Clock, Effect } from "effect"
import { ResourceError } from "../../../domain/errors.ts"
import { runsWithArgument } from "../../process/liveness.ts"
import { stopGraceMs } from "./anvilProcess.ts"

/**
 * A dead parent's anvil still writes its state file for a moment after the parent is gone (the watchdog's SIGTERM →
 * dump → exit), so a restart right away could load a half-written file, or have its chain overwritten by the old
 * dump: `FILE.pid` names the anvil that owns FILE, and a new one starts only once that one has exited.
 */

/** Whether `pid` is an anvil on this state file. */
const ownsStateFile = (pid: number, stateFile: string): boolean => runsWithArgument(pid, stateFile)

const pidFileOf = (stateFile: string): string => `${stateFile}.pid`

/**
 * Waits until no earlier anvil owns the state file: one whose parent died is dumping its chain there and exits on
 * its own (its watchdog escalates to SIGKILL after the grace period), so this waits a little longer than that.
 */
export const awaitPreviousOwner = Effect.fnUntraced(function*(stateFile: string) {
  const pidFile = pidFileOf(stateFile)
  let previous: number
  try {
    previous = Number.parseInt(readFileSync(pidFile, "utf8"), 10)
  } catch {
    return
  }
  if (!Number.isSafeInteger(previous) || previous === process.pid) return
  const start = yield* Clock.currentTimeMillis
  while (ownsStateFile(previous, stateFile)) {
    if ((yield* Clock.currentTimeMillis) - start > stopGraceMs + 2_000) {
      return yield* new ResourceError({
        message: `anvil (pid ${previous}) still runs on the chain state file ${stateFile}`,
        resource: "anvil",
        hint: `stop that anvil (kill ${previous}) or give this devnet another data dir`
      })
    }
    yield* Effect.sleep("25 millis")
  }
  yield* Effect.logDebug(`anvil: the previous owner (pid ${previous}) of ${stateFile} is gone`)
})

/** Records a started anvil as the state file's owner. Best effort: without it a restart only loses the wait. */
export const recordOwner = (stateFile: string, pid: number): Effect.Effect<void> =>
  Effect.sync(() => {
    try {
      writeFileSync(pidFileOf(stateFile), `${pid}\n`)
    } catch {
      // An unwritable data dir shows up soon enough in anvil's own dump.
    }
  })

/** Drops the record once its anvil has exited (a record naming another pid is left alone). */
export const dropOwner = (stateFile: string, pid: number): Effect.Effect<void> =>
  Effect.sync(() => {
    try {
      if (Number.parseInt(readFileSync(pidFileOf(stateFile), "utf8"), 10) === pid) rmSync(pidFileOf(stateFile))
    } catch {
      // already gone
    }
  })
