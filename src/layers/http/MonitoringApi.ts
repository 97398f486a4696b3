import { NodeHttpServer } from "@effect/platform-node"
import { Clock, Context, Effect, Layer } from "effect"
import { HttpRouter } from "effect/http"
import { HttpApiBuilder } from "effect/http-api"
import { MonitoringApiSpec } from "../../api/MonitoringApiSpec.ts"
import type { ResourceError } from "../../domain/errors.ts"
import { makeRedactor, secretsOf } from "../../domain/redaction.ts"
import type { Journal } from "../../services/Journal.ts"
import type { MiningCoordinator } from "../../services/MiningCoordinator.ts"
import type { MiningStats } from "../../services/MiningStats.ts"
import { Settings } from "../../services/Settings.ts"
import { adminHandlers } from "./AdminHandlers.ts"
import { answerFailure, finishAnswer } from "./answers.ts"
import { BearerAdminAuthorization } from "./BearerAdminAuthorization.ts"
import { dashboardHandlers } from "./DashboardHandlers.ts"
import { minerHandlers } from "./MinerHandlers.ts"
import type { MonitoringAddress, MonitoringApiOptions, MonitoringServer } from "./MonitoringApiOptions.ts"
import { probeHandlers } from "./ProbeHandlers.ts"
import { serveApi } from "./serveApi.ts"

export { prometheusContentType } from "../../api/MonitoringApiSpec.ts"
export { circuitBreakerState, pinsGauge } from "./monitoringMetrics.ts"
export type { ComponentHealth, MonitoringAddress, MonitoringApiOptions } from "./MonitoringApiOptions.ts"

/**
 * The API's routes as one HTTP handler: MonitoringApiSpec served by the handlers of ProbeHandlers, MinerHandlers,
 * DashboardHandlers and AdminHandlers; what none answers (unknown route, wrong method, refused input, a defect)
 * answered by `answerFailure`; every answer redacted last.
 */
const makeApp = Effect.fnUntraced(function*(options: MonitoringApiOptions) {
  const config = yield* Settings
  const startedAt = yield* Clock.currentTimeMillis
  const redact = makeRedactor([...secretsOf(config), ...(options.secrets ?? [])])
  const server: MonitoringServer = {
    options,
    startedAt,
    uptimeSeconds: Effect.map(Clock.currentTimeMillis, (now) => (now - startedAt) / 1000),
    components: options.components ?? Effect.succeed({})
  }
  const routes = HttpApiBuilder.layer(MonitoringApiSpec).pipe(
    Layer.provide([
      probeHandlers(server),
      minerHandlers(server),
      dashboardHandlers,
      adminHandlers.pipe(Layer.provide(BearerAdminAuthorization.layer))
    ]),
    Layer.provide(NodeHttpServer.layerHttpServices)
  )
  const app = yield* HttpRouter.toHttpEffect(routes)
  return app.pipe(Effect.catchCause(answerFailure), Effect.map(finishAnswer(redact)))
})

/**
 * The monitoring HTTP API of DESIGN.md (described in src/api/MonitoringApiSpec.ts) on effect's HTTP server
 * (node:http): the dashboard at / (its files under /assets/), /health, /ready, /stats, /transaction/:id, /transactions,
 * /error-breakdown, POST /cleanup-stale (admin) and /metrics (Prometheus). Answers are JSON with status codes, errors
 * included (the dashboard's are HTML, JS and CSS); configured secrets are redacted from every body.
 */
export class MonitoringApi extends Context.Service<MonitoringApi, MonitoringAddress>()("r3mes/layers/http/MonitoringApi") {
  /**
   * Listens on R3MES_STATS_HOST:R3MES_STATS_PORT (or `options.host`/`options.port`) while the layer is in scope
   * and stops accepting (finishing requests in flight) when it closes. Fails with a ResourceError when the port
   * cannot be bound.
   */
  static readonly layer = (
    options: MonitoringApiOptions = {}
  ): Layer.Layer<MonitoringApi, ResourceError, MiningCoordinator | MiningStats | Journal | Settings> =>
    Layer.unwrap(Effect.gen(function*() {
      const config = yield* Settings
      const host = options.host ?? config.statsHost
      const port = options.port ?? config.statsPort
      const app = yield* makeApp(options)
      return serveApi(MonitoringApi, { host, port, traceProbes: options.traceProbes === true, name: "monitoring API" }, app)
    }))
}
