import { Console, Effect, Logger } from "effect"
import { isMiningError, type MiningError } from "../domain/errors.ts"
import { CliExit, ExitCode } from "./exit.ts"

/** A typed failure as an operator reads it: one line (what, with its cause), then one `hint:` line. */
export const formatMiningError = (error: MiningError): string => {
  const lines = [`r3mes-miner: ${error.message}${error.cause !== undefined && !error.message.includes(error.cause) ? ` (${error.cause})` : ""}`]
  if (error.hint !== undefined) lines.push(`hint: ${error.hint}`)
  return lines.join("\n")
}

/** Runs a command's work: a MiningError ends the program with its one-line message and exit code 1. */
export const runCliEffect = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | CliExit, R> =>
  effect.pipe(
    Effect.catch((error: E): Effect.Effect<never, E | CliExit> =>
      isMiningError(error)
        ? Console.error(formatMiningError(error)).pipe(Effect.andThen(Effect.fail(new CliExit({ code: ExitCode.failure }))))
        : Effect.fail(error)
    )
  )

/** Logs to stderr, so stdout carries only a command's output (JSON, CIDs, file contents). */
export const logToStderr = Effect.provideService(Logger.LogToStderr, true)
