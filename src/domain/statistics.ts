/**
 * Pure statistics helpers: nearest-rank percentiles, the latency summary `/stats` shows, and the sliding window of
 * the per-minute rates. The statistics themselves live in Effect metrics (services/stats/StatisticsModel.ts).
 */

/** The sliding window of every per-minute rate (`/stats` `window_seconds`), live or replayed from the journal. */
export const rateWindowMs = 60_000

/** Nearest-rank percentile (p in 0..100) of the samples; null when there are none. */
export const percentile = (samples: ReadonlyArray<number>, p: number): number | null => {
  if (samples.length === 0) return null
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!
}

/**
 * One step's latency in `/stats`. `count`, `mean_ms` and `max_ms` cover every sample since start; the percentiles
 * cover the recent samples only (a bounded window), so they describe how the miner behaves now.
 */
export interface LatencySummary {
  readonly count: number
  readonly mean_ms: number | null
  readonly p50_ms: number | null
  readonly p95_ms: number | null
  readonly p99_ms: number | null
  readonly max_ms: number | null
}

/** What a latency summary is made of: the state of an Effect `Metric.summary` (structurally; domain stays pure). */
export interface SummaryValues {
  readonly count: number
  readonly sum: number
  readonly max: number
  readonly quantiles: ReadonlyArray<readonly [number, number | undefined]>
}

/** The `/stats` view of a summary whose quantiles include 0.5, 0.95 and 0.99. */
export const latencyFromSummary = (summary: SummaryValues): LatencySummary => {
  const quantile = (q: number) => summary.quantiles.find(([at]) => at === q)?.[1] ?? null
  const empty = summary.count === 0
  return {
    count: summary.count,
    mean_ms: empty ? null : summary.sum / summary.count,
    p50_ms: quantile(0.5),
    p95_ms: quantile(0.95),
    p99_ms: quantile(0.99),
    max_ms: empty ? null : summary.max
  }
}

/**
 * Events per minute over the sliding window ending now. While the process has been up for less than the window,
 * the rate is taken over the uptime, so an early figure is a rate and not a partial count.
 */
export const ratePerMinute = (timestamps: ReadonlyArray<number>, nowMs: number, startedAtMs: number): number => {
  const from = nowMs - rateWindowMs
  const inWindow = timestamps.filter((t) => t > from && t <= nowMs).length
  const spanMs = Math.max(1000, Math.min(rateWindowMs, nowMs - startedAtMs))
  return inWindow / (spanMs / 60_000)
}

/** Drops the timestamps (ascending) that fell out of the window: memory stays bounded by the window's traffic. */
export const pruneWindow = (timestamps: Array<number>, nowMs: number): void => {
  const from = nowMs - rateWindowMs
  let drop = 0
  while (drop < timestamps.length && timestamps[drop]! <= from) drop++
  if (drop > 0) timestamps.splice(0, drop)
}
