import { Effect, Metric, Option } from "effect"
import { PrometheusMetrics } from "effect/observability"
import type { GradientStore } from "../../services/GradientStore.ts"
import type { BreakerState, CoordinatorStatistics } from "../../services/MiningCoordinator.ts"

/** 0 closed, 1 half-open, 2 open: one series per outside service. */
export const circuitBreakerState = Metric.gauge("r3mes_circuit_breaker_state", {
  description: "State of the circuit breaker in front of an outside service: 0 closed, 1 half-open, 2 open"
})

const breakerValue: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 }

/** Read from the gradient store at each scrape, when the API runs next to one. */
export const pinsGauge = Metric.gauge("r3mes_pins", { description: "CIDs pinned in the gradient store" })

/**
 * The miner's registry in Prometheus text, with the gauges only a scrape reads (breakers, pins) brought up to date
 * in it first. The registry is the miner's own (MiningStats), so two miners in one process never mix series.
 */
export const formatMetrics = Effect.fnUntraced(function*(options: {
  readonly registry: Metric.MetricRegistry
  readonly statistics: CoordinatorStatistics
  readonly store: Option.Option<GradientStore["Service"]>
}) {
  for (const [service, state] of Object.entries(options.statistics.circuit_breakers)) {
    yield* Metric.update(Metric.withAttributes(circuitBreakerState, { service }), breakerValue[state])
  }
  if (Option.isSome(options.store)) {
    // A store that cannot answer leaves the last known value: the scrape itself must not fail.
    yield* options.store.value.pins.pipe(
      Effect.flatMap((pins) => Metric.update(pinsGauge, pins.length)),
      Effect.ignore
    )
  }
  return yield* PrometheusMetrics.format()
}, (effect, options) => Effect.provideService(effect, Metric.MetricRegistry, options.registry))
