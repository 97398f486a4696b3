import { Effect, Option } from "effect"
import { type Standing, standingOf } from "../../domain/learningRound.ts"
import type { MiningError } from "../../domain/errors.ts"
import type { OnChainSubmission, RoundInfo } from "../../domain/mining.ts"
import type { RoundSpecV2 } from "../../domain/training/spec.ts"
import type { Chain } from "../Chain.ts"

/** A round's submissions and where each stands, as the chain holds them now. */
export interface RoundLedger {
  readonly round: RoundInfo
  readonly spec: RoundSpecV2
  /** Ascending chunk order. */
  readonly entries: ReadonlyArray<{
    readonly submission: OnChainSubmission
    /** The codes the spec's verifiers recorded on it (in the spec's verifier order, absent ones left out). */
    readonly verdicts: ReadonlyArray<number>
    readonly standing: Standing
  }>
}

/**
 * Reads rounds' ledgers from the chain. Submissions and verdicts never change once recorded, so each is read until
 * found and then remembered: a round polled every few hundred milliseconds costs a few calls per pending chunk.
 * Chunks never claimed (at or past the round's nextChunk) have no submission and are not asked for.
 */
export const makeRoundLedgerReader = (chain: Chain["Service"]) => {
  const submissions = new Map<string, OnChainSubmission>()
  const verdicts = new Map<string, number>()

  const submissionOf = Effect.fnUntraced(function*(roundId: bigint, chunkId: number) {
    const key = `${roundId}:${chunkId}`
    const known = submissions.get(key)
    if (known !== undefined) return Option.some(known)
    const found = yield* chain.getSubmission(roundId, chunkId)
    if (Option.isSome(found)) submissions.set(key, found.value)
    return found
  })

  const verdictOf = Effect.fnUntraced(function*(roundId: bigint, chunkId: number, verifier: string) {
    const key = `${roundId}:${chunkId}:${verifier.toLowerCase()}`
    const known = verdicts.get(key)
    if (known !== undefined) return Option.some(known)
    const found = Option.map(yield* chain.getVerdict(roundId, chunkId, verifier), (v) => v.verdict)
    if (Option.isSome(found)) verdicts.set(key, found.value)
    return found
  })

  const read = Effect.fn("RoundLedger.read")(function*(
    round: RoundInfo,
    spec: RoundSpecV2
  ): Effect.fn.Return<RoundLedger, MiningError> {
    const judges = spec.aggregation.verifiers
    const claimed = Array.from({ length: Math.min(round.nextChunk, round.chunkCount) }, (_, chunkId) => chunkId)
    const entries = yield* Effect.forEach(claimed, (chunkId) =>
      Effect.gen(function*() {
        const submission = yield* submissionOf(round.roundId, chunkId)
        if (Option.isNone(submission)) return Option.none()
        const codes = yield* Effect.forEach(judges, (verifier) => verdictOf(round.roundId, chunkId, verifier))
        const recorded = codes.flatMap((code) => Option.toArray(code))
        return Option.some({ submission: submission.value, verdicts: recorded, standing: standingOf(recorded, judges.length) })
      }), { concurrency: 8 })
    return { round, spec, entries: entries.flatMap((e) => Option.toArray(e)) }
  })

  /** Forgets what was read: after the chain lost state, recorded submissions and verdicts may be gone. */
  const forget = Effect.sync(() => {
    submissions.clear()
    verdicts.clear()
  })

  return { read, forget }
}
