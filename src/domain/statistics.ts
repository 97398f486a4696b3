/** Pure statistics helpers used by MiningStats: percentiles over a bounded sample, and a time window of events. */

/** Nearest-rank percentile (p in 0..100) of the samples; null when there are none. */
export const percentile = (samples: ReadonlyArray<number>, p: number): number | null => {
  if (samples.length === 0) return null
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!
}

export interface LatencySummary {
  readonly count: number
  readonly mean_ms: number | null
  readonly p50_ms: number | null
  readonly p95_ms: number | null
  readonly p99_ms: number | null
  readonly max_ms: number | null
}

export const summarizeLatency = (samples: ReadonlyArray<number>, count = samples.length): LatencySummary => ({
  count,
  mean_ms: samples.length === 0 ? null : samples.reduce((a, b) => a + b, 0) / samples.length,
  p50_ms: percentile(samples, 50),
  p95_ms: percentile(samples, 95),
  p99_ms: percentile(samples, 99),
  max_ms: samples.length === 0 ? null : Math.max(...samples)
})

/** A fixed-capacity ring of the most recent samples: percentiles describe recent behaviour in bounded memory. */
export class SampleRing {
  private readonly buffer: Array<number> = []
  private next = 0
  total = 0
  readonly capacity: number
  constructor(capacity: number) {
    this.capacity = capacity
  }
  add(value: number): void {
    this.total++
    if (this.buffer.length < this.capacity) {
      this.buffer.push(value)
    } else {
      this.buffer[this.next] = value
      this.next = (this.next + 1) % this.capacity
    }
  }
  values(): ReadonlyArray<number> {
    return this.buffer
  }
}

/**
 * Events per minute over a sliding window ending now. While the process has been up for less than the window,
 * the rate is taken over the uptime, so an early figure is a rate and not a partial count.
 */
export const ratePerMinute = (
  timestamps: ReadonlyArray<number>,
  nowMs: number,
  windowMs: number,
  startedAtMs: number
): number => {
  const from = nowMs - windowMs
  const inWindow = timestamps.filter((t) => t > from && t <= nowMs).length
  const spanMs = Math.max(1000, Math.min(windowMs, nowMs - startedAtMs))
  return inWindow / (spanMs / 60_000)
}

/** Drops timestamps that fell out of the window (keeps memory bounded by the window's traffic). */
export const pruneWindow = (timestamps: Array<number>, nowMs: number, windowMs: number): void => {
  const from = nowMs - windowMs
  let drop = 0
  while (drop < timestamps.length && timestamps[drop]! <= from) drop++
  if (drop > 0) timestamps.splice(0, drop)
}
