import type { MinerConfig } from "./MinerConfig.ts"
import { settingsTable } from "./minerSettings.ts"
import type { AnySetting, Setting, SettingJson } from "./settingKinds.ts"

/** A loaded configuration shown to people and in JSON (secrets as <redacted>), and the settings as the README's table. */

const jsonOf = <K extends keyof MinerConfig>(setting: Setting<K>, config: MinerConfig): SettingJson =>
  setting.toJson(config[setting.key])

/** The value of one setting for people: `300 s`, `<redacted>`, an URL without its key, or the default's meaning when absent. */
export const showSetting = (setting: AnySetting, config: MinerConfig): string => {
  const value = jsonOf(setting as Setting<keyof MinerConfig>, config)
  if (value === null) return `not set (default: ${setting.defaultText})`
  return setting.unit === undefined ? String(value) : `${value} ${setting.unit}`
}

/**
 * The configuration as JSON keyed by env name; secrets are `<redacted>`, URLs in their `redactUrl` form, absent
 * optional values `null`.
 */
export const configToJson = (config: MinerConfig): Record<string, SettingJson> =>
  Object.fromEntries(settingsTable.map((s) => [s.env, jsonOf(s as Setting<keyof MinerConfig>, config)]))

/** The settings as the README's markdown table; `test/unit/config.test.ts` fails when the README's copy differs. */
export const settingsMarkdownTable = (): string => {
  // `<data dir>` would be an HTML tag to a Markdown renderer, and vanish.
  const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/</g, "&lt;")
  const rows = settingsTable.map((s) =>
    `| \`${s.env}\` | ${cell(s.defaultText)}${s.unit === undefined ? "" : ` ${s.unit}`} | \`--${s.flag}\` | ` +
    `${cell(s.description)}. Allowed: ${cell(s.expected)}. |`
  )
  return ["| env | default | flag | meaning |", "|---|---|---|---|", ...rows].join("\n")
}
