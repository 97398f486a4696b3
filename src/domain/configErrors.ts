import { type Config, Option, Schema, SchemaIssue } from "effect"
import { ValidationError } from "./errors.ts"
import { settingByEnv } from "./minerSettings.ts"
import type { AnySetting } from "./settingKinds.ts"

/**
 * A configuration failure explained in one line for the operator: which variable (and flag), the rejected value
 * unless secret (an URL without its key), what is allowed, and a hint naming the fix.
 */

export type SettingSource = "flag" | "env" | "default"

export interface ConfigErrorDescription {
  /** The setting at fault, when the error names one. */
  readonly setting: AnySetting | undefined
  /** One line: the variable (and its flag), the bad value unless secret, and what is allowed. */
  readonly message: string
  /** One line telling the operator what to do. */
  readonly hint: string
}

const helpHint = "`r3mes-miner mine --help` lists every setting"

const children = (issue: SchemaIssue.Issue): ReadonlyArray<SchemaIssue.Issue> => {
  switch (issue._tag) {
    case "Pointer":
    case "Encoding":
    case "Filter":
      return [issue.issue]
    case "Composite":
    case "AnyOf":
      return issue.issues
    default:
      return []
  }
}

/** The outermost reported input: the raw string as the operator wrote it. */
const findInput = (issue: SchemaIssue.Issue): Option.Option<unknown> => {
  if (SchemaIssue.hasInput(issue) && issue._tag !== "Pointer") return Option.some(issue.input)
  for (const child of children(issue)) {
    const found = findInput(child)
    if (Option.isSome(found)) return found
  }
  return Option.none()
}

/** An `expected` written for this failure (cross-setting checks), rather than the setting's general range. */
const findExpected = (issue: SchemaIssue.Issue): string | undefined => {
  if (issue._tag === "InvalidValue" && typeof issue.annotations?.expected === "string") return issue.annotations.expected
  for (const child of children(issue)) {
    const found = findExpected(child)
    if (found !== undefined) return found
  }
  return undefined
}

/** A hint written for this failure (a checksum's correct form), shown before the setting's general hint. */
const findHint = (issue: SchemaIssue.Issue): string | undefined => {
  if (issue._tag === "InvalidValue" && typeof issue.annotations?.hint === "string") return issue.annotations.hint
  for (const child of children(issue)) {
    const found = findHint(child)
    if (found !== undefined) return found
  }
  return undefined
}

const showValue = (input: unknown): string => {
  const raw = typeof input === "string" ? input : String(input)
  const clipped = raw.length > 80 ? `${raw.slice(0, 77)}...` : raw
  return clipped === "" || /[\s"'=]/.test(clipped) ? JSON.stringify(clipped) : clipped
}

const oneLine = (text: string): string => text.replace(/\s*\n\s*/g, "; ").trim()

/**
 * Explains a configuration failure in one line, e.g.
 * `R3MES_POW_DIFFICULTY=12 is invalid: expected an integer from 16 to 32 (flag --difficulty)`, or, when the value
 * came from the flag (`source` says so), `--difficulty 40 is invalid: expected ... (env R3MES_POW_DIFFICULTY)`.
 * A secret's value is never shown.
 */
export const describeConfigError = (
  error: Config.ConfigError,
  options: { readonly source?: ((setting: AnySetting) => SettingSource) | undefined } = {}
): ConfigErrorDescription => {
  const cause = error.cause
  if (!Schema.isSchemaError(cause)) {
    return {
      setting: undefined,
      message: `configuration could not be read: ${oneLine(cause.message)}`,
      hint: helpHint
    }
  }
  const issue = cause.issue
  const env = issue._tag === "Pointer" && typeof issue.path[0] === "string" ? issue.path[0] : undefined
  const setting = env === undefined ? undefined : settingByEnv(env)
  if (setting === undefined) {
    return { setting: undefined, message: `invalid configuration: ${oneLine(cause.message)}`, hint: helpHint }
  }
  const expected = findExpected(issue) ?? setting.expected
  const fromFlag = options.source?.(setting) === "flag"
  const input = findInput(issue)
  const raw = Option.map(input, (value) => (typeof value === "string" ? value : String(value)))
  const value = setting.secret || Option.isNone(raw) ? "" : showValue(setting.shown?.(raw.value) ?? raw.value)
  const subject = fromFlag
    ? `--${setting.flag}${value === "" ? "" : ` ${value}`}`
    : `${setting.env}${value === "" ? "" : `=${value}`}`
  const other = fromFlag ? `env ${setting.env}` : `flag --${setting.flag}`
  const secretNote = setting.secret ? "; the value is not shown because it is secret" : ""
  const message = `${subject} is invalid: expected ${expected} (${other})${secretNote}`
  const specific = findHint(issue)
  const general = fromFlag
    ? `fix --${setting.flag}, or drop it to use ${setting.env} or the default (${setting.defaultText}); ${helpHint}`
    : `fix ${setting.env}, or unset it (default: ${setting.defaultText}); ${helpHint}`
  const hint = specific === undefined ? general : `${specific}; ${general}`
  return { setting, message, hint }
}

/** The one-line message of `describeConfigError`. */
export const formatConfigError = (
  error: Config.ConfigError,
  options: { readonly source?: ((setting: AnySetting) => SettingSource) | undefined } = {}
): string => describeConfigError(error, options).message

/** The same failure as the typed error of the miner's error channel. */
export const configValidationError = (error: Config.ConfigError): ValidationError => {
  const description = describeConfigError(error)
  return new ValidationError({
    message: description.message,
    hint: description.hint,
    field: description.setting?.env
  })
}
