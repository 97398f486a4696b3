import { join } from "node:path"
import { Effect, Option, Redacted } from "effect"
import type { Scope } from "effect"
import { type MiningError, ValidationError } from "../domain/errors.ts"
import type { MinerConfig } from "../domain/MinerConfig.ts"
import { type RunningDevnet, startDevnet } from "../layers/chain/devnet/Devnet.ts"
import { devnetRoundPlan } from "./roundPlan.ts"

/** Where the chain is and who mines on it. */
export interface ChainEndpoint {
  readonly rpcUrl: string
  readonly registry: string
  readonly privateKey: Redacted.Redacted<string>
  readonly devnet: boolean
  /** The embedded devnet, when it is the chain: its health, and its failure once it is down for good. */
  readonly embedded?: RunningDevnet | undefined
}

/** The chain: the configured one (RPC URL, registry, key all required), else the embedded devnet in the data dir. */
export const chainEndpoint = (config: MinerConfig): Effect.Effect<ChainEndpoint, MiningError, Scope.Scope> =>
  Option.match(config.rpcUrl, {
    onSome: (rpcUrl) =>
      Effect.gen(function*() {
        const registry = yield* Option.match(config.registryAddress, {
          onSome: Effect.succeed,
          onNone: () =>
            Effect.fail(
              new ValidationError({
                message: "R3MES_RPC_URL is set but R3MES_REGISTRY_ADDRESS is not",
                hint: "give --registry (the MiningRegistry's address), or unset R3MES_RPC_URL to use the embedded devnet"
              })
            )
        })
        const privateKey = yield* Option.match(config.privateKey, {
          onSome: Effect.succeed,
          onNone: () =>
            Effect.fail(
              new ValidationError({
                message: "R3MES_RPC_URL is set but R3MES_PRIVATE_KEY is not",
                hint: "set R3MES_PRIVATE_KEY to the miner account's key (in the environment, not on the command line)"
              })
            )
        })
        return { rpcUrl, registry, privateKey, devnet: false }
      }),
    onNone: () =>
      Effect.gen(function*() {
        const devnet = yield* startDevnet({
          dataDir: join(config.dataDir, "devnet"),
          difficulty: config.powDifficulty,
          roundPlan: devnetRoundPlan(config.powDifficulty)
        })
        yield* Effect.logInfo(`embedded devnet at ${devnet.rpcUrl}, registry ${devnet.registry}`)
        // Account 0 owns the registry and opens rounds; the miner is account 1 unless a key is configured.
        const privateKey = Option.getOrElse(config.privateKey, () => Redacted.make(devnet.accounts[1]!.privateKey))
        return { rpcUrl: devnet.rpcUrl, registry: devnet.registry, privateKey, devnet: true, embedded: devnet }
      })
  })

