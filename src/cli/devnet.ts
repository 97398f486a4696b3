import { Console, Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { startDataDirDevnet } from "../app/chainEndpoint.ts"
import { startDevnetVerifier } from "../app/devnetVerifier.ts"
import { makeLearningPlan, startRoundCoordinator } from "../app/learningRounds.ts"
import { settingByEnv } from "../domain/MinerConfigSchema.ts"
import { devnetInfoJson } from "../layers/chain/devnet/Devnet.ts"
import { logToStderr, runCliEffect } from "./errors.ts"
import { loadSettings, settingFlags } from "./settingsFlags.ts"

const port = Flag.Int("port").pipe(
  Flag.withMetavar("PORT"),
  Flag.withDescription("anvil's port on 127.0.0.1 (default 8545; 0 picks a free one)."),
  Flag.withDefault(8545)
)

const verify = Flag.Boolean("verify").pipe(
  Flag.withDescription(
    "Run the devnet's verifier too, with an embedded IPFS node that listens (R3MES_IPFS_LISTEN, default " +
      "127.0.0.1, any port): its addresses are the JSON's \"ipfs\"; miners put one in R3MES_IPFS_PEERS so it fetches " +
      "their gradients. It also makes the rounds learning rounds: the devnet's round coordinator aggregates each " +
      "round's accepted gradients into the next round's model, pinned on that node (miners fetch it by CID). " +
      "Without it, run `r3mes-miner verify` with the JSON's verifier key."
  ),
  Flag.withDefault(false)
)

/** `r3mes-miner devnet`: a persistent local chain for other processes, until SIGINT/SIGTERM. */
export const devnetCommand = Command.make(
  "devnet",
  { settings: settingFlags([settingByEnv("R3MES_DATA_DIR")!, settingByEnv("R3MES_POW_DIFFICULTY")!]), port, verify },
  Effect.fnUntraced(function*(input) {
    const { config } = yield* loadSettings(input.settings)
    yield* runCliEffect(
      Effect.gen(function*() {
        // With its verifier (and so an IPFS node) the devnet runs learning rounds: its round coordinator aggregates
        // each round's accepted gradients into the next round's model. Without, the throughput rounds.
        const learning = input.verify
          ? makeLearningPlan({ difficulty: config.powDifficulty, judged: () => config.verifySample >= 1 })
          : undefined
        const devnet = yield* startDataDirDevnet(config, {
          port: input.port,
          ...(learning === undefined ? {} : { roundPlan: learning.plan })
        })
        const verifier = input.verify ? yield* startDevnetVerifier(config, devnet) : undefined
        if (verifier !== undefined && learning !== undefined) {
          yield* startRoundCoordinator(config, devnet, verifier.store, learning)
        }
        // stdout carries only the JSON, so other programs can read it; logs go to stderr.
        yield* Console.log(JSON.stringify({
          ...devnetInfoJson(devnet),
          ...(verifier === undefined ? {} : { ipfs: verifier.addresses })
        }))
        yield* Console.error(
          `devnet up: ${devnet.rpcUrl}, registry ${devnet.registry}; state in ${devnet.dataDir}. Ctrl-C stops it.`
        )
        // Up until stopped, or until its anvil dies and cannot be restarted: then exit 1 with the cause.
        return yield* devnet.failure
      }).pipe(Effect.scoped)
    )
  }, logToStderr)
).pipe(
  Command.withDescription(
    "Run a persistent local chain for other processes: anvil with the MiningRegistry deployed and a round keeper " +
      "that always keeps a round with free chunks open. Prints {rpc_url, chain_id, registry, owner, accounts} as " +
      "JSON (devnet keys only) and stays up until stopped; the chain's state is kept in <data-dir>/devnet."
  )
)

