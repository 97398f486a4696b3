import { Effect } from "effect"
import type { Scope } from "effect"

/**
 * Takes SIGINT and SIGTERM over for the scope (the runtime's handlers would interrupt the whole program at once)
 * and gives them back afterwards. `onSignal` gets the count: the first signal and a second one mean different things
 * to the miner.
 */
export const withSignalHandler = (onSignal: (count: number) => void): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const saved = { SIGINT: process.listeners("SIGINT"), SIGTERM: process.listeners("SIGTERM") }
      let count = 0
      const handler = () => onSignal(++count)
      for (const signal of ["SIGINT", "SIGTERM"] as const) {
        process.removeAllListeners(signal)
        process.on(signal, handler)
      }
      return { saved, handler }
    }),
    ({ handler, saved }) =>
      Effect.sync(() => {
        for (const signal of ["SIGINT", "SIGTERM"] as const) {
          process.removeListener(signal, handler)
          for (const listener of saved[signal]) process.on(signal, listener as () => void)
        }
      })
  ).pipe(Effect.asVoid)
