import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { configToJson, settingsTable, showSetting } from "../domain/MinerConfigSchema.ts"
import { CliExit, ExitCode } from "./exit.ts"
import { type LoadedSettings, loadSettings, settingFlags } from "./settingsFlags.ts"

/**
 * The adapters `mine` needs and that do not exist yet (DESIGN.md "Layout"). Each one wired into the composition
 * root leaves this list; when it is empty, `mine` mines.
 */
export const missingAdapters: ReadonlyArray<{ readonly name: string; readonly ports: string; readonly plan: string }> = [
  { name: "chain", ports: "Chain, TaskSource", plan: "viem client + embedded anvil devnet with the MiningRegistry" },
  { name: "ipfs", ports: "GradientStore", plan: "embedded Helia node or a Kubo RPC API" },
  { name: "trainer", ports: "Trainer", plan: "onnxruntime-node local SGD" },
  { name: "journal", ports: "Journal", plan: "node:sqlite journal in the data dir" }
]

const iterations = Flag.Int("iterations").pipe(
  Flag.withMetavar("N"),
  Flag.withDescription("Stop after N mining transactions (default: run until SIGINT/SIGTERM)."),
  Flag.optional
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

const notWiredMessage = [
  "r3mes-miner: the configuration is valid, but mining cannot start: these adapters are not wired yet:",
  ...missingAdapters.map((a) => `  - ${a.name} (${a.ports}): ${a.plan}`),
  "Nothing was mined. Only the proof-of-work reference solver exists so far."
].join("\n")

export const mineCommand = Command.make(
  "mine",
  { settings: settingFlags(), iterations, json },
  Effect.fnUntraced(function*(input) {
    if (Option.isSome(input.iterations) && input.iterations.value < 1) {
      yield* Console.error(
        `--iterations ${input.iterations.value} is invalid: expected an integer of at least 1\nhint: omit --iterations to mine until stopped`
      )
      return yield* new CliExit({ code: ExitCode.usage })
    }
    const loaded = yield* loadSettings(input.settings)
    if (input.json) {
      yield* Console.log(JSON.stringify(
        {
          status: "adapters_not_wired",
          mined: 0,
          iterations: Option.getOrNull(input.iterations),
          missing_adapters: missingAdapters.map((a) => a.name),
          config: configToJson(loaded.config),
          sources: loaded.sources
        },
        null,
        2
      ))
    } else {
      yield* Console.log(`Resolved configuration (value, source, flag):\n${renderConfig(loaded)}`)
    }
    yield* Console.error(notWiredMessage)
    return yield* new CliExit({ code: ExitCode.notWired })
  })
).pipe(
  Command.withDescription(
    "Mine: claim a chunk, train on it, pin the gradient on IPFS, prove work and submit on chain, as one atomic " +
      "transaction, again and again. Each setting comes from its flag, else its R3MES_* env var, else its default, " +
      "and all are validated before anything starts. Exit codes: 0 done, 2 invalid configuration or usage, " +
      "3 adapters not wired yet."
  ),
  Command.withExamples([
    { command: "r3mes-miner mine --iterations 20", description: "Mine 20 transactions on the embedded devnet" },
    {
      command: "R3MES_PRIVATE_KEY=0x… r3mes-miner mine --rpc-url https://rpc.example --registry 0x…",
      description: "Mine on an existing chain (keep the key in the environment, not on the command line)"
    }
  ])
)
