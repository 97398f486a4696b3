import { Effect } from "effect"
import { isRetryable, type MiningError } from "../../domain/errors.ts"
import type { MinerConfig } from "../../domain/MinerConfig.ts"
import { retryDelays } from "../../domain/retryPolicy.ts"

type RetryConfig = Pick<MinerConfig, "retryInitialDelay" | "retryBackoffFactor" | "retryMaxDelay" | "maxRetries">

/** DESIGN.md "Errors": a call retried on the configured back-off while its failure is retryable, at most maxRetries. */
export const retrying = (config: RetryConfig) => <A>(call: Effect.Effect<A, MiningError>): Effect.Effect<A, MiningError> =>
  Effect.retry(call, { schedule: retryDelays(config), times: config.maxRetries, while: isRetryable })
