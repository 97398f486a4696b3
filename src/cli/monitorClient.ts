import { existsSync, statSync } from "node:fs"
import { NodeHttpClient } from "@effect/platform-node"
import { Cause, Console, Duration, Effect, Exit, Option, Redacted } from "effect"
import { HttpClientError } from "effect/http"
import { HttpApiClient } from "effect/http-api"
import {
  BadRequest,
  InternalError,
  MethodNotAllowed,
  PayloadTooLarge,
  RouteNotFound,
  TransactionNotFound,
  Unauthorized
} from "../api/MonitoringApiErrors.ts"
import { MonitoringApiSpec } from "../api/MonitoringApiSpec.ts"
import { journalLayer, journalPath } from "../app/adapters.ts"
import { classify } from "../domain/classify.ts"
import { type MiningError, ResourceError } from "../domain/errors.ts"
import { PgJournal } from "../layers/journal/PgJournal.ts"
import { minerSettings } from "../domain/MinerConfigSchema.ts"
import { redactUrl } from "../domain/redaction.ts"
import { Journal } from "../services/Journal.ts"
import { CliExit, ExitCode } from "./exit.ts"
import { loadSettings, type SettingFlagValues, settingFlags } from "./settingsFlags.ts"

/**
 * Where `status` and `stats` get their answers: the running miner's monitoring API, through the client derived from
 * its description (src/api/MonitoringApiSpec.ts), else the journal in its data dir, so the history of a transaction
 * survives the process that ran it.
 */

/** --stats-host / --stats-port (where a running miner answers) and --data-dir (its journal, when none does). */
export const monitorFlags = settingFlags([
  minerSettings.statsHost,
  minerSettings.statsPort,
  minerSettings.dataDir,
  minerSettings.fleetDatabaseUrl
])

export interface MonitorTarget {
  readonly host: string
  readonly port: number
  readonly dataDir: string
  /** A fleet runner's journal is the fleet's, in Postgres (R3MES_FLEET_DATABASE_URL), not the data dir's. */
  readonly fleetDatabaseUrl: Option.Option<Redacted.Redacted<string>>
}

/** Reads --stats-host, --stats-port and --data-dir (flags over env over defaults), validated as for `mine`. */
export const loadMonitorTarget = Effect.fnUntraced(function*(values: SettingFlagValues) {
  const { config } = yield* loadSettings(values)
  return {
    host: config.statsHost,
    port: config.statsPort,
    dataDir: config.dataDir,
    fleetDatabaseUrl: config.fleetDatabaseUrl
  } satisfies MonitorTarget
})

/** A miner that is up answers in milliseconds; waiting longer only delays the fallback to the journal. */
const apiTimeout = Duration.seconds(2)

export const minerUrl = (target: Pick<MonitorTarget, "host" | "port">): string =>
  `http://${target.host.includes(":") ? `[${target.host}]` : target.host}:${target.port}`


/** Where an answer came from, as the human output's first line and the JSON's `source` say. */
export type Source =
  | { readonly _tag: "api"; readonly url: string }
  | { readonly _tag: "journal"; readonly path: string; readonly why: string }

export const describeSource = (source: Source): string =>
  source._tag === "api"
    ? `the miner at ${source.url}`
    : `the journal ${source.path} (${source.why})`

/** The typed client of the monitoring API: one method per endpoint (`stats`, `transaction`, `transactions`, …). */
export type MonitorClient = HttpApiClient.ForApi<typeof MonitoringApiSpec>

/** The API's own error answers: the miner understood the request and refused it. */
const apiErrors = [BadRequest, Unauthorized, PayloadTooLarge, RouteNotFound, MethodNotAllowed, InternalError] as const
type ApiError = InstanceType<(typeof apiErrors)[number]>
const isApiError = (u: unknown): u is ApiError => apiErrors.some((error) => u instanceof error)

type MinerAnswer<A> =
  | { readonly _tag: "answered"; readonly url: string; readonly value: Option.Option<A> }
  | { readonly _tag: "refused"; readonly url: string; readonly error: ApiError }
  | { readonly _tag: "unanswered"; readonly why: string }

const unanswered = (why: string): MinerAnswer<never> => ({ _tag: "unanswered", why })

const transportReason = (cause: unknown): string => {
  const { code, message } = (typeof cause === "object" && cause !== null ? cause : {}) as {
    code?: unknown
    message?: unknown
  }
  if (code === "ECONNREFUSED") return "connection refused"
  if (typeof message === "string" && message !== "") return message
  return typeof code === "string" ? code : String(cause)
}

/**
 * One call of the client on the miner at `target`, over node:http: fetch refuses the ports of its "bad ports" list
 * (6000, 6665-6669, 10080, …), which a miner may well listen on. An answer the description does not decode (another
 * program on the port), no answer in time, or nothing listening is `unanswered`, with the reason, so the caller
 * reads the journal instead; a 404 for the thing asked for is an answer: none.
 */
const askMiner = Effect.fnUntraced(function*<A, E>(
  target: MonitorTarget,
  ask: (client: MonitorClient) => Effect.Effect<A, E>
) {
  const base = minerUrl(target)
  if (target.port === 0) return unanswered("--stats-port is 0; pass the port the miner listens on to ask it")
  const exit = yield* HttpApiClient.make(MonitoringApiSpec, { baseUrl: base }).pipe(
    Effect.flatMap(ask),
    Effect.timeout(apiTimeout),
    Effect.provide(NodeHttpClient.layerNodeHttp),
    Effect.exit
  )
  if (Exit.isSuccess(exit)) return { _tag: "answered", url: base, value: Option.some(exit.value) } as MinerAnswer<A>
  const failure = Cause.squash(exit.cause)
  if (failure instanceof TransactionNotFound) return { _tag: "answered", url: base, value: Option.none() } as MinerAnswer<A>
  if (isApiError(failure)) return { _tag: "refused", url: base, error: failure } as MinerAnswer<A>
  if (Cause.isTimeoutError(failure)) {
    return unanswered(`no miner answered at ${base}: no answer within ${Duration.toSeconds(apiTimeout)} s`)
  }
  if (HttpClientError.isHttpClientError(failure) && failure.reason._tag === "TransportError") {
    return unanswered(`no miner answered at ${base}: ${transportReason(failure.reason.cause)}`)
  }
  return unanswered(`${base} answered, but not as an r3mes-miner monitoring API`)
})

/** The error of looking at `path`, unless it is only that nothing is there (existsSync says false to both). */
const accessProblem = (path: string): unknown => {
  try {
    statSync(path)
    return undefined
  } catch (error) {
    const code = (error as { code?: unknown }).code
    return code === "ENOENT" || code === "ENOTDIR" ? undefined : error
  }
}

/** Where the journal a command reads is: the fleet's (its URL without the password), or the data dir's file. */
const journalWhere = (target: MonitorTarget): string =>
  Option.match(target.fleetDatabaseUrl, {
    onSome: (url) => `of the fleet at ${redactUrl(Redacted.value(url))}`,
    onNone: () => journalPath(target.dataDir)
  })

/**
 * Runs `read` on the data dir's journal, opened read-only and without the data dir's lock, so it works while a
 * miner runs there. A journal that does not exist is not created: a status query on the wrong directory must not
 * leave an empty journal behind.
 */
export const readJournal = <A>(
  target: MonitorTarget,
  why: string,
  read: (journal: Journal["Service"]) => Effect.Effect<A, MiningError>
): Effect.Effect<A, MiningError> => {
  if (Option.isSome(target.fleetDatabaseUrl)) {
    // The whole fleet's journal, every runner's records, read only: nothing is created in a mistyped database.
    return Journal.use(read).pipe(Effect.provide(PgJournal.layerReadOnly({ url: target.fleetDatabaseUrl.value, maxConnections: 2 })))
  }
  const path = journalPath(target.dataDir)
  const unreadable = accessProblem(path)
  if (unreadable !== undefined) {
    return Effect.fail(classify(unreadable, `cannot read the journal ${path}`, { setting: "--data-dir (R3MES_DATA_DIR)" }))
  }
  if (!existsSync(path)) {
    return Effect.fail(
      new ResourceError({
        message: `no journal in ${target.dataDir}`,
        resource: "journal",
        hint: `${why}; start the miner (r3mes-miner mine) or pass its --data-dir and --stats-port`
      })
    )
  }
  return Journal.use(read).pipe(Effect.provide(journalLayer(target.dataDir, { readOnly: true })))
}

/**
 * Asks the running miner (`ask`, on the typed client), else computes the same answer from the journal. `value` is
 * none when the thing asked for does not exist (404). Any other error answer of the API ends the command with its
 * message; `path` names the request in that message.
 */
export const askMinerOrJournal = Effect.fnUntraced(function*<A, E>(
  target: MonitorTarget,
  request: {
    readonly path: string
    readonly ask: (client: MonitorClient) => Effect.Effect<A, E>
    readonly fromJournal: (journal: Journal["Service"]) => Effect.Effect<Option.Option<A>, MiningError>
  }
) {
  const answer = yield* askMiner(target, request.ask)
  if (answer._tag === "answered") return { source: { _tag: "api", url: answer.url } as Source, value: answer.value }
  if (answer._tag === "refused") {
    yield* Console.error(
      `r3mes-miner: the miner at ${answer.url} answered ${answer.error.error} to GET ${request.path}: ${answer.error.message}`
    )
    return yield* new CliExit({ code: ExitCode.failure })
  }
  const value = yield* readJournal(target, answer.why, request.fromJournal)
  const source: Source = { _tag: "journal", path: journalWhere(target), why: answer.why }
  return { source, value }
})

/** With --json stdout carries only the JSON; that it came from the journal is worth a line on stderr. */
export const noteJsonSource = (source: Source): Effect.Effect<void> =>
  source._tag === "journal" ? Console.error(`r3mes-miner: read ${describeSource(source)}`) : Effect.void

export const printJson = (value: unknown): Effect.Effect<void> => Console.log(JSON.stringify(value, null, 2))
