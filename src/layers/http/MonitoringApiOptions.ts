import type { Effect, Metric } from "effect"
import type { SecretInput } from "../../domain/redaction.ts"
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
  /**
   * A verifier running in this process (the embedded devnet's): its snapshot is /stats's `verifier` section and its
   * metrics (r3mes_verifications_total, r3mes_verification_seconds) join /metrics.
   */
  readonly verifier?: {
    readonly snapshot: Effect.Effect<object>
    readonly metricRegistry: Metric.MetricRegistry
    /** Its verdict on a chunk, when it has recorded one: shown with the transaction in /transaction/:id. */
    readonly verdictOf?: (roundId: bigint, chunkId: number) => Effect.Effect<string | undefined>
  } | undefined
  /**
   * The network's learning rounds, where this process runs the round coordinator (the embedded devnet's): /stats's
   * `network` section (rounds finalized here, the newest finalized on chain).
   */
  readonly network?: Effect.Effect<object> | undefined
  /** Where the process is a fleet runner: /stats's `fleet` section (every runner, by state; see app/fleet.ts). */
  readonly fleet?: Effect.Effect<object> | undefined
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

/** What every handler group reads besides the services: the options and when this server started. */
export interface MonitoringServer {
  readonly options: MonitoringApiOptions
  readonly startedAt: number
  readonly uptimeSeconds: Effect.Effect<number>
  readonly components: Effect.Effect<Readonly<Record<string, ComponentHealth>>>
}
