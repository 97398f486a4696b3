import { Cause, Context, Duration, Effect, Exit, Layer, Option } from "effect"
import { CircuitBreaker } from "effect/persistence"
import { isRetryable, type MiningError, NetworkError } from "../domain/errors.ts"
import { Settings } from "./Settings.ts"

/** The outside services a mining transaction depends on, each behind its own circuit breaker. */
export type OutsideService = "chain" | "ipfs"

export type BreakerState = "closed" | "open" | "half_open"

/**
 * Core service: one circuit breaker per outside service (DESIGN.md "Errors"). After R3MES_CIRCUIT_BREAKER_THRESHOLD
 * consecutive retryable failures a breaker opens and calls fail fast, until R3MES_CIRCUIT_BREAKER_RESET has passed
 * and a probe goes through. The coordinator guards every call with it; the mining loop waits while a breaker is
 * open instead of claiming work that would fail at the first call to the service.
 */
export class ServiceBreakers extends Context.Service<ServiceBreakers, {
  /** Runs the call through the service's breaker: only retryable failures count towards opening it. */
  readonly guard: <A>(service: OutsideService, call: Effect.Effect<A, MiningError>) => Effect.Effect<A, MiningError>
  readonly state: (service: OutsideService) => Effect.Effect<BreakerState>
  /** Completes once no breaker is open (a breaker past its open time lets the next call probe). */
  readonly awaitPassable: Effect.Effect<void>
}>()("r3mes/services/ServiceBreakers") {
  static readonly layer: Layer.Layer<ServiceBreakers, never, Settings> = Layer.effect(
    ServiceBreakers,
    Effect.gen(function*() {
      const config = yield* Settings
      const breakers = yield* CircuitBreaker.make({
        tripPolicy: CircuitBreaker.consecutive(config.circuitBreakerThreshold),
        openDuration: config.circuitBreakerReset
      })

      const guard = <A>(service: OutsideService, call: Effect.Effect<A, MiningError>) =>
        call.pipe(
          breakers.execute({
            key: service,
            classify: (exit: Exit.Exit<A, MiningError>) =>
              Exit.isSuccess(exit)
                ? CircuitBreaker.success
                : Option.match(Cause.findErrorOption(exit.cause), {
                  onNone: () => CircuitBreaker.ignored,
                  onSome: (error) => (isRetryable(error) ? CircuitBreaker.failure() : CircuitBreaker.success)
                })
          }),
          Effect.catchTag("CircuitBreakerError", (error) =>
            Effect.fail(
              new NetworkError({
                message: `the ${service} circuit breaker is ${error.reason._tag === "CircuitHalfOpen" ? "half-open" : "open"}`,
                service,
                hint: `${config.circuitBreakerThreshold} consecutive ${service} failures; calls resume after ${
                  Duration.format(config.circuitBreakerReset)
                }`
              })
            ))
        )

      const state = (service: OutsideService) =>
        breakers.state(service).pipe(
          Effect.map((s): BreakerState => (s._tag === "Closed" ? "closed" : s._tag === "Open" ? "open" : "half_open")),
          Effect.orElseSucceed((): BreakerState => "closed")
        )

      /** The longest time left before an open breaker lets a probe through; zero when none is open. */
      const remainingOpen = Effect.gen(function*() {
        let longest = Duration.zero
        for (const service of ["chain", "ipfs"] as const) {
          const s = yield* breakers.state(service).pipe(Effect.option)
          if (Option.isSome(s) && s.value._tag === "Open") longest = Duration.max(longest, s.value.retryAfter)
        }
        return longest
      })

      const awaitPassable: Effect.Effect<void> = Effect.gen(function*() {
        for (;;) {
          const left = yield* remainingOpen
          if (Duration.isZero(left)) return
          yield* Effect.logWarning(`a circuit breaker is open: pausing new work for ${Duration.format(left)}`)
          yield* Effect.sleep(left)
        }
      })

      return ServiceBreakers.of({ guard, state, awaitPassable })
    })
  ).pipe(Layer.provide(CircuitBreaker.layerStoreMemory()))
}
