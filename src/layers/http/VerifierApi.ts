import { NodeHttpServer } from "@effect/platform-node"
import { Clock, Context, Effect, Layer, Metric } from "effect"
import { HttpRouter } from "effect/http"
import { HttpApiBuilder } from "effect/http-api"
import { PrometheusMetrics } from "effect/observability"
import packageJson from "../../../package.json" with { type: "json" }
import { VerifierApiSpec, verifierRoutes } from "../../api/VerifierApiSpec.ts"
import type { ResourceError } from "../../domain/errors.ts"
import { makeRedactor, secretsOf } from "../../domain/redaction.ts"
import { Settings } from "../../services/Settings.ts"
import { Verifier } from "../../services/Verifier.ts"
import { answerFailureFor, asJson, finishAnswer } from "./answers.ts"
import type { MonitoringAddress } from "./MonitoringApiOptions.ts"
import { serveApi } from "./serveApi.ts"

const handlers = (startedAt: number) =>
  HttpApiBuilder.group(VerifierApiSpec, "verifier", (group) =>
    Effect.gen(function*() {
      const verifier = yield* Verifier
      const uptime = Effect.map(Clock.currentTimeMillis, (now) => (now - startedAt) / 1000)
      return group.handleAll({
        health: Effect.fnUntraced(function*() {
          return { status: "ok" as const, uptime_seconds: yield* uptime }
        }),
        stats: Effect.fn("VerifierApi.stats")(function*() {
          return {
            verifier: asJson(yield* verifier.snapshot),
            process: {
              version: packageJson.version,
              started_at: new Date(startedAt).toISOString(),
              uptime_seconds: yield* uptime
            }
          }
        }),
        metrics: Effect.fnUntraced(function*() {
          return yield* PrometheusMetrics.format().pipe(Effect.provideService(Metric.MetricRegistry, verifier.metricRegistry))
        })
      })
    }))

/**
 * The monitoring API of `r3mes-miner verify` (src/api/VerifierApiSpec.ts): /health, /stats (the `verifier` section)
 * and /metrics (r3mes_verifications_total{verdict}, r3mes_verification_seconds), on R3MES_STATS_HOST:PORT; every
 * answer redacted of the configured secrets.
 */
export class VerifierApi extends Context.Service<VerifierApi, MonitoringAddress>()("r3mes/layers/http/VerifierApi") {
  static readonly layer: Layer.Layer<VerifierApi, ResourceError, Verifier | Settings> = Layer.unwrap(
    Effect.gen(function*() {
      const config = yield* Settings
      const startedAt = yield* Clock.currentTimeMillis
      const redact = makeRedactor(secretsOf(config))
      const routes = HttpApiBuilder.layer(VerifierApiSpec).pipe(
        Layer.provide(handlers(startedAt)),
        Layer.provide(NodeHttpServer.layerHttpServices)
      )
      const app = (yield* HttpRouter.toHttpEffect(routes)).pipe(
        Effect.catchCause(answerFailureFor(verifierRoutes)),
        Effect.map(finishAnswer(redact))
      )
      return serveApi(VerifierApi, { host: config.statsHost, port: config.statsPort, traceProbes: false, name: "verifier API" }, app)
    })
  )
}
