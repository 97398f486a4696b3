import { Schema } from "effect"
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiMiddleware, HttpApiSchema, HttpApiSecurity } from "effect/http-api"
import { type ApiRoute, routesOf } from "./apiRoutes.ts"
import { BadRequest, PayloadTooLarge, RouteNotFound, TransactionNotFound, Unauthorized } from "./MonitoringApiErrors.ts"
import {
  CleanupResult,
  CleanupStalePayload,
  ErrorBreakdown,
  EventsFlag,
  HealthAnswer,
  HealthFields,
  MaxAgeSeconds,
  ReadinessAnswer,
  ReadinessFields,
  Stats,
  TransactionList,
  TransactionsQuery,
  TransactionWithEvents
} from "./MonitoringApiSchemas.ts"

/**
 * The monitoring API of DESIGN.md "Monitoring HTTP API", described once: the miner serves it
 * (src/layers/http/) and the `status` / `stats` commands call it through the client derived from it (src/cli/).
 */

export const prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

export const htmlContentType = "text/html; charset=utf-8"

/** /health while a component the miner needs is down for good: the same body, status 503. */
export class Down extends Schema.Error<Down>("Down")(HealthFields, { httpApiStatus: 503 }) {}

/** /ready while the miner cannot take work: the same body as ready, status 503, with the reasons. */
export class NotReady extends Schema.Error<NotReady>("NotReady")(ReadinessFields, { httpApiStatus: 503 }) {}

/**
 * `Authorization: Bearer $R3MES_ADMIN_TOKEN` on the admin routes. No admin token configured means the admin routes
 * refuse everyone (`admin_disabled`).
 */
export class AdminAuthorization extends HttpApiMiddleware.Service<AdminAuthorization>()(
  "r3mes/api/AdminAuthorization",
  { security: { bearer: HttpApiSecurity.bearer }, error: Unauthorized }
) {}

/** Polled by probes and scrapers: never traced unless asked. */
export class ProbesGroup extends HttpApiGroup.make("probes", { topLevel: true }).add(
  HttpApiEndpoint.get("health", "/health", { success: HealthAnswer, error: Down }),
  HttpApiEndpoint.get("ready", "/ready", { success: ReadinessAnswer, error: NotReady }),
  HttpApiEndpoint.get("metrics", "/metrics", {
    success: Schema.String.pipe(HttpApiSchema.asText({ contentType: prometheusContentType }))
  })
) {}

/** What the miner did: statistics and the journal's records. */
export class MinerGroup extends HttpApiGroup.make("miner", { topLevel: true }).add(
  HttpApiEndpoint.get("stats", "/stats", { success: Stats }),
  HttpApiEndpoint.get("transaction", "/transaction/:id", {
    params: { id: Schema.String },
    query: { events: Schema.optional(EventsFlag) },
    success: TransactionWithEvents,
    error: [TransactionNotFound, BadRequest]
  }),
  HttpApiEndpoint.get("transactions", "/transactions", {
    query: TransactionsQuery,
    success: TransactionList,
    error: BadRequest
  }),
  HttpApiEndpoint.get("errorBreakdown", "/error-breakdown", { success: ErrorBreakdown })
) {}

export class AdminGroup extends HttpApiGroup.make("admin", { topLevel: true }).add(
  HttpApiEndpoint.post("cleanupStale", "/cleanup-stale", {
    query: { max_age_seconds: Schema.optional(MaxAgeSeconds) },
    payload: CleanupStalePayload,
    success: CleanupResult,
    error: [BadRequest, PayloadTooLarge]
  })
).middleware(AdminAuthorization) {}

/**
 * The dashboard (DESIGN.md "Monitoring HTTP API"): a page that polls /stats and /transactions, and its scripts and
 * stylesheets, all shipped in the package (no CDN). An asset answers with its own content type; an unknown one is a
 * 404 listing those there are.
 */
export class DashboardGroup extends HttpApiGroup.make("dashboard", { topLevel: true }).add(
  HttpApiEndpoint.get("page", "/", {
    success: Schema.String.pipe(HttpApiSchema.asText({ contentType: htmlContentType }))
  }),
  HttpApiEndpoint.get("asset", "/assets/:name", {
    params: { name: Schema.String },
    success: Schema.String.pipe(HttpApiSchema.asText()),
    error: RouteNotFound
  })
) {}

export class MonitoringApiSpec extends HttpApi.make("r3mes-monitoring")
  .add(ProbesGroup)
  .add(MinerGroup)
  .add(AdminGroup)
  .add(DashboardGroup)
{}

/** Every route as `METHOD /path`, in the order of the description: what a 404 lists and a 405 is computed from. */
export const monitoringRoutes: ReadonlyArray<ApiRoute> = routesOf(MonitoringApiSpec)
