import { Schema } from "effect"
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema } from "effect/http-api"
import { type ApiRoute, routesOf } from "./apiRoutes.ts"
import { prometheusContentType } from "./MonitoringApiSpec.ts"
import { HealthAnswer, JsonObject } from "./MonitoringApiSchemas.ts"

/**
 * The monitoring API of `r3mes-miner verify` (DESIGN.md "Verification": its own /stats section and metrics): what
 * the verifier did, for operators, probes and scrapers. The miner's API (MonitoringApiSpec) carries the same
 * `verifier` section when the verifier runs inside `mine`.
 */
export const VerifierStats = Schema.Struct({
  /** Verdicts by name, accepted, rejected, not sampled, already on chain, pending, cursor block, recompute p50/p95. */
  verifier: JsonObject,
  process: Schema.Struct({ version: Schema.String, started_at: Schema.String, uptime_seconds: Schema.Number })
})

export class VerifierGroup extends HttpApiGroup.make("verifier", { topLevel: true }).add(
  HttpApiEndpoint.get("health", "/health", { success: HealthAnswer }),
  HttpApiEndpoint.get("stats", "/stats", { success: VerifierStats }),
  HttpApiEndpoint.get("metrics", "/metrics", {
    success: Schema.String.pipe(HttpApiSchema.asText({ contentType: prometheusContentType }))
  })
) {}

export class VerifierApiSpec extends HttpApi.make("r3mes-verifier").add(VerifierGroup) {}

export const verifierRoutes: ReadonlyArray<ApiRoute> = routesOf(VerifierApiSpec)
