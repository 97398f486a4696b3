import { Runtime, Schema } from "effect"

/** The process exit codes of r3mes-miner, documented in the README. */
export const ExitCode = {
  ok: 0,
  /** Anything unexpected. */
  failure: 1,
  /** Bad configuration or command line: nothing was started. */
  usage: 2,
  /** Configuration valid, but the adapters `mine` needs are not wired yet: nothing was mined. */
  notWired: 3
} as const

/**
 * Ends the program with `code` after its message was already printed (so the runtime prints nothing more).
 * `NodeRuntime.runMain` reads both markers.
 */
export class CliExit extends Schema.TaggedError<CliExit>()("CliExit", { code: Schema.Number }) {
  override get [Runtime.errorExitCode](): number {
    return this.code
  }
  override readonly [Runtime.errorReported] = false
}

/**
 * The CLI's runtime teardown: once the program is done, the process ends with its exit code, whatever a library left
 * running behind it. `NodeRuntime.runMain` alone exits only on a failure or a signal, and otherwise waits for Node's
 * event loop to drain: a fleet runner whose cluster shutdown was given up (`boundedShutdown`: seen after a freeze past
 * the lease) kept that shutdown's loops, timers and sockets, and its process never ended. Everything the program
 * holds was closed before this runs, and what a cut-short background task leaves is what a crash leaves (the journal
 * and the chain make that safe). stdout and stderr are drained first, on a failure too.
 */
export const endProcessOnceDone: Runtime.Teardown = (exit) =>
  // Not NodeRuntime's own exit: on a failure or a signal it calls process.exit at once, and a reader of a pipe got
  // 146 KiB of 1 MiB printed before (test/e2e/process-end.test.ts).
  Runtime.defaultTeardown(exit, (code) => {
    process.exitCode = code
    let open = 2
    const drained = () => {
      if (--open === 0) process.exit(code)
    }
    process.stdout.write("", drained)
    process.stderr.write("", drained)
    // A stream that never drains (a reader that stopped reading) does not hold the process either.
    setTimeout(() => process.exit(code), 5_000)
  })
