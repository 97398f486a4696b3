import { Console, Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { observabilityLayer } from "../app/observability.ts"
import { runVerifier } from "../app/runVerifier.ts"
import { runCliEffect } from "./errors.ts"
import { printJson } from "./monitorClient.ts"
import { loadSettings, settingFlags } from "./settingsFlags.ts"

const once = Flag.Boolean("once").pipe(
  Flag.withDescription("Judge every submission up to the chain's head, then exit (for scripts); default: follow until stopped."),
  Flag.withDefault(false)
)

const json = Flag.Boolean("json").pipe(
  Flag.withDescription("With --once: print the pass's summary as JSON (blocks read, verdicts by name, not sampled, already on chain)."),
  Flag.withDefault(false)
)

/** `r3mes-miner verify`: the network's verifier role (DESIGN.md "Verification"). */
export const verifyCommand = Command.make(
  "verify",
  { settings: settingFlags(), once, json },
  Effect.fnUntraced(function*(input) {
    const { config } = yield* loadSettings(input.settings)
    const summary = yield* runCliEffect(
      runVerifier(config, {
        once: input.once,
        onStarted: ({ devnet, registry, rpcUrl, statsUrl }) =>
          input.json ? Effect.void : Console.error(
            `verifying submissions to ${registry} on ${devnet ? `the embedded devnet (${rpcUrl})` : "the configured chain"}; ` +
              `monitoring API at ${statsUrl}`
          )
      }).pipe(Effect.provide(observabilityLayer(config, { console: "stderr", consoleLevel: input.json ? "Error" : "Warn" })))
    )
    if (input.json) return yield* printJson(summary)
    const verdicts = Object.entries(summary.verdicts).map(([name, n]) => `${name} ${n}`).join(", ") || "none"
    yield* Console.log(
      `blocks ${summary.from_block}..${summary.to_block}: ${summary.submissions} submissions; verdicts recorded: ${verdicts}; ` +
        `${summary.not_sampled} not sampled, ${summary.already_on_chain} already on chain; next block ${summary.cursor}`
    )
  })
).pipe(
  Command.withDescription(
    "Verify: follow every miner's submissions on the registry, recompute each sampled gradient (same profile: bit " +
      "for bit; another: within --verify-tolerance), and record one verdict per submission on chain, with its " +
      "report pinned. Durable like mining (a cursor and journaled verdicts in --data-dir; a restart resumes, never " +
      "sending a verdict twice). The account (R3MES_PRIVATE_KEY) must be one of the registry's verifiers; without " +
      "--rpc-url it verifies on the data dir's devnet as its verifier account. Exit codes: 0 done, 1 a failure, 2 usage."
  ),
  Command.withExamples([
    {
      command: "R3MES_PRIVATE_KEY=0x… r3mes-miner verify --rpc-url http://127.0.0.1:8545 --registry 0x… --data-dir ./verifier",
      description: "Verify on a running devnet (its JSON names the verifier account and key)"
    },
    { command: "r3mes-miner verify --once --json --data-dir ./verifier …", description: "One pass, then a JSON summary" }
  ])
)
