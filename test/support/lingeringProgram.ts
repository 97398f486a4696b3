import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { CliExit, endProcessOnceDone } from "../../src/cli/exit.ts"

/**
 * A program that is done but leaves a fiber running behind it (as a fleet runner's cluster shutdown given up does),
 * after printing 1 MiB on stdout. Arguments: `natural` (NodeRuntime's own teardown), `fail` (ends with exit code 3).
 */
const args = process.argv.slice(2)
const main = Effect.gen(function*() {
  yield* Effect.forkDetach(Effect.forever(Effect.sleep("1 second")))
  process.stdout.write("x".repeat(1 << 20))
  if (args.includes("fail")) return yield* new CliExit({ code: 3 })
})
NodeRuntime.runMain(main, args.includes("natural") ? {} : { teardown: endProcessOnceDone })
