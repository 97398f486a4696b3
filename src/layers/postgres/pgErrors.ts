import { Effect, Predicate } from "effect"
import { SqlError } from "effect/sql"
import { classify } from "../../domain/classify.ts"
import {
  AuthenticationError,
  isMiningError,
  type MiningError,
  NetworkError,
  ResourceError,
  RetryableError,
  TimeoutError,
  ValidationError
} from "../../domain/errors.ts"

/** The setting that names the fleet's shared journal database, for hints. */
export const fleetDatabaseSetting = "R3MES_FLEET_DATABASE_URL"

/** Where the journal's Postgres is, as it may be shown: never with its password. */
export interface PgTarget {
  /** `postgres://user@host:port/db`, or a placeholder when the URL is not known (a client handed over). */
  readonly display: string
  /** `host:port`, for "start Postgres at …". */
  readonly address: string
  readonly database: string | undefined
  /** The setting the operator changes to fix the URL (`R3MES_FLEET_DATABASE_URL` unless told otherwise). */
  readonly setting: string
  /** Strings that must never reach a message (the password, raw and percent-encoded). */
  readonly secrets: ReadonlyArray<string>
}

/** A target for a client built elsewhere (PgJournal.layerClient): nothing known, nothing to hide. */
export const unknownTarget = (setting: string = fleetDatabaseSetting): PgTarget => ({
  display: "the fleet's Postgres",
  address: "its host and port",
  database: undefined,
  setting,
  secrets: []
})

/** Parses the URL only to describe it; the driver parses it again to connect. */
export const pgTarget = (url: string, setting: string = fleetDatabaseSetting): PgTarget | ValidationError => {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    // The input itself is not shown: a malformed URL may still hold the password.
    return new ValidationError({
      message: "journal: the fleet database URL is not a URL",
      field: setting,
      hint: `set ${setting} to postgres://USER:PASSWORD@HOST:5432/DATABASE`
    })
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    return new ValidationError({
      message: `journal: the fleet database URL has protocol ${parsed.protocol}, not postgres:`,
      field: setting,
      hint: `set ${setting} to postgres://USER:PASSWORD@HOST:5432/DATABASE`
    })
  }
  const secrets = parsed.password === "" ? [] : [...new Set([parsed.password, safeDecode(parsed.password)])]
  const database = safeDecode(parsed.pathname.replace(/^\//, "")) || undefined
  const address = `${parsed.hostname || "localhost"}:${parsed.port || "5432"}`
  const user = parsed.username === "" ? "" : `${parsed.username}@`
  return {
    display: `postgres://${user}${address}/${database ?? ""}`,
    address,
    database,
    setting,
    secrets: secrets.filter((s) => s !== "")
  }
}

const safeDecode = (s: string): string => {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}

const scrub = (text: string, target: PgTarget): string =>
  target.secrets.reduce((t, secret) => t.split(secret).join("***"), text)

/** The foreign error's own text: the server's message or the socket's, more telling than the driver's summary. */
const causeText = (e: SqlError.SqlError): string => {
  const cause = e.reason.cause
  const own = Predicate.isObject(cause) && Predicate.isString((cause as { message?: unknown }).message)
    ? (cause as { message: string }).message
    : undefined
  const summary = e.reason.message ?? e.reason._tag
  return own === undefined || summary.includes(own) ? summary : `${summary}: ${own}`
}

/** The SQLSTATE of a server error (five characters), not a socket's errno. */
const sqlState = (e: SqlError.SqlError): string | undefined => {
  const cause = e.reason.cause
  const code = Predicate.isObject(cause) ? (cause as { code?: unknown }).code : undefined
  return Predicate.isString(code) && /^[0-9A-Z]{5}$/.test(code) ? code : undefined
}

/** The driver's own refusals of its settings, before any connection: a retry cannot fix them. */
const configProblem = /^PgConnection: (Invalid|Unsupported|Unrecognized|Reserved|No username|keepAlive|Startup parameter)/

/**
 * A failure of the fleet's Postgres as the miner's typed error: the database down or unreachable is a
 * NetworkError (retryable) whose hint names where it should be and the setting; never the URL's password.
 * `component` names what was using it (the journal, the nonce ledger).
 */
export const pgError = (e: unknown, context: string, target: PgTarget, component = "journal"): MiningError => {
  if (isMiningError(e)) return e
  const where = `${component} (${target.display}): ${context}`
  if (!SqlError.isSqlError(e)) {
    const text = scrub(e instanceof Error ? e.message : String(e), target)
    const code = Predicate.isObject(e) ? (e as { code?: unknown }).code : undefined
    return classify({ message: text, code }, where)
  }
  const cause = scrub(causeText(e), target)
  const message = `${where}: ${cause}`
  const state = sqlState(e)
  const unreachable = new NetworkError({
    message,
    cause,
    service: "postgres",
    hint: `start Postgres at ${target.address} or point ${target.setting} at the fleet's database`
  })
  switch (e.reason._tag) {
    case "ConnectionError":
      return configProblem.test(e.reason.message ?? "")
        ? new ValidationError({ message, cause, field: target.setting, hint: `fix ${target.setting}` })
        : unreachable
    case "AuthenticationError":
      return new AuthenticationError({
        message,
        cause,
        hint: `check the user and password in ${target.setting} (and that pg_hba.conf admits this host)`
      })
    case "AuthorizationError":
      return new AuthenticationError({
        message,
        cause,
        hint: `grant the user of ${target.setting} CREATE on the database and its public schema (the journal creates ` +
          "its r3mes_* tables at start)"
      })
    case "DeadlockError":
    case "SerializationError":
    case "LockTimeoutError":
      return new RetryableError({ message, cause })
    case "StatementTimeoutError":
      return new TimeoutError({ message, cause })
  }
  // Shutting down, starting up, crash recovery, or a connection dropped mid-statement: it comes back. So does a
  // session the server ended for sitting idle in a transaction (25P03: this process was frozen past the timeout).
  if (state !== undefined && (state.startsWith("08") || state.startsWith("57P") || state === "25P03")) return unreachable
  switch (state) {
    case "3D000":
      return new ValidationError({
        message,
        cause,
        field: target.setting,
        hint: `create the database${target.database === undefined ? "" : ` (createdb ${target.database})`} or ` +
          `point ${target.setting} at an existing one`
      })
    case "53100":
      return new ResourceError({ message, cause, resource: "disk", hint: "free disk space on the Postgres server" })
    case "53200":
      return new ResourceError({ message, cause, resource: "memory" })
    case "53300":
      return new RetryableError({
        message,
        cause,
        hint: "Postgres has no connection slot left: raise its max_connections, or run fewer runners"
      })
  }
  const foreign = e.reason.cause
  const code = Predicate.isObject(foreign) ? (foreign as { code?: unknown }).code : undefined
  return classify({ message: cause, code }, where)
}

/**
 * @effect/sql turns a ROLLBACK that fails (the connection lost in the middle of a transaction: the server restarted)
 * into a defect, which takes precedence over the error that caused the rollback. It is the lost connection, a
 * failure like any other here: retryable, with the adapter's hint, instead of a defect that ends the transaction
 * as if the code were wrong.
 */
export const lostConnectionAsFailure = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError.SqlError, R> =>
  Effect.catchDefect(effect, (defect) => (SqlError.isSqlError(defect) ? Effect.fail(defect) : Effect.die(defect)))

