import { Config, Console, Effect, Option } from "effect"
import { Flag } from "effect/cli"
import type { MinerConfig } from "../domain/MinerConfig.ts"
import {
  type AnySetting,
  type ConfigErrorDescription,
  describeConfigError,
  minerConfig,
  type SettingSource,
  settingsProvider,
  settingsTable
} from "../domain/MinerConfigSchema.ts"
import { CliExit, ExitCode } from "./exit.ts"

/**
 * One CLI flag per setting of the table, all read as plain strings: decoding and validation happen once, in the
 * config schema, so `--difficulty 40` and `R3MES_POW_DIFFICULTY=40` are rejected by the same rule with the same
 * message.
 */
export type SettingFlags = Readonly<Record<string, Flag.Flag<Option.Option<string>>>>
export type SettingFlagValues = Readonly<Record<string, Option.Option<string>>>

const flagDescription = (setting: AnySetting): string =>
  `${setting.description} (${setting.expected}; env ${setting.env}; default: ${setting.defaultText})`

/** Flags for the given settings (all of them by default), keyed by the setting's `MinerConfig` field. */
export const settingFlags = (settings: ReadonlyArray<AnySetting> = settingsTable): SettingFlags =>
  Object.fromEntries(settings.map((setting) => [
    setting.key,
    Flag.String(setting.flag).pipe(
      Flag.withMetavar(setting.metavar),
      Flag.withDescription(flagDescription(setting)),
      Flag.optional
    )
  ]))

export interface LoadedSettings {
  readonly config: MinerConfig
  /** Where each setting's value came from, by env name. */
  readonly sources: Readonly<Record<string, SettingSource>>
}

type Env = Readonly<Record<string, string | undefined>>

/** The flag values given (non-empty) for these settings, by env name: they override the environment. */
const overridesOf = (settings: ReadonlyArray<AnySetting>, values: SettingFlagValues): Record<string, string> => {
  const overrides: Record<string, string> = {}
  for (const setting of settings) {
    const value = values[setting.key]
    if (value !== undefined && Option.isSome(value) && value.value !== "") overrides[setting.env] = value.value
  }
  return overrides
}

const sourceIn = (overrides: Readonly<Record<string, string>>, env: Env) => (setting: AnySetting): SettingSource =>
  setting.env in overrides ? "flag" : (env[setting.env] ?? "") !== "" ? "env" : "default"

/** An invalid setting: one line and one `hint:` line on stderr, then exit code 2. */
const refuseSettings = (description: ConfigErrorDescription) =>
  Console.error(`${description.message}\nhint: ${description.hint}`).pipe(
    Effect.andThen(Effect.fail(new CliExit({ code: ExitCode.usage })))
  )

/**
 * Loads and validates the configuration from the given flag values over `env` (process.env by default). On an
 * invalid setting it prints one line and one `hint:` line to stderr and fails with exit code 2.
 */
export const loadSettings = Effect.fnUntraced(function*(values: SettingFlagValues, env: Env = process.env) {
  const overrides = overridesOf(settingsTable, values)
  const sourceOf = sourceIn(overrides, env)
  const config = yield* minerConfig.parse(settingsProvider({ overrides, env })).pipe(
    Effect.catchTag("ConfigError", (error) => refuseSettings(describeConfigError(error, { source: sourceOf })))
  )
  const sources = Object.fromEntries(settingsTable.map((s) => [s.env, sourceOf(s)]))
  return { config, sources } satisfies LoadedSettings
})

/**
 * Only the given settings, validated as `loadSettings` does, for commands that need a few (`ipfs`, `journal check`):
 * an unrelated invalid setting in the environment does not stop them.
 */
export const loadSomeSettings = <S extends AnySetting>(
  settings: ReadonlyArray<S>,
  values: SettingFlagValues,
  env: Env = process.env
): Effect.Effect<Pick<MinerConfig, S["key"]>, CliExit> => {
  const overrides = overridesOf(settings, values)
  const configs: Record<string, Config.Config<unknown>> = Object.fromEntries(settings.map((s) => [s.key, s.config]))
  return (Config.all(configs) as unknown as Config.Config<Pick<MinerConfig, S["key"]>>)
    .parse(settingsProvider({ overrides, env }))
    .pipe(
      Effect.catchTag("ConfigError", (error) =>
        refuseSettings(describeConfigError(error, { source: sourceIn(overrides, env) })))
    )
}
