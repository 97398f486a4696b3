import { Context, Metric } from "effect"
import { percentile } from "../../domain/statistics.ts"
import { verdictNames, type VerdictName } from "../../domain/verification.ts"

/**
 * The verifier's metrics, in a registry of its own like MiningStats' (two verifiers, or a verifier and a miner, in
 * one process never share counts). Names are a public contract: rename none.
 */
export const verificationsTotal = Metric.counter("r3mes_verifications_total", {
  description: "Verdicts this verifier recorded on chain, by verdict",
  incremental: true
})
export const verificationSeconds = Metric.histogram("r3mes_verification_seconds", {
  description: "Time to recompute a submission's training, per recomputed submission",
  boundaries: Metric.exponentialBoundaries({ start: 0.01, factor: 2, count: 16 })
})

/** Percentiles cover the most recent recomputations, at most this many (bounded memory). */
const recomputeSampleSize = 2048

/** The `verifier` section of /stats. */
export interface VerifierSnapshot {
  /** Verdicts recorded by this run, by name (every verdict named, 0 when none). */
  readonly verdicts: Readonly<Record<VerdictName, number>>
  readonly accepted: number
  readonly rejected: number
  /** Submissions this verifier's sample left out. */
  readonly not_sampled: number
  /** Submissions whose verdict of ours the chain already held (a restart, another process on the same key). */
  readonly already_on_chain: number
  /** Submissions the chain refused a verdict (it no longer holds them). */
  readonly no_verdict: number
  /** Verdicts journaled and not yet ruled on by the chain. */
  readonly pending: number
  /** The next block to read; null before the first pass. */
  readonly cursor_block: string | null
  readonly recompute_seconds: { readonly count: number; readonly p50: number | null; readonly p95: number | null }
}

export const makeVerifierStats = () => {
  const registry: Metric.MetricRegistry = new Map()
  const context = Context.make(Metric.MetricRegistry, registry)
  const byVerdict = Object.fromEntries(
    verdictNames.map((name) => [name, Metric.withAttributes(verificationsTotal, { verdict: name })])
  ) as Record<VerdictName, Metric.Metric<number, Metric.CounterState<number>>>
  const counts = Object.fromEntries(verdictNames.map((name) => [name, 0])) as Record<VerdictName, number>
  const recent: Array<number> = []
  let recomputations = 0
  let notSampled = 0
  let alreadyOnChain = 0
  let noVerdict = 0
  let pending = 0
  let cursor: bigint | null = null

  return {
    registry,
    verdict: (name: VerdictName): void => {
      counts[name] += 1
      byVerdict[name].updateUnsafe(1, context)
    },
    recomputed: (seconds: number): void => {
      recomputations += 1
      recent.push(seconds)
      if (recent.length > recomputeSampleSize) recent.shift()
      verificationSeconds.updateUnsafe(seconds, context)
    },
    notSampled: (): void => void notSampled++,
    alreadyOnChain: (): void => void alreadyOnChain++,
    noVerdict: (): void => void noVerdict++,
    pending: (count: number): void => void (pending = count),
    cursor: (next: bigint): void => void (cursor = next),
    snapshot: (): VerifierSnapshot => {
      const accepted = counts.accepted_exact + counts.accepted_within_tolerance
      return {
        verdicts: { ...counts },
        accepted,
        rejected: verdictNames.reduce((n, name) => n + counts[name], 0) - accepted,
        not_sampled: notSampled,
        already_on_chain: alreadyOnChain,
        no_verdict: noVerdict,
        pending,
        cursor_block: cursor === null ? null : cursor.toString(),
        recompute_seconds: { count: recomputations, p50: percentile(recent, 50), p95: percentile(recent, 95) }
      }
    }
  }
}

export type VerifierStats = ReturnType<typeof makeVerifierStats>
