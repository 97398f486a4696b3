import type { Duration, Option, Redacted } from "effect"

/**
 * The miner's validated configuration (DESIGN.md "Configuration"). Loaded from env vars and CLI flags by
 * `minerConfig` (src/domain/MinerConfigSchema.ts, one descriptor per setting); flags win over env.
 */
export interface MinerConfig {
  readonly transactionTimeout: Duration.Duration
  readonly maxRetries: number
  /** 16..32 */
  readonly powDifficulty: number
  readonly retryInitialDelay: Duration.Duration
  readonly retryMaxDelay: Duration.Duration
  readonly retryBackoffFactor: number
  readonly maxGradientSizeMb: number
  readonly maxActiveTransactions: number
  readonly circuitBreakerThreshold: number
  readonly circuitBreakerReset: Duration.Duration
  readonly privateKey: Option.Option<Redacted.Redacted<string>>
  readonly rpcUrl: Option.Option<string>
  readonly registryAddress: Option.Option<string>
  /** `embedded` or a Kubo RPC URL. */
  readonly ipfsApi: string
  readonly dataDir: string
  readonly statsHost: string
  readonly statsPort: number
  readonly adminToken: Option.Option<Redacted.Redacted<string>>
  readonly logFile: string
}

export const maxGradientBytes = (config: Pick<MinerConfig, "maxGradientSizeMb">): number =>
  Math.floor(config.maxGradientSizeMb * 1024 * 1024)
