import { Config, Duration, Effect, Option, Redacted, Schema, SchemaIssue } from "effect"
import type { MinerConfig } from "./MinerConfig.ts"
import { positiveSeconds } from "./settingValues.ts"

/**
 * What a setting of the table is, and the kinds of setting (seconds, number, text, optional text, secret): each kind
 * knows how to load its value (read as a string from a flag or the environment, trimmed, decoded, defaulted) and
 * how to show it in JSON. A secret's input is never kept in an error.
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

export const invalid = (env: string, issue: SchemaIssue.Issue): Config.ConfigError =>
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

/** What a setting's table row gives; the kind of setting adds the rest. */
export type Spec = Pick<Setting<keyof MinerConfig>, "env" | "flag" | "metavar" | "description" | "expected" | "defaultText"> & {
  readonly shown?: (raw: string) => string
}

type KeysOf<T> = { [K in keyof MinerConfig]: MinerConfig[K] extends T ? K : never }[keyof MinerConfig]

/** A setting of the table: its row, its key, and what its kind says about decoding and showing the value. */
const setting = <K extends keyof MinerConfig>(
  key: K,
  spec: Spec,
  kind: Pick<Setting<K>, "unit" | "secret" | "shown" | "toJson"> & { readonly config: Config.Config<unknown> }
): Setting<K> => ({ ...spec, key, ...kind, config: kind.config as Config.Config<MinerConfig[K]> })

export const seconds = <K extends KeysOf<Duration.Duration>>(key: K, spec: Spec, defaultSeconds: number): Setting<K> =>
  setting(key, spec, {
    unit: "s",
    secret: false,
    shown: undefined,
    config: withDefaultValue(spec.env, positiveSeconds, defaultSeconds).pipe(Config.map(Duration.seconds)),
    toJson: (value) => Duration.toSeconds(value as Duration.Duration)
  })

export const number = <K extends KeysOf<number>>(
  key: K,
  spec: Spec,
  codec: Schema.Codec<number, string>,
  defaultValue: number,
  unit?: "MiB"
): Setting<K> =>
  setting(key, spec, {
    unit,
    secret: false,
    shown: undefined,
    config: withDefaultValue(spec.env, codec, defaultValue),
    toJson: (value) => value as number
  })

/** A text setting shown as given (or as its spec's `shown` makes it, e.g. an URL without its key). */
const plainText = (spec: Spec) => ({ unit: undefined, secret: false, shown: spec.shown })

export const text = <K extends KeysOf<string>>(
  key: K,
  spec: Spec,
  codec: Schema.Codec<string, string>,
  defaultValue: string
): Setting<K> =>
  setting(key, spec, {
    ...plainText(spec),
    config: withDefaultValue(spec.env, codec, defaultValue),
    toJson: (value) => (spec.shown ?? String)(value as string)
  })

export const optionalText = <K extends KeysOf<Option.Option<string>>>(
  key: K,
  spec: Spec,
  codec: Schema.Codec<string, string>
): Setting<K> =>
  setting(key, spec, {
    ...plainText(spec),
    config: optionalValue(spec.env, codec, false),
    toJson: (value) => Option.getOrNull(Option.map(value as Option.Option<string>, spec.shown ?? String))
  })

/** Never shown: `<redacted>` wherever a value would be. */
export const secretText = <K extends KeysOf<Option.Option<Redacted.Redacted<string>>>>(
  key: K,
  spec: Spec,
  codec: Schema.Codec<string, string>
): Setting<K> =>
  setting(key, spec, {
    unit: undefined,
    secret: true,
    shown: () => "<redacted>",
    config: optionalValue(spec.env, codec, true).pipe(Config.map(Option.map((value) => Redacted.make(value)))),
    toJson: (value) => (Option.isSome(value as Option.Option<unknown>) ? "<redacted>" : null)
  })
