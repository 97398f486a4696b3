import { Console, Effect, Option } from "effect"
import { Flag } from "effect/cli"
import type { MinerConfig } from "../domain/MinerConfig.ts"
import {
  type AnySetting,
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

/**
 * Loads and validates the configuration from the given flag values over `env` (process.env by default). On an
 * invalid setting it prints one line and one `hint:` line to stderr and fails with exit code 2.
 */
export const loadSettings = Effect.fnUntraced(function*(
  values: SettingFlagValues,
  env: Readonly<Record<string, string | undefined>> = process.env
) {
  const overrides: Record<string, string> = {}
  for (const setting of settingsTable) {
    const value = values[setting.key]
    if (value !== undefined && Option.isSome(value) && value.value !== "") overrides[setting.env] = value.value
  }
  const sourceOf = (setting: AnySetting): SettingSource =>
    setting.env in overrides ? "flag" : (env[setting.env] ?? "") !== "" ? "env" : "default"

  const config = yield* minerConfig.parse(settingsProvider({ overrides, env })).pipe(
    Effect.catchTag("ConfigError", (error) => {
      const { hint, message } = describeConfigError(error, { source: sourceOf })
      return Console.error(`${message}\nhint: ${hint}`).pipe(
        Effect.andThen(Effect.fail(new CliExit({ code: ExitCode.usage })))
      )
    })
  )
  const sources = Object.fromEntries(settingsTable.map((s) => [s.env, sourceOf(s)]))
  return { config, sources } satisfies LoadedSettings
})
