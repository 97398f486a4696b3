import { type Config, type ConfigProvider, Layer } from "effect"
import { minerConfig } from "../domain/MinerConfigSchema.ts"
import { Settings } from "../services/Settings.ts"

/**
 * `Settings` loaded and validated from the current `ConfigProvider` (the environment by default): how a library user
 * configures `minerLayer` the way the CLI does. Here rather than next to the schema because the domain imports
 * nothing but effect.
 */
export const settingsLayer: Layer.Layer<Settings, Config.ConfigError> = Layer.effect(Settings)(minerConfig)

/** `Settings` from an explicit provider, e.g. `settingsProvider({ overrides, env })` of the CLI or a test. */
export const settingsLayerFrom = (
  provider: ConfigProvider.ConfigProvider
): Layer.Layer<Settings, Config.ConfigError> => Layer.effect(Settings)(minerConfig.parse(provider))

