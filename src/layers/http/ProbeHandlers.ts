import { Effect, Metric } from "effect"
import { PrometheusMetrics } from "effect/observability"
import { HttpApiBuilder } from "effect/http-api"
import { Down, MonitoringApiSpec, NotReady } from "../../api/MonitoringApiSpec.ts"
import { GradientStore } from "../../services/GradientStore.ts"
import { MiningCoordinator } from "../../services/MiningCoordinator.ts"
import { MiningStats } from "../../services/MiningStats.ts"
import { formatMetrics } from "./monitoringMetrics.ts"
import type { MonitoringServer } from "./MonitoringApiOptions.ts"
import type { ReadinessStatus } from "./Readiness.ts"

/**
 * GET /health, /ready and /metrics: what orchestrators and scrapers poll. Untraced (Effect.fnUntraced) like their
 * server spans, so a probe every few seconds does not flood the traces.
 */
export const probeHandlers = (server: MonitoringServer) =>
  HttpApiBuilder.group(
    MonitoringApiSpec,
    "probes",
    Effect.fnUntraced(function*(handlers) {
      const coordinator = yield* MiningCoordinator
      const stats = yield* MiningStats
      const store = yield* Effect.serviceOption(GradientStore)
      const readiness = server.options.readiness ?? Effect.succeed<ReadinessStatus>({ ready: true, reasons: [] })

      return handlers.handleAll({
        health: Effect.fnUntraced(function*() {
          const parts = yield* server.components
          const alive = Object.values(parts).every((c) => c.alive)
          const body = {
            status: alive ? "ok" as const : "down" as const,
            uptime_seconds: yield* server.uptimeSeconds,
            ...(Object.keys(parts).length === 0 ? {} : { components: parts })
          }
          return alive ? body : yield* new Down(body)
        }),
        ready: Effect.fnUntraced(function*() {
          const own = yield* readiness
          const statistics = yield* coordinator.getStatistics
          const reasons = [...own.reasons]
          if (!own.ready && reasons.length === 0) reasons.push("the miner is not ready")
          for (const [service, state] of Object.entries(statistics.circuit_breakers)) {
            if (state === "open") reasons.push(`the ${service} circuit breaker is open`)
          }
          const parts = yield* server.components
          for (const [name, part] of Object.entries(parts)) if (!part.ready) reasons.push(`the ${name} is ${part.state}`)
          const isReady = reasons.length === 0
          const body = {
            status: isReady ? "ready" as const : "not_ready" as const,
            reasons,
            ...(Object.keys(parts).length === 0 ? {} : { components: parts }),
            circuit_breakers: statistics.circuit_breakers,
            active_transactions: statistics.active_transactions
          }
          return isReady ? body : yield* new NotReady(body)
        }),
        metrics: Effect.fnUntraced(function*() {
          const miner = yield* formatMetrics({
            registry: stats.metricRegistry,
            statistics: yield* coordinator.getStatistics,
            store
          })
          const verifier = server.options.verifier
          if (verifier === undefined) return miner
          return miner + (yield* PrometheusMetrics.format().pipe(
            Effect.provideService(Metric.MetricRegistry, verifier.metricRegistry)
          ))
        })
      })
    })
  )
