import { join } from "node:path"
import { Effect, Option, Redacted } from "effect"
import { ValidationError } from "../domain/errors.ts"
import type { MinerConfig } from "../domain/MinerConfig.ts"
import { type RoundPlan, type RunningDevnet, startDevnet } from "../layers/chain/devnet/Devnet.ts"
import { devnetRoundPlan } from "./devnetRoundPlan.ts"

/** Where the chain is and who mines on it. */
export interface ChainEndpoint {
  readonly rpcUrl: string
  readonly registry: string
  readonly privateKey: Redacted.Redacted<string>
  readonly devnet: boolean
  /** The embedded devnet, when it is the chain: its health, and its failure once it is down for good. */
  readonly embedded?: RunningDevnet | undefined
}

/**
 * The devnet of a data dir (`mine` without --rpc-url, and `devnet`): anvil with the registry deployed and the
 * devnet's round plan, its state kept in <data dir>/devnet. Stopped when the scope closes.
 */
export const startDataDirDevnet = (
  config: Pick<MinerConfig, "dataDir" | "powDifficulty">,
  options: { readonly port?: number; readonly roundPlan?: RoundPlan; readonly keepRounds?: boolean } = {}
) =>
  startDevnet({
    ...(options.keepRounds === false ? { keepRounds: false } : {}),
    dataDir: join(config.dataDir, "devnet"),
    difficulty: config.powDifficulty,
    roundPlan: options.roundPlan ?? devnetRoundPlan(config.powDifficulty),
    ...(options.port === undefined ? {} : { port: options.port })
  })

const required = <A>(value: Option.Option<A>, missing: string, hint: string) =>
  Option.match(value, {
    onSome: Effect.succeed,
    onNone: () => Effect.fail(new ValidationError({ message: `R3MES_RPC_URL is set but ${missing} is not`, hint }))
  })

/**
 * The chain: the configured one (RPC URL, registry, key all required), else the embedded devnet in the data dir,
 * opening rounds by `roundPlan` (default: the devnet's throughput rounds), or none with `keepRounds: false`.
 */
export const chainEndpoint = Effect.fn("chainEndpoint")(function*(
  config: MinerConfig,
  rounds: { readonly roundPlan?: RoundPlan; readonly keepRounds?: boolean } = {}
) {
  if (Option.isSome(config.rpcUrl)) {
    const registry = yield* required(
      config.registryAddress,
      "R3MES_REGISTRY_ADDRESS",
      "give --registry (the MiningRegistry's address), or unset R3MES_RPC_URL to use the embedded devnet"
    )
    const privateKey = yield* required(
      config.privateKey,
      "R3MES_PRIVATE_KEY",
      "set R3MES_PRIVATE_KEY to the miner account's key (in the environment, not on the command line)"
    )
    return { rpcUrl: config.rpcUrl.value, registry, privateKey, devnet: false } satisfies ChainEndpoint
  }
  const devnet = yield* startDataDirDevnet(config, rounds)
  yield* Effect.logInfo(`embedded devnet at ${devnet.rpcUrl}, registry ${devnet.registry}`)
  // Account 0 owns the registry and opens rounds; the miner is account 1 unless a key is configured.
  const privateKey = Option.getOrElse(config.privateKey, () => Redacted.make(devnet.accounts[1]!.privateKey))
  return {
    rpcUrl: devnet.rpcUrl,
    registry: devnet.registry,
    privateKey,
    devnet: true,
    embedded: devnet
  } satisfies ChainEndpoint
})
