import { Context, Effect, Layer, Option, type Scope } from "effect"
import type { MiningError } from "../domain/errors.ts"
import { maxGradientBytes, type MinerConfig } from "../domain/MinerConfig.ts"
import { acquireDataDirLock } from "../layers/journal/dataDirLock.ts"
import { MnistDigits } from "../layers/onnx/MnistDigits.ts"
import { Chain } from "../services/Chain.ts"
import { RoundAggregator } from "../services/RoundAggregator.ts"
import { chainLayer, gradientStoreLayer, journalPath } from "./adapters.ts"
import { chainEndpoint } from "./chainEndpoint.ts"

/**
 * The round aggregator on the configured chain and store, for `rounds` and `aggregate`: read-only. Without
 * --rpc-url the data dir's devnet is started without its round keeper (a command that reads must not open a round),
 * under the data dir's lock, like every command that starts what `mine` runs there: stop the miner first.
 */
export const roundServices = Effect.fn("roundServices")(function*(
  config: MinerConfig
): Effect.fn.Return<Context.Context<RoundAggregator | Chain>, MiningError, Scope.Scope> {
  if (Option.isNone(config.rpcUrl)) yield* acquireDataDirLock(journalPath(config.dataDir))
  const endpoint = yield* chainEndpoint(config, { keepRounds: false })
  return yield* Layer.build(
    RoundAggregator.layer({ maxGradientBytes: maxGradientBytes(config) }).pipe(
      Layer.provideMerge(Layer.mergeAll(chainLayer(endpoint), gradientStoreLayer(config), MnistDigits.layer()))
    )
  )
})
