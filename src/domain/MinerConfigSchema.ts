import { Config, ConfigProvider, Duration, Effect, Option, Redacted, Schema, SchemaIssue } from "effect"
import { checksumAddress, claimsChecksum } from "./eip55.ts"
import { ValidationError } from "./errors.ts"
import type { MinerConfig } from "./MinerConfig.ts"
import { redactUrl } from "./redaction.ts"

/**
 * The miner's settings (DESIGN.md "Configuration"): one descriptor per variable drives loading, the CLI flags,
 * the error messages, the printed configuration and the README table, so none of them can drift from the others.
 *
 * Every value is read as a string (from a flag or the environment) and decoded here; the decoded issue keeps the
 * rejected input so `describeConfigError` can show it, except for secrets, whose input is never reported, and URLs,
 * which may carry an API key and are shown through `redactUrl`.
 */

/** How a setting's value is shown in JSON output: numbers stay numbers, durations are seconds, absent is null. */
export type SettingJson = string | number | null

export interface Setting<K extends keyof MinerConfig> {
  readonly key: K
  readonly env: string
  /** The CLI flag without its leading dashes. */
  readonly flag: string
  /** Placeholder of the flag's value in `--help`. */
  readonly metavar: string
  /** What the setting controls, one line without a final period. */
  readonly description: string
  /** The allowed values, phrased to follow "expected": "an integer from 16 to 32". */
  readonly expected: string
  /** The default as the README and `--help` show it. */
  readonly defaultText: string
  readonly unit: "s" | "MiB" | undefined
  /** Never shown: not in messages, logs, printed config or JSON. */
  readonly secret: boolean
  /** How a value is shown in messages and the printed config (an URL loses its key); as it is when absent. */
  readonly shown: ((raw: string) => string) | undefined
  readonly config: Config.Config<MinerConfig[K]>
  readonly toJson: (value: MinerConfig[K]) => SettingJson
}

/** Any one setting of the table, with its key and value type kept together. */
export type AnySetting = { readonly [K in keyof MinerConfig]: Setting<K> }[keyof MinerConfig]

// ---------------------------------------------------------------------------------------------------------------
// Value codecs: string in, typed value out (the raw value is trimmed first, so a stray newline is not an error).

const positiveSeconds = Schema.FiniteFromString.check(Schema.isGreaterThan(0))
const intBetween = (minimum: number, maximum: number) =>
  Schema.FiniteFromString.check(Schema.isInt(), Schema.isBetween({ minimum, maximum }))
const intAtLeast = (minimum: number) => Schema.FiniteFromString.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(minimum))

const hasProtocol = (protocols: ReadonlyArray<string>) => (input: string): boolean => {
  try {
    const url = new URL(input)
    return protocols.includes(url.protocol) && url.hostname !== ""
  } catch {
    return false
  }
}

/**
 * A check whose failure carries its own `expected` and, optionally, a `hint` that `describeConfigError` puts in
 * front of the setting's general hint.
 */
const rule = (problem: (input: string) => { readonly expected: string; readonly hint?: string } | undefined) =>
  Schema.makeFilter((input: string) => {
    const found = problem(input)
    return found === undefined ? undefined : new SchemaIssue.InvalidValue(found, input, { reportInput: true })
  })

const rpcSchemes = "an http://, https://, ws:// or wss:// URL"

/** viem's http transport turns user:password@ into Basic auth; Node's WebSocket silently drops it (checked). */
const rpcUrl = Schema.String.check(
  Schema.makeFilter(hasProtocol(["http:", "https:", "ws:", "wss:"]), { expected: rpcSchemes }),
  rule((input) => {
    let url: URL
    try {
      url = new URL(input)
    } catch {
      return undefined // the scheme check above reports it
    }
    if ((url.protocol !== "ws:" && url.protocol !== "wss:") || (url.username === "" && url.password === "")) return undefined
    return {
      expected: "a ws:// or wss:// URL without user:password@, which the WebSocket client does not send",
      hint: "put the key where the provider documents it (usually the path), or use its https:// URL, where user:password@ works"
    }
  })
)

/** EIP-55: a mixed-case address claims a checksum, and a wrong one means a mistyped or altered address. */
const address = Schema.String.check(
  Schema.isPattern(/^0x[0-9a-fA-F]{40}$/),
  rule((input) =>
    !claimsChecksum(input) || checksumAddress(input) === input ? undefined : {
      expected: "an address whose mixed letter case is a valid EIP-55 checksum",
      hint: `check the address against its source (a wrong digit or changed letter case breaks the checksum); if its ` +
        `digits are right, its checksummed form is ${checksumAddress(input)}`
    }
  )
)
const nonBlank = Schema.String.check(Schema.isPattern(/\S/, { expected: "a non-empty string" }))
const noWhitespace = Schema.String.check(Schema.isPattern(/^\S+$/, { expected: "a string without whitespace" }))

// ---------------------------------------------------------------------------------------------------------------
// Loading one setting.

const invalid = (env: string, issue: SchemaIssue.Issue): Config.ConfigError =>
  new Config.ConfigError(new Schema.SchemaError(new SchemaIssue.Pointer([env], issue)))

const decodeRaw = <A>(
  env: string,
  codec: Schema.Codec<A, string>,
  secret: boolean
) =>
(raw: string): Effect.Effect<A, Config.ConfigError> =>
  Schema.decodeUnknownEffect(codec)(raw.trim()).pipe(
    Effect.mapError((error) =>
      invalid(
        env,
        // The raw string as written (not an intermediate like NaN), kept for the message; never for a secret.
        secret ? error.issue : new SchemaIssue.Encoding(codec.ast, error.issue, raw, { reportInput: true })
      )
    )
  )

const withDefaultValue = <A>(env: string, codec: Schema.Codec<A, string>, defaultValue: A): Config.Config<A> =>
  Config.String(env).pipe(Config.mapEffect(decodeRaw(env, codec, false)), Config.withDefault(defaultValue))

const optionalValue = <A>(env: string, codec: Schema.Codec<A, string>, secret: boolean): Config.Config<Option.Option<A>> =>
  Config.String(env).pipe(Config.mapEffect(decodeRaw(env, codec, secret)), Config.option)

interface Spec {
  readonly env: string
  readonly flag: string
  readonly metavar: string
  readonly description: string
  readonly expected: string
  readonly defaultText: string
  readonly shown?: (raw: string) => string
}

type KeysOf<T> = { [K in keyof MinerConfig]: MinerConfig[K] extends T ? K : never }[keyof MinerConfig]

const seconds = <K extends KeysOf<Duration.Duration>>(key: K, spec: Spec, defaultSeconds: number): Setting<K> => ({
  ...spec,
  key,
  unit: "s",
  secret: false,
  shown: undefined,
  config: withDefaultValue(spec.env, positiveSeconds, defaultSeconds).pipe(Config.map(Duration.seconds)) as Config.Config<
    MinerConfig[K]
  >,
  toJson: (value) => Duration.toSeconds(value as Duration.Duration)
})

const number = <K extends KeysOf<number>>(
  key: K,
  spec: Spec,
  codec: Schema.Codec<number, string>,
  defaultValue: number,
  unit?: "MiB"
): Setting<K> => ({
  ...spec,
  key,
  unit,
  secret: false,
  shown: undefined,
  config: withDefaultValue(spec.env, codec, defaultValue) as Config.Config<MinerConfig[K]>,
  toJson: (value) => value as number
})

const text = <K extends KeysOf<string>>(
  key: K,
  spec: Spec,
  codec: Schema.Codec<string, string>,
  defaultValue: string
): Setting<K> => ({
  ...spec,
  key,
  unit: undefined,
  secret: false,
  shown: spec.shown,
  config: withDefaultValue(spec.env, codec, defaultValue) as Config.Config<MinerConfig[K]>,
  toJson: (value) => (spec.shown ?? String)(value as string)
})

const optionalText = <K extends KeysOf<Option.Option<string>>>(
  key: K,
  spec: Spec,
  codec: Schema.Codec<string, string>
): Setting<K> => ({
  ...spec,
  key,
  unit: undefined,
  secret: false,
  shown: spec.shown,
  config: optionalValue(spec.env, codec, false) as Config.Config<MinerConfig[K]>,
  toJson: (value) => Option.getOrNull(Option.map(value as Option.Option<string>, spec.shown ?? String))
})

const secretText = <K extends KeysOf<Option.Option<Redacted.Redacted<string>>>>(
  key: K,
  spec: Spec,
  codec: Schema.Codec<string, string>
): Setting<K> => ({
  ...spec,
  key,
  unit: undefined,
  secret: true,
  shown: () => "<redacted>",
  config: optionalValue(spec.env, codec, true).pipe(
    Config.map(Option.map((value) => Redacted.make(value)))
  ) as Config.Config<MinerConfig[K]>,
  toJson: (value) => (Option.isSome(value as Option.Option<unknown>) ? "<redacted>" : null)
})

// ---------------------------------------------------------------------------------------------------------------
// The table. Order = the order of DESIGN.md, of `--help`, of the printed configuration and of the README.

/** Every setting by its `MinerConfig` field; the mapped type makes a missing or extra setting a type error. */
export const minerSettings: { readonly [K in keyof MinerConfig]: Setting<K> } = {
  transactionTimeout: seconds("transactionTimeout", {
    env: "R3MES_TRANSACTION_TIMEOUT",
    flag: "transaction-timeout",
    metavar: "SECONDS",
    description:
      "Time limit of a mining transaction until its signed submission is journaled; past it, the transaction is rolled back. A submission already signed is never undone by the timeout: the chain decides",
    expected: "a number of seconds greater than 0",
    defaultText: "300"
  }, 300),
  maxRetries: number("maxRetries", {
    env: "R3MES_MAX_RETRIES",
    flag: "max-retries",
    metavar: "N",
    description: "Retries of a step after a retryable failure (network, timeout, transient chain or IPFS error)",
    expected: "an integer from 0 to 100",
    defaultText: "3"
  }, intBetween(0, 100), 3),
  powDifficulty: number("powDifficulty", {
    env: "R3MES_POW_DIFFICULTY",
    flag: "difficulty",
    metavar: "BITS",
    description: "Proof-of-work difficulty in leading zero bits; a round's own difficulty is a floor",
    expected: "an integer from 16 to 32",
    defaultText: "20"
  }, intBetween(16, 32), 20),
  retryInitialDelay: seconds("retryInitialDelay", {
    env: "R3MES_RETRY_INITIAL_DELAY",
    flag: "retry-initial-delay",
    metavar: "SECONDS",
    description: "First delay of the exponential, jittered retry back-off",
    expected: "a number of seconds greater than 0",
    defaultText: "1.0"
  }, 1),
  retryMaxDelay: seconds("retryMaxDelay", {
    env: "R3MES_RETRY_MAX_DELAY",
    flag: "retry-max-delay",
    metavar: "SECONDS",
    description: "Cap on any single retry delay",
    expected: "a number of seconds greater than 0, not less than R3MES_RETRY_INITIAL_DELAY",
    defaultText: "60.0"
  }, 60),
  retryBackoffFactor: number("retryBackoffFactor", {
    env: "R3MES_RETRY_BACKOFF_FACTOR",
    flag: "retry-backoff-factor",
    metavar: "FACTOR",
    description: "Multiplier between consecutive retry delays",
    expected: "a number of at least 1",
    defaultText: "2.0"
  }, Schema.FiniteFromString.check(Schema.isGreaterThanOrEqualTo(1)), 2),
  maxGradientSizeMb: number("maxGradientSizeMb", {
    env: "R3MES_MAX_GRADIENT_SIZE_MB",
    flag: "max-gradient-size-mb",
    metavar: "MB",
    description: "Largest gradient accepted, in MiB; a larger one is refused before any upload",
    expected: "a number of MiB greater than 0",
    defaultText: "100"
  }, Schema.FiniteFromString.check(Schema.isGreaterThan(0)), 100, "MiB"),
  maxActiveTransactions: number("maxActiveTransactions", {
    env: "R3MES_MAX_ACTIVE_TRANSACTIONS",
    flag: "max-active-transactions",
    metavar: "N",
    description: "Transactions in flight at once; one more is refused",
    expected: "an integer of at least 1",
    defaultText: "10"
  }, intAtLeast(1), 10),
  circuitBreakerThreshold: number("circuitBreakerThreshold", {
    env: "R3MES_CIRCUIT_BREAKER_THRESHOLD",
    flag: "circuit-breaker-threshold",
    metavar: "N",
    description: "Consecutive retryable failures of the chain or IPFS that open its circuit breaker",
    expected: "an integer of at least 1",
    defaultText: "5"
  }, intAtLeast(1), 5),
  circuitBreakerReset: seconds("circuitBreakerReset", {
    env: "R3MES_CIRCUIT_BREAKER_RESET",
    flag: "circuit-breaker-reset",
    metavar: "SECONDS",
    description: "Wait of an open circuit breaker before it lets a trial call through",
    expected: "a number of seconds greater than 0",
    defaultText: "30"
  }, 30),
  maxConsecutiveFailures: number("maxConsecutiveFailures", {
    env: "R3MES_MAX_CONSECUTIVE_FAILURES",
    flag: "max-consecutive-failures",
    metavar: "N",
    description: "Consecutive non-retryable transaction failures (a gradient over the size limit, an unfunded account) " +
      "after which the miner stops with exit 1 and the cause; before that each one backs off exponentially",
    expected: "an integer of at least 1",
    defaultText: "10"
  }, intAtLeast(1), 10),
  privateKey: secretText("privateKey", {
    env: "R3MES_PRIVATE_KEY",
    flag: "private-key",
    metavar: "HEX",
    description: "Key of the miner's account, never printed; prefer the env var (command lines are visible to others)",
    expected: "0x followed by 64 hex digits",
    defaultText: "devnet key when on the devnet"
  }, Schema.String.check(Schema.isPattern(/^0x[0-9a-fA-F]{64}$/))),
  rpcUrl: optionalText("rpcUrl", {
    env: "R3MES_RPC_URL",
    flag: "rpc-url",
    metavar: "URL",
    description: "JSON-RPC endpoint of the chain (HTTP or WebSocket); without it the miner starts an embedded devnet. " +
      "Printed without user:password@, path and query, which may hold an API key",
    expected: rpcSchemes,
    defaultText: "embedded devnet",
    shown: redactUrl
  }, rpcUrl),
  registryAddress: optionalText("registryAddress", {
    env: "R3MES_REGISTRY_ADDRESS",
    flag: "registry",
    metavar: "ADDRESS",
    description: "Address of the MiningRegistry contract; in mixed case its EIP-55 checksum is checked",
    expected: "0x followed by 40 hex digits",
    defaultText: "deployed on the devnet"
  }, address),
  ipfsApi: text("ipfsApi", {
    env: "R3MES_IPFS_API",
    flag: "ipfs",
    metavar: "API",
    description: "Where gradients are pinned: the embedded IPFS node or a Kubo daemon's RPC API",
    expected: "`embedded` or an http:// or https:// URL",
    defaultText: "embedded",
    shown: (value) => (value === "embedded" ? value : redactUrl(value))
  }, Schema.String.check(Schema.makeFilter((s: string) => s === "embedded" || hasProtocol(["http:", "https:"])(s), {
    expected: "`embedded` or an http:// or https:// URL"
  })), "embedded"),
  dataDir: text("dataDir", {
    env: "R3MES_DATA_DIR",
    flag: "data-dir",
    metavar: "DIR",
    description: "Directory of the journal, the embedded IPFS repository and the devnet state",
    expected: "a non-empty path",
    defaultText: "./.r3mes"
  }, nonBlank, "./.r3mes"),
  statsHost: text("statsHost", {
    env: "R3MES_STATS_HOST",
    flag: "stats-host",
    metavar: "HOST",
    description: "Interface the monitoring HTTP API listens on",
    expected: "a host name or IP address without spaces",
    defaultText: "127.0.0.1"
  }, noWhitespace, "127.0.0.1"),
  statsPort: number("statsPort", {
    env: "R3MES_STATS_PORT",
    flag: "stats-port",
    metavar: "PORT",
    description: "Port of the monitoring HTTP API (0: any free port)",
    expected: "an integer from 0 to 65535",
    defaultText: "8080"
  }, intBetween(0, 65535), 8080),
  adminToken: secretText("adminToken", {
    env: "R3MES_ADMIN_TOKEN",
    flag: "admin-token",
    metavar: "TOKEN",
    description: "Bearer token of the admin routes (POST /cleanup-stale), never printed",
    expected: "a string without spaces",
    defaultText: "none (admin routes refuse)"
  }, noWhitespace),
  logFile: text("logFile", {
    env: "R3MES_LOG_FILE",
    flag: "log-file",
    metavar: "FILE",
    description: "File of the JSON log lines, one per state change",
    expected: "a non-empty path",
    defaultText: "logs/miner.log"
  }, nonBlank, "logs/miner.log")
}

/** The settings in table order. */
export const settingsTable: ReadonlyArray<AnySetting> = Object.values(minerSettings)

export const settingByEnv = (env: string): AnySetting | undefined => settingsTable.find((s) => s.env === env)

export const settingByFlag = (flag: string): AnySetting | undefined =>
  settingsTable.find((s) => s.flag === flag.replace(/^--/, ""))

// ---------------------------------------------------------------------------------------------------------------
// The whole configuration.

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
export const minerConfig: Config.Config<MinerConfig> = Config.all(fieldConfigs).pipe(Config.mapEffect(crossCheck))

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

// ---------------------------------------------------------------------------------------------------------------
// Errors.

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

// ---------------------------------------------------------------------------------------------------------------
// Showing a loaded configuration (secrets as <redacted>).

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

// ---------------------------------------------------------------------------------------------------------------
// Documentation.

/** The settings as the README's markdown table; `test/config.test.ts` fails when the README's copy differs. */
export const settingsMarkdownTable = (): string => {
  const cell = (text: string) => text.replace(/\|/g, "\\|")
  const rows = settingsTable.map((s) =>
    `| \`${s.env}\` | ${cell(s.defaultText)}${s.unit === undefined ? "" : ` ${s.unit}`} | \`--${s.flag}\` | ` +
    `${cell(s.description)}. Allowed: ${cell(s.expected)}. |`
  )
  return ["| env | default | flag | meaning |", "|---|---|---|---|", ...rows].join("\n")
}
