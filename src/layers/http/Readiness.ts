import { Context, Effect, Layer } from "effect"

/** What `GET /ready` reports besides the circuit breakers. */
export interface ReadinessStatus {
  readonly ready: boolean
  /** Why not, one line each (empty when ready). */
  readonly reasons: ReadonlyArray<string>
}

export const notStartedReason = "starting: crash recovery has not finished"

/**
 * The miner's own readiness, set by the composition root: not ready until crash recovery has run, ready while it
 * mines, not ready again once shutdown begins. `MonitoringApi` reads `status` on every `GET /ready`.
 */
export class Readiness extends Context.Service<Readiness, {
  readonly status: Effect.Effect<ReadinessStatus>
  readonly markReady: Effect.Effect<void>
  /** Replaces the reasons with this one (e.g. "shutting down"). */
  readonly markNotReady: (reason: string) => Effect.Effect<void>
}>()("r3mes/layers/http/Readiness") {
  /** A new handle, not ready with `initialReason` until `markReady`. */
  static readonly make = (initialReason: string = notStartedReason): Effect.Effect<Readiness["Service"]> =>
    Effect.sync(() => {
      let current: ReadinessStatus = { ready: false, reasons: [initialReason] }
      return Readiness.of({
        status: Effect.sync(() => current),
        markReady: Effect.sync(() => {
          current = { ready: true, reasons: [] }
        }),
        markNotReady: (reason) =>
          Effect.sync(() => {
            current = { ready: false, reasons: [reason] }
          })
      })
    })

  /** `Readiness` as a service, not ready until `markReady`. */
  static readonly layer: Layer.Layer<Readiness> = Layer.effect(Readiness, Readiness.make())
}
