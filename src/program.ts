import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { CliError, CliOutput, Command } from "effect/cli"
import packageJson from "../package.json" with { type: "json" }
import { CliExit, endProcessOnceDone, ExitCode } from "./cli/exit.ts"
import { devicesCommand } from "./cli/devices.ts"
import { gradientCommand } from "./cli/gradient.ts"
import { aggregateCommand, roundsCommand } from "./cli/rounds.ts"
import { ipfsCommand } from "./cli/ipfs.ts"
import { journalCommand } from "./cli/journal.ts"
import { devnetCommand } from "./cli/devnet.ts"
import { mineCommand } from "./cli/mine.ts"
import { statsCommand } from "./cli/stats.ts"
import { statusCommand } from "./cli/status.ts"
import { verifyCommand } from "./cli/verify.ts"

/**
 * The program: `r3mes-miner <subcommand>`. Each subcommand lives in src/cli/ and turns flags + env into a validated
 * configuration; the wiring of that configuration into layers is src/app/ (the composition root, also the library's
 * entry: `minerLayer`, `runMiner`, the adapter choice), so a command never picks an adapter itself. Add a
 * subcommand by writing src/cli/<name>.ts and listing it here.
 */
export const r3mesMiner = Command.make("r3mes-miner").pipe(
  Command.withDescription(
    "Miner of R3MES, a Proof-of-Useful-Work network: trains a model on an assigned data chunk, pins the gradient " +
      "on IPFS and submits it on chain with a proof of work, atomically. Run `r3mes-miner mine --help` for every setting."
  ),
  Command.withSubcommands([
    mineCommand,
    verifyCommand,
    devnetCommand,
    statusCommand,
    statsCommand,
    journalCommand,
    ipfsCommand,
    gradientCommand,
    roundsCommand,
    aggregateCommand,
    devicesCommand
  ])
)

export const main = Command.run(r3mesMiner, { version: packageJson.version }).pipe(
  // effect/cli has already printed usage errors (with the help); only the exit code is left to set.
  Effect.catchIf(CliError.isCliError, () => Effect.fail(new CliExit({ code: ExitCode.usage }))),
  // The global flags (--help, --version, --completions, --log-level…) in one line, so the miner's own flags stand out.
  Effect.provide(CliOutput.layer(CliOutput.defaultFormatter({ globalFlags: "summary" }))),
  Effect.provide(NodeServices.layer)
)

NodeRuntime.runMain(main, { teardown: endProcessOnceDone })
