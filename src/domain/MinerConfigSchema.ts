import { Config, ConfigProvider, Duration, Effect, SchemaIssue } from "effect"
import type { MinerConfig } from "./MinerConfig.ts"
import { minerSettings, resolveLogFile, settingsTable } from "./minerSettings.ts"
import { invalid } from "./settingKinds.ts"

/**
 * The miner's settings (DESIGN.md "Configuration"): one descriptor per variable drives loading, the CLI flags,
 * the error messages, the printed configuration and the README table, so none of them can drift from the others.
 *
 * Every value is read as a string (from a flag or the environment) and decoded; the decoded issue keeps the
 * rejected input so `describeConfigError` can show it, except for secrets, whose input is never reported, and URLs,
 * which may carry an API key and are shown through `redactUrl`.
 *
 * Parts: settingValues.ts (value codecs), settingKinds.ts (what a setting is, how one loads), minerSettings.ts (the
 * table), configErrors.ts (failures in one line), configDisplay.ts (showing a configuration, the README table). This
 * file loads the whole configuration and is the module the rest of the miner imports.
 */

export { configToJson, settingsMarkdownTable, showSetting } from "./configDisplay.ts"
export {
  type ConfigErrorDescription,
  configValidationError,
  describeConfigError,
  formatConfigError,
  type SettingSource
} from "./configErrors.ts"
export {
  dataDirLogFile,
  minerSettings,
  resolveLogFile,
  settingByEnv,
  settingByFlag,
  settingsTable
} from "./minerSettings.ts"
export type { AnySetting, Setting, SettingJson } from "./settingKinds.ts"

const fieldConfigs = Object.fromEntries(settingsTable.map((s) => [s.key, s.config])) as {
  readonly [K in keyof MinerConfig]: Config.Config<MinerConfig[K]>
}

/** Checks that need more than one setting. */
const crossCheck = (config: MinerConfig): Effect.Effect<MinerConfig, Config.ConfigError> => {
  if (Duration.isLessThan(config.retryMaxDelay, config.retryInitialDelay)) {
    const initial = Duration.toSeconds(config.retryInitialDelay)
    return Effect.fail(invalid(
      minerSettings.retryMaxDelay.env,
      new SchemaIssue.InvalidValue(
        { expected: `a number of seconds not less than R3MES_RETRY_INITIAL_DELAY (${initial})` },
        String(Duration.toSeconds(config.retryMaxDelay)),
        { reportInput: true }
      )
    ))
  }
  return Effect.succeed(config)
}

/**
 * The miner's configuration from the current `ConfigProvider` (the environment unless one is provided). Fails on
 * the first invalid setting, in table order; `describeConfigError` turns the failure into one line.
 */
export const minerConfig: Config.Config<MinerConfig> = Config.all(fieldConfigs).pipe(
  Config.map((config): MinerConfig => ({ ...config, logFile: resolveLogFile(config.logFile, config.dataDir) })),
  Config.mapEffect(crossCheck)
)

/**
 * Flag values (keyed by env name) in front of the environment: a flag wins, an absent flag falls back to the env
 * var, then to the default. Both sides go through the same decoding, so they get the same messages.
 */
export const settingsProvider = (options: {
  readonly overrides?: Readonly<Record<string, string | undefined>> | undefined
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
} = {}): ConfigProvider.ConfigProvider => {
  const environment = options.env === undefined
    ? ConfigProvider.fromEnv()
    : ConfigProvider.fromEnvRecord({ ...options.env })
  return options.overrides === undefined
    ? environment
    : ConfigProvider.orElse(ConfigProvider.fromEnvRecord({ ...options.overrides }), environment)
}
