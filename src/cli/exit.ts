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
