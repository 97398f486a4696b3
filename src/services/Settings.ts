import { Context, Layer } from "effect"
import type { MinerConfig } from "../domain/MinerConfig.ts"

/** The validated miner configuration as a service, so core services read it from their context. */
export class Settings extends Context.Service<Settings, MinerConfig>()("r3mes/services/Settings") {
  static readonly layerOf = (config: MinerConfig): Layer.Layer<Settings> => Layer.succeed(Settings, config)
}
