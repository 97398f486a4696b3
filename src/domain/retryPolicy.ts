import { Duration, Effect, Schedule } from "effect"
import type { MinerConfig } from "./MinerConfig.ts"

/**
 * The retry delays of DESIGN.md "Errors": exponential from the initial delay by the backoff factor, jittered
 * (×0.8..1.2), then capped at the max delay — the cap comes after the jitter so no wait ever exceeds it.
 * The number of retries and the retryable-only rule are applied where the schedule is used.
 */
export const retryDelays = (
  config: Pick<MinerConfig, "retryInitialDelay" | "retryBackoffFactor" | "retryMaxDelay">
): Schedule.Schedule<Duration.Duration> =>
  Schedule.exponential(config.retryInitialDelay, config.retryBackoffFactor).pipe(
    Schedule.jittered,
    Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, config.retryMaxDelay)))
  )

/** The un-jittered delay before retry number `retry` (1-based): what the jitter varies around. */
export const nominalDelay = (
  config: Pick<MinerConfig, "retryInitialDelay" | "retryBackoffFactor" | "retryMaxDelay">,
  retry: number
): Duration.Duration =>
  Duration.min(
    Duration.times(config.retryInitialDelay, Math.pow(config.retryBackoffFactor, retry - 1)),
    config.retryMaxDelay
  )
