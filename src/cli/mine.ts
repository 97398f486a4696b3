import { Console, Duration, Effect, Option } from "effect"
import { observabilityLayer } from "../app/observability.ts"
import { runCliEffect } from "./errors.ts"
import { makeProgress, summaryJson, summaryTable } from "./progress.ts"
import { runMiner, stopGraceOf } from "../app/runMiner.ts"
import { Command, Flag } from "effect/cli"
import { configToJson, settingsTable, showSetting } from "../domain/MinerConfigSchema.ts"
import { exposedApiWarning } from "../domain/minerSettings.ts"
import { CliExit, ExitCode } from "./exit.ts"
import { armStopWatchdog } from "./stopWatchdog.ts"
import { type LoadedSettings, loadSettings, settingFlags } from "./settingsFlags.ts"

const iterations = Flag.Int("iterations").pipe(
  Flag.withMetavar("N"),
  Flag.withDescription("Stop after N mining transactions (default: run until SIGINT/SIGTERM)."),
  Flag.optional
)

const printConfig = Flag.Boolean("print-config").pipe(
  Flag.withDescription("Print the resolved configuration (value, source, flag; secrets redacted) and exit without mining."),
  Flag.withDefault(false)
)

const json = Flag.Boolean("json").pipe(
  Flag.withDescription("Print a final JSON summary on stdout instead of text."),
  Flag.withDefault(false)
)

const pad = (text: string, width: number): string => text.padEnd(width)

/** The resolved configuration as an aligned table: env, value (secrets as <redacted>), source, flag. */
export const renderConfig = ({ config, sources }: LoadedSettings): string => {
  const rows = settingsTable.map((s) => [s.env, showSetting(s, config), sources[s.env] ?? "default", `--${s.flag}`])
  const widths = [0, 1, 2].map((column) => Math.max(...rows.map((row) => row[column]!.length)))
  return rows.map((row) => row.map((cell, i) => (i < 3 ? pad(cell, widths[i]!) : cell)).join("  ").trimEnd()).join("\n")
}

export const mineCommand = Command.make(
  "mine",
  { settings: settingFlags(), iterations, json, printConfig },
  Effect.fnUntraced(function*(input) {
    if (Option.isSome(input.iterations) && input.iterations.value < 1) {
      yield* Console.error(
        `--iterations ${input.iterations.value} is invalid: expected an integer of at least 1\nhint: omit --iterations to mine until stopped`
      )
      return yield* new CliExit({ code: ExitCode.usage })
    }
    const loaded = yield* loadSettings(input.settings)
    const config = loaded.config
    if (input.printConfig) {
      yield* input.json
        ? Console.log(JSON.stringify({ config: configToJson(config), sources: loaded.sources }, null, 2))
        : Console.log(`Resolved configuration (value, source, flag):\n${renderConfig(loaded)}`)
      return
    }
    const iterationCount = Option.getOrUndefined(input.iterations)
    const progress = makeProgress({ tty: process.stderr.isTTY === true, json: input.json, iterations: iterationCount })
    const run = yield* runCliEffect(
      runMiner(config, {
        iterations: iterationCount,
        onStarted: ({ device, endpoint, recovery, statsUrl }) =>
          Effect.andThen(
            // With --json the console shows only errors, but an API open to the network must not go unnoticed:
            // the miner logged the warning (its file), stderr gets it here.
            Effect.suspend(() => {
              const exposed = input.json ? exposedApiWarning(config.statsHost, statsUrl) : undefined
              return exposed === undefined ? Effect.void : Console.error(exposed)
            }),
            progress.started(statsUrl, recovery, endpoint.devnet ? `the embedded devnet (${endpoint.rpcUrl})` : "the configured chain", device)
          ),
        onFinished: progress.onFinished,
        onVerdict: progress.onVerdict,
        // A stop waits up to the grace for the transactions in flight, then as long again for a fleet takeover
        // under way; past that and 30 s more, or 15 s after a second signal, something does not answer.
        onStopping: (inFlight) =>
          Effect.andThen(
            armStopWatchdog({
              after: Duration.sum(Duration.times(stopGraceOf(config), 2), Duration.seconds(30)),
              what: "stop signal",
              logFile: config.logFile
            }),
            progress.stopping(inFlight)
          ),
        onAborting: () => armStopWatchdog({ after: Duration.seconds(15), what: "second signal", logFile: config.logFile })
      }).pipe(Effect.provide(observabilityLayer(config, {
        console: "stderr",
        consoleLevel: input.json ? "Error" : "Warn",
        consoleWrite: progress.writeLog
      })))
    )
    yield* progress.done
    if (input.json) {
      yield* Console.log(JSON.stringify(summaryJson(run, { iterations: iterationCount ?? null }), null, 2))
    } else {
      yield* Console.log(summaryTable(run))
    }
  })
).pipe(
  Command.withDescription(
    "Mine: claim a chunk, train on it, pin the gradient on IPFS, prove work and submit on chain, as one atomic " +
      "transaction, again and again. Each setting comes from its flag, else its R3MES_* env var, else its default, " +
      "and all are validated before anything starts. Without --rpc-url it starts an embedded devnet and IPFS " +
      "node in the data dir. Exit codes: 0 done, 1 a failure that stopped the miner, 2 invalid configuration or usage."
  ),
  Command.withExamples([
    { command: "r3mes-miner mine --iterations 20", description: "Mine 20 transactions on the embedded devnet" },
    {
      command: "R3MES_PRIVATE_KEY=0x… r3mes-miner mine --rpc-url https://rpc.example --registry 0x…",
      description: "Mine on an existing chain (keep the key in the environment, not on the command line)"
    }
  ])
)
