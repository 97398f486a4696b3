import { createHash, timingSafeEqual } from "node:crypto"
import { createServer } from "node:http"
import { NodeHttpServer } from "@effect/platform-node"
import { Cause, Clock, Context, Duration, Effect, Layer, Metric, Option, Redacted, Schema } from "effect"
import {
  HttpMiddleware,
  HttpRouter,
  HttpServer,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "effect/http"
import { PrometheusMetrics } from "effect/observability"
import packageJson from "../../../package.json" with { type: "json" }
import { ResourceError } from "../../domain/errors.ts"
import { type TransactionRecord, withAge } from "../../domain/TransactionRecord.ts"
import { TransactionState } from "../../domain/TransactionState.ts"
import { GradientStore } from "../../services/GradientStore.ts"
import { Journal } from "../../services/Journal.ts"
import { type BreakerState, MiningCoordinator } from "../../services/MiningCoordinator.ts"
import { Settings } from "../../services/Settings.ts"
import { makeRedactor, type SecretInput, secretsOf } from "../../domain/redaction.ts"
import type { ReadinessStatus } from "./Readiness.ts"

export interface MonitoringApiOptions {
  /** Default: R3MES_STATS_HOST. */
  readonly host?: string | undefined
  /** Default: R3MES_STATS_PORT; 0 = any free port (read the bound one from the `MonitoringApi` service). */
  readonly port?: number | undefined
  /** `miner.version` in /stats. Default: the package version. */
  readonly version?: string | undefined
  /**
   * More of `miner` in /stats, e.g. `{ chain: { chain_id, registry, miner }, ipfs: { api } }`, read on every request.
   * Never put a secret here (an RPC URL can carry an API key: pass it in `secrets` too, or leave it out).
   */
  readonly miner?: Effect.Effect<Readonly<Record<string, unknown>>> | Readonly<Record<string, unknown>> | undefined
  /** The miner's own readiness (see `Readiness`). Default: always ready; the circuit breakers still count. */
  readonly readiness?: Effect.Effect<ReadinessStatus> | undefined
  /**
   * Parts of the process the miner depends on (e.g. the embedded devnet), by name, read on every /health and
   * /ready: /health answers 503 while one is down, /ready is not ready unless every one is up.
   */
  readonly components?: Effect.Effect<Readonly<Record<string, ComponentHealth>>> | undefined
  /** Values redacted from every response besides the configured private key and admin token. */
  readonly secrets?: ReadonlyArray<SecretInput> | undefined
  /** Spans for requests to /health, /ready and /metrics (polled by probes and scrapers). Default false. */
  readonly traceProbes?: boolean | undefined
}

/** A part of the process the miner depends on, as /health and /ready show it. */
export interface ComponentHealth {
  /** e.g. "running", "restarting", "down". */
  readonly state: string
  /** False once it cannot come back: /health answers 503. */
  readonly alive: boolean
  /** False while it cannot serve: /ready answers 503. */
  readonly ready: boolean
  readonly [detail: string]: unknown
}

/** Where the monitoring API listens, once it does. */
export interface MonitoringAddress {
  readonly host: string
  /** The bound port (the real one when the configured port is 0). */
  readonly port: number
  /** e.g. `http://127.0.0.1:8080` */
  readonly url: string
}

/** 0 closed, 1 half-open, 2 open: one series per outside service. */
export const circuitBreakerState = Metric.gauge("r3mes_circuit_breaker_state", {
  description: "State of the circuit breaker in front of an outside service: 0 closed, 1 half-open, 2 open"
})

const breakerValue: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 }

/** Read from the gradient store at each scrape, when the API runs next to one. */
export const pinsGauge = Metric.gauge("r3mes_pins", { description: "CIDs pinned in the gradient store" })

export const prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

/** Routes as DESIGN.md "Monitoring HTTP API" fixes them; also what 405 answers are computed from. */
const routes = [
  { method: "GET", path: "/health" },
  { method: "GET", path: "/ready" },
  { method: "GET", path: "/stats" },
  { method: "GET", path: "/transaction/:id" },
  { method: "GET", path: "/transactions" },
  { method: "GET", path: "/error-breakdown" },
  { method: "POST", path: "/cleanup-stale" },
  { method: "GET", path: "/metrics" }
] as const

const probePaths: ReadonlySet<string> = new Set(["/health", "/ready", "/metrics"])

const pathOf = (url: string): string => {
  const end = url.search(/[?#]/)
  return end === -1 ? url : url.slice(0, end)
}

const routePattern = (path: string): RegExp => new RegExp(`^${path.replace(/:[a-z_]+/g, "[^/]+")}$`)
const routePatterns = routes.map((r) => ({ ...r, pattern: routePattern(r.path) }))

const defaultListLimit = 50
const maxListLimit = 1000
const maxBodyBytes = 64 * 1024
const recentErrorsShown = 10

const isState = Schema.is(TransactionState)

/** A request the API refuses: answered as `{ error, message }` with `status`. */
class ApiError extends Schema.TaggedError<ApiError>()("ApiError", {
  status: Schema.Number,
  error: Schema.String,
  message: Schema.String
}) {}

const refuse = (status: number, error: string, message: string) => Effect.fail(new ApiError({ status, error, message }))

const sha256 = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest()

/** One query or body parameter as a single string; repeated parameters are refused. */
const single = (
  value: string | ReadonlyArray<string> | undefined,
  name: string
): Effect.Effect<string | undefined, ApiError> =>
  value === undefined || typeof value === "string"
    ? Effect.succeed(value)
    : refuse(400, "invalid_parameter", `${name} is given more than once`)

const makeApp = Effect.fnUntraced(function*(options: MonitoringApiOptions) {
  const coordinator = yield* MiningCoordinator
  const journal = yield* Journal
  const store = yield* Effect.serviceOption(GradientStore)
  const config = yield* Settings
  const startedAt = yield* Clock.currentTimeMillis
  const version = options.version ?? packageJson.version
  const redact = makeRedactor([...secretsOf(config), ...(options.secrets ?? [])])
  const adminDigest = Option.map(config.adminToken, (token) => sha256(Redacted.value(token)))
  const readiness = options.readiness ?? Effect.succeed<ReadinessStatus>({ ready: true, reasons: [] })
  const minerInfo = options.miner === undefined
    ? Effect.succeed({})
    : Effect.isEffect(options.miner)
    ? options.miner
    : Effect.succeed(options.miner)

  /** Every answer is JSON (but /metrics), and goes through the redactor last. */
  const json = (status: number, body: unknown) =>
    HttpServerResponse.text(
      redact(JSON.stringify(body, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))),
      { status, contentType: "application/json" }
    )
  const problem = (status: number, error: string, message: string, extra: Record<string, unknown> = {}) =>
    json(status, { error, message, ...extra })

  const uptimeSeconds = Effect.map(Clock.currentTimeMillis, (now) => (now - startedAt) / 1000)

  const components: Effect.Effect<Readonly<Record<string, ComponentHealth>>> = options.components ??
    Effect.succeed({})

  const health = Effect.gen(function*() {
    const parts = yield* components
    const alive = Object.values(parts).every((c) => c.alive)
    return json(alive ? 200 : 503, {
      status: alive ? "ok" : "down",
      uptime_seconds: yield* uptimeSeconds,
      ...(Object.keys(parts).length === 0 ? {} : { components: parts })
    })
  })

  const ready = Effect.gen(function*() {
    const own = yield* readiness
    const stats = yield* coordinator.getStatistics
    const reasons = [...own.reasons]
    if (!own.ready && reasons.length === 0) reasons.push("the miner is not ready")
    for (const [service, state] of Object.entries(stats.circuit_breakers)) {
      if (state === "open") reasons.push(`the ${service} circuit breaker is open`)
    }
    const parts = yield* components
    for (const [name, part] of Object.entries(parts)) if (!part.ready) reasons.push(`the ${name} is ${part.state}`)
    const isReady = reasons.length === 0
    return json(isReady ? 200 : 503, {
      status: isReady ? "ready" : "not_ready",
      reasons,
      ...(Object.keys(parts).length === 0 ? {} : { components: parts }),
      circuit_breakers: stats.circuit_breakers,
      active_transactions: stats.active_transactions
    })
  })

  const stats = Effect.gen(function*() {
    const statistics = yield* coordinator.getStatistics
    const info = yield* minerInfo
    return json(200, {
      atomic_coordinator: statistics,
      miner: {
        ...info,
        version,
        started_at: new Date(startedAt).toISOString(),
        uptime_seconds: yield* uptimeSeconds
      }
    })
  })

  const transaction = Effect.gen(function*() {
    const params = yield* HttpRouter.params
    const search = yield* HttpServerRequest.ParsedSearchParams
    const id = params["id"] ?? ""
    const record = yield* coordinator.getTransactionStatus(id)
    if (Option.isNone(record)) {
      return problem(404, "not_found", `no transaction ${id}`, { transaction_id: id })
    }
    const withEvents = yield* single(search["events"], "events")
    if (withEvents === "true" || withEvents === "1") {
      return json(200, { ...record.value, events: yield* journal.events(id) })
    }
    return json(200, record.value)
  })

  const transactions = Effect.gen(function*() {
    const search = yield* HttpServerRequest.ParsedSearchParams
    const stateParam = yield* single(search["state"], "state")
    const limitParam = yield* single(search["limit"], "limit")
    if (stateParam !== undefined && stateParam !== "" && !isState(stateParam)) {
      return yield* refuse(
        400,
        "invalid_state",
        `unknown state ${JSON.stringify(stateParam)}: expected one of ${TransactionState.literals.join(", ")}`
      )
    }
    let limit = defaultListLimit
    if (limitParam !== undefined && limitParam !== "") {
      if (!/^\d+$/.test(limitParam) || Number(limitParam) < 1 || Number(limitParam) > maxListLimit) {
        return yield* refuse(
          400,
          "invalid_limit",
          `limit ${JSON.stringify(limitParam)} is invalid: expected an integer from 1 to ${maxListLimit}`
        )
      }
      limit = Number(limitParam)
    }
    const state = stateParam === undefined || stateParam === "" ? undefined : stateParam as TransactionState
    const now = yield* Clock.currentTimeMillis
    const records = yield* journal.list({ state, limit })
    return json(200, {
      transactions: records.map((r) => withAge(r, now)),
      count: records.length,
      state: state ?? null,
      limit
    })
  })

  const errorBreakdown = Effect.gen(function*() {
    const statistics = yield* coordinator.getStatistics
    const [failed, rolledBack] = yield* Effect.all([
      journal.list({ state: "failed", limit: recentErrorsShown }),
      journal.list({ state: "rolled_back", limit: recentErrorsShown })
    ])
    const recent = [...failed, ...rolledBack]
      .sort((a, b) => b.updated_at.localeCompare(a.updated_at))
      .slice(0, recentErrorsShown)
      .map((r: TransactionRecord) => ({
        transaction_id: r.transaction_id,
        state: r.state,
        failed_step: r.failed_step,
        error_category: r.error_category,
        error_message: r.error_message,
        updated_at: r.updated_at
      }))
    return json(200, {
      error_breakdown: statistics.error_breakdown,
      total_errors: Object.values(statistics.error_breakdown).reduce((a, b) => a + b, 0),
      failed: statistics.failed,
      rolled_back: statistics.rolled_back,
      failure_rate: statistics.failure_rate,
      rollback_rate: statistics.rollback_rate,
      task_completion_failures: statistics.task_completion_failures,
      recent_errors: recent
    })
  })

  /** Bearer token, compared as SHA-256 digests (equal lengths) in constant time. */
  const authorize = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<void, ApiError> => {
    if (Option.isNone(adminDigest)) {
      return refuse(
        401,
        "admin_disabled",
        "admin routes are disabled: no admin token is configured (set R3MES_ADMIN_TOKEN or --admin-token)"
      )
    }
    const bearer = /^Bearer +(\S+) *$/i.exec(request.headers["authorization"] ?? "")
    return bearer !== null && timingSafeEqual(sha256(bearer[1]!), adminDigest.value)
      ? Effect.void
      : refuse(401, "unauthorized", "a valid `Authorization: Bearer <R3MES_ADMIN_TOKEN>` header is required")
  }

  /** `max_age_seconds` from the query, else a JSON or form body; absent = the transaction timeout. */
  const maxAgeSeconds = Effect.fnUntraced(function*(request: HttpServerRequest.HttpServerRequest) {
    const search = yield* HttpServerRequest.ParsedSearchParams
    let raw: unknown = yield* single(search["max_age_seconds"], "max_age_seconds")
    if (raw === undefined) {
      const length = Number(request.headers["content-length"] ?? "0")
      if (length > maxBodyBytes) return yield* refuse(413, "body_too_large", `the body is over ${maxBodyBytes} bytes`)
      const body = (yield* request.text).trim()
      if (body !== "") {
        // `curl -d '{"max_age_seconds": 5}'` sends JSON labelled as a form: the body's shape decides, and a body
        // that names no max_age_seconds is refused rather than silently taken for the default.
        if (!body.startsWith("{") && !body.startsWith("[")) {
          const form = new URLSearchParams(body)
          if (!form.has("max_age_seconds")) {
            return yield* refuse(
              400,
              "invalid_body",
              "the body names no max_age_seconds: send {\"max_age_seconds\": N} or max_age_seconds=N"
            )
          }
          raw = form.get("max_age_seconds") ?? undefined
        } else {
          const parsed = yield* Effect.try({
            try: (): unknown => JSON.parse(body),
            catch: () => new ApiError({ status: 400, error: "invalid_body", message: "the body is not JSON" })
          })
          if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
            return yield* refuse(400, "invalid_body", "expected a JSON object like {\"max_age_seconds\": N}")
          }
          raw = (parsed as Record<string, unknown>)["max_age_seconds"]
        }
      }
    }
    if (raw === undefined || raw === null || raw === "") return Duration.toSeconds(config.transactionTimeout)
    const seconds = typeof raw === "number" ? raw : typeof raw === "string" && raw.trim() !== "" ? Number(raw) : NaN
    if (!Number.isFinite(seconds) || seconds < 0) {
      return yield* refuse(
        400,
        "invalid_max_age",
        `max_age_seconds ${JSON.stringify(raw)} is invalid: expected a number of seconds, 0 or more`
      )
    }
    return seconds
  })

  const cleanupStale = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    yield* authorize(request).pipe(
      Effect.tapError((refused) =>
        Effect.logWarning(
          `admin route refused (${refused.error}): POST /cleanup-stale from ${
            Option.getOrElse(request.remoteAddress, () => "unknown")
          }`
        )
      )
    )
    const seconds = yield* maxAgeSeconds(request)
    const { awaiting_chain, cleaned } = yield* coordinator.cleanupStaleTransactions(Duration.seconds(seconds))
    yield* Effect.logWarning(
      `admin: cleanup-stale (max age ${seconds} s) cleaned ${cleaned.length} transaction(s); ` +
        `${awaiting_chain.length} past their commit point left to the chain`
    )
    return json(200, { cleaned, count: cleaned.length, awaiting_chain, max_age_seconds: seconds })
  })

  const metrics = Effect.gen(function*() {
    const statistics = yield* coordinator.getStatistics
    for (const [service, state] of Object.entries(statistics.circuit_breakers)) {
      yield* Metric.update(Metric.withAttributes(circuitBreakerState, { service }), breakerValue[state])
    }
    if (Option.isSome(store)) {
      // A store that cannot answer leaves the last known value: the scrape itself must not fail.
      yield* store.value.pins.pipe(
        Effect.flatMap((pins) => Metric.update(pinsGauge, pins.length)),
        Effect.ignore
      )
    }
    return HttpServerResponse.text(redact(yield* PrometheusMetrics.format()), { contentType: prometheusContentType })
  })


  /** Unknown route → 404, known route with another method → 405, bad input → 4xx, anything else → 500: all JSON. */
  const onCause = (cause: Cause.Cause<unknown>) =>
    Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const failure = Cause.squash(cause)
      if (failure instanceof ApiError) {
        const response = problem(failure.status, failure.error, failure.message)
        return failure.status === 401
          ? HttpServerResponse.setHeader(response, "www-authenticate", "Bearer realm=\"r3mes-miner admin\"")
          : response
      }
      if (HttpServerError.isHttpServerError(failure) && failure.reason._tag === "RouteNotFound") {
        const path = pathOf(request.url)
        const allowed = routePatterns.filter((r) => r.pattern.test(path)).map((r) => r.method)
        if (allowed.length > 0) {
          return problem(405, "method_not_allowed", `${request.method} ${path} is not supported; use ${allowed.join(", ")}`, {
            allowed
          }).pipe(HttpServerResponse.setHeader("allow", allowed.join(", ")))
        }
        return problem(404, "not_found", `no route ${request.method} ${path}`, {
          routes: routes.map((r) => `${r.method} ${r.path}`)
        })
      }
      yield* Effect.logError(`monitoring API: ${request.method} ${pathOf(request.url)} failed`, cause)
      const message = typeof failure === "object" && failure !== null && "message" in failure
        ? String(failure.message)
        : "internal error"
      return problem(500, "internal_error", message)
    })

  // Each handler answers its own failures, so none reaches the server as an error.
  const handle = <E>(handler: Effect.Effect<HttpServerResponse.HttpServerResponse, E, HttpRouter.Provided>) =>
    Effect.catchCause(handler, onCause)

  const router = yield* HttpRouter.make
  yield* router.add("GET", "/health", handle(health))
  yield* router.add("GET", "/ready", handle(ready))
  yield* router.add("GET", "/stats", handle(stats))
  yield* router.add("GET", "/transaction/:id", handle(transaction))
  yield* router.add("GET", "/transactions", handle(transactions))
  yield* router.add("GET", "/error-breakdown", handle(errorBreakdown))
  yield* router.add("POST", "/cleanup-stale", handle(cleanupStale))
  yield* router.add("GET", "/metrics", handle(metrics))

  return router.asHttpEffect().pipe(Effect.catchCause(onCause))
})

/**
 * The monitoring HTTP API of DESIGN.md on effect's HTTP server (node:http): /health, /ready, /stats,
 * /transaction/:id, /transactions, /error-breakdown, POST /cleanup-stale (admin) and /metrics (Prometheus).
 * Answers are JSON with status codes, errors included; configured secrets are redacted from every body.
 */
export class MonitoringApi extends Context.Service<MonitoringApi, MonitoringAddress>()("r3mes/layers/http/MonitoringApi") {
  /**
   * Listens on R3MES_STATS_HOST:R3MES_STATS_PORT (or `options.host`/`options.port`) while the layer is in scope
   * and stops accepting (finishing requests in flight) when it closes. Fails with a ResourceError when the port
   * cannot be bound.
   */
  static readonly layer = (
    options: MonitoringApiOptions = {}
  ): Layer.Layer<MonitoringApi, ResourceError, MiningCoordinator | Journal | Settings> =>
    Layer.unwrap(Effect.gen(function*() {
      const config = yield* Settings
      const host = options.host ?? config.statsHost
      const port = options.port ?? config.statsPort
      const app = yield* makeApp(options)

      const probesUntraced = options.traceProbes === true
        ? Layer.empty
        : Layer.succeed(
          HttpMiddleware.TracerDisabledWhen,
          (request: HttpServerRequest.HttpServerRequest) =>
            request.method === "GET" && probePaths.has(pathOf(request.url))
        )
      const serve = HttpServer.serve(app).pipe(Layer.provide(probesUntraced))
      const address = Layer.effect(
        MonitoringApi,
        Effect.gen(function*() {
          const server = yield* HttpServer.HttpServer
          const bound = server.address._tag === "UnixPathAddress" ? port : server.address.port
          const url = HttpServer.formatAddress(server.address)
          yield* Effect.logInfo(`monitoring API listening on ${url}`)
          return { host, port: bound, url }
        })
      )
      const server = Layer.effect(
        HttpServer.HttpServer,
        NodeHttpServer.make(createServer, { host, port }).pipe(
          Effect.mapError((error) =>
            new ResourceError({
              message: `the monitoring API cannot listen on ${host}:${port}`,
              resource: "stats port",
              cause: error.cause instanceof Error ? error.cause.message : String(error.cause),
              hint: "set R3MES_STATS_PORT / --stats-port to a free port (0 = any free port) or stop the other process"
            })
          )
        )
      )
      return Layer.merge(serve, address).pipe(Layer.provide(server))
    }))
}
