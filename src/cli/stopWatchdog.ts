import { appendFileSync } from "node:fs"
import { Duration, Effect } from "effect"

/**
 * A stop that does not end. The miner finishes or undoes what is in flight before it exits, and some steps are never
 * cut short (the commit point's journal write, a transaction's last journal write, a database session's release):
 * when what they wait for hangs — a frozen database, chain node or store that keeps its connections open and never
 * answers — the process would wait for it forever, a second Ctrl-C included. Past `after`, it exits as a crash would:
 * every transaction is journaled at its last step, and the next start (in a fleet, another runner once this one is
 * gone) recovers it by the crash rules. Said on stderr and in the log file, with exit code 1. The timer does not keep
 * a process alive that is done otherwise.
 */
export const armStopWatchdog = (options: {
  readonly after: Duration.Duration
  /** What started the stop, for the message ("stop signal", "second signal"). */
  readonly what: string
  readonly logFile: string
}): Effect.Effect<void> =>
  Effect.sync(() => {
    const seconds = Math.round(Duration.toMillis(options.after) / 1000)
    const timer = setTimeout(() => {
      const message = `did not stop within ${seconds} s of the ${options.what}: a step that is never cut short waits ` +
        "for something that does not answer (a frozen database, chain node or IPFS store); exiting as a crash would"
      const hint = "the next start recovers what was in flight from the journal (in a fleet, another runner takes it " +
        "over); check the database, node and store this miner uses"
      try {
        appendFileSync(
          options.logFile,
          `${JSON.stringify({ timestamp: new Date().toISOString(), level: "ERROR", logger: "r3mes_miner", message: `${message}; ${hint}` })}\n`
        )
      } catch {
        // The log file is not writable: stderr still says it.
      }
      process.stderr.write(`\nr3mes-miner: ${message}\nhint: ${hint}\n`)
      process.exit(1)
    }, Duration.toMillis(options.after))
    timer.unref()
  })
