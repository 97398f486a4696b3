import { Duration, Effect, Option } from "effect"
import { AuthenticationError, isRetryable, type MiningError } from "../../domain/errors.ts"
import type { MinerConfig } from "../../domain/MinerConfig.ts"
import { type VerdictCode, VerdictRecord } from "../../domain/verification.ts"
import type { Chain } from "../Chain.ts"
import { VerdictIntent, type VerifierJournal } from "./verifierJournal.ts"

/**
 * How the chain ruled on a verdict of ours: `Recorded` (by this transaction or an earlier one: the chain holds our
 * verdict on the chunk), or `NoVerdict` (the chain refuses one for good: it holds no submission for the chunk).
 */
export type Recording =
  | { readonly _tag: "Recorded"; readonly verdict: number }
  | { readonly _tag: "NoVerdict"; readonly reason: string }

type Settled = { readonly _tag: "Recorded"; readonly verdict: number } | { readonly _tag: "NotRecorded"; readonly reason: string }

/**
 * Writes verdicts on chain with the mining transaction's durability rules (DESIGN.md "Durability", and
 * services/mining/SubmissionJudge.ts for submissions): the signed transaction is journaled before its broadcast,
 * and once journaled only the chain decides — our verdict on the chunk, the transaction's receipt, its nonce. The
 * contract allows one verdict per (round, chunk, verifier), and AlreadyVerified with our own verdict is success.
 */
export const makeVerdictRecorder = (deps: {
  readonly chain: Chain["Service"]
  readonly journal: VerifierJournal
  readonly config: Pick<MinerConfig, "retryInitialDelay" | "retryMaxDelay" | "retryBackoffFactor" | "maxRetries">
  /** This verifier's address. */
  readonly self: string
}) => {
  const { chain, config, journal, self } = deps

  const ownVerdict = (roundId: bigint, chunkId: number) =>
    Effect.map(chain.getVerdict(roundId, chunkId, self), Option.map((v) => v.verdict))

  const judgeOnce = Effect.fnUntraced(function*(intent: VerdictIntent): Effect.fn.Return<Settled | undefined, MiningError> {
    const own = yield* ownVerdict(BigInt(intent.round_id), intent.chunk_id)
    if (Option.isSome(own)) return { _tag: "Recorded", verdict: own.value }
    const status = yield* chain.transactionStatus(intent.signed)
    if (status._tag === "Mined") {
      // Mined, yet no verdict of ours on the chunk: it reverted (or the block that held it is gone).
      return status.success ? undefined : { _tag: "NotRecorded", reason: `transaction ${intent.tx.hash} reverted` }
    }
    if (status._tag === "Dropped") {
      return { _tag: "NotRecorded", reason: `transaction ${intent.tx.hash} was dropped: another one used nonce ${intent.tx.nonce}` }
    }
    return undefined
  })

  /**
   * Asks the chain until it rules on a journaled verdict, re-sending the same bytes while the transaction is pending
   * (the node may never have received them, or lost them). Retries every failure: only an interruption ends it.
   */
  const settle = Effect.fn("Verifier.settle")(function*(intent: VerdictIntent): Effect.fn.Return<Settled> {
    let delay = Duration.min(config.retryInitialDelay, Duration.millis(250))
    let failures = 0
    let resent = false
    for (;;) {
      const judged = yield* Effect.result(judgeOnce(intent))
      if (judged._tag === "Success") {
        if (judged.success !== undefined) return judged.success
        if (!resent) {
          resent = true
          yield* chain.rebroadcast(intent.signed).pipe(
            Effect.catch((error) => Effect.logDebug(`re-sending verdict ${intent.tx.hash}: ${error.message}`))
          )
          continue
        }
        resent = false
      } else {
        failures++
        if ((failures & (failures - 1)) === 0) {
          yield* Effect.logWarning(`the chain has not ruled on verdict ${intent.tx.hash} yet (${failures} failed looks): ${judged.failure.message}`)
        }
      }
      yield* Effect.sleep(delay)
      delay = Duration.min(Duration.times(delay, config.retryBackoffFactor), config.retryMaxDelay)
    }
  })

  /** Settles the journaled intent left by a crash, if any; the cursor still points at its block, so a NotRecorded is redone. */
  const recoverIntent = Effect.fn("Verifier.recoverIntent")(function*() {
    const intent = yield* journal.intent
    if (intent === undefined) return undefined
    const settled = yield* settle(intent)
    yield* journal.clearIntent
    return settled
  })

  const record = Effect.fn("Verifier.record")(function*(verdict: {
    readonly roundId: bigint
    readonly chunkId: number
    readonly verdict: VerdictCode
    readonly reportHash: string
    readonly reportCid: string
  }): Effect.fn.Return<Recording, MiningError> {
    const { chunkId, roundId } = verdict
    let delay = config.retryInitialDelay
    for (let attempt = 0;; attempt++) {
      let intent: VerdictIntent | undefined
      const sent = yield* Effect.result(chain.recordVerdict(
        new VerdictRecord({ roundId, chunkId, verdict: verdict.verdict, reportHash: verdict.reportHash }),
        (signed) => {
          intent = new VerdictIntent({
            round_id: roundId.toString(),
            chunk_id: chunkId,
            verdict: verdict.verdict,
            report_hash: verdict.reportHash,
            report_cid: verdict.reportCid,
            tx: { hash: signed.hash, raw: signed.raw, nonce: signed.nonce }
          })
          return journal.setIntent(intent)
        }
      ))
      if (sent._tag === "Success") {
        if (intent !== undefined) yield* journal.clearIntent
        return { _tag: "Recorded", verdict: verdict.verdict }
      }
      const error = sent.failure
      if (error._tag === "ChainRevertError") {
        // The chain has ruled, whether in the simulation or in a block.
        if (intent !== undefined) yield* journal.clearIntent
        if (error.errorName === "AlreadyVerified") {
          const own = yield* ownVerdict(roundId, chunkId)
          if (Option.isSome(own)) return { _tag: "Recorded", verdict: own.value }
        }
        if (error.errorName === "NoSubmission") return { _tag: "NoVerdict", reason: error.message }
        // The round was aggregated and finalized without this verdict: it no longer counts, nor can it be recorded.
        if (error.errorName === "RoundNotOpen") {
          return { _tag: "NoVerdict", reason: `round ${roundId} is finalized: ${error.message}` }
        }
        if (error.errorName === "NotVerifier") {
          return yield* new AuthenticationError({
            message: `the registry does not accept verdicts from ${self}`,
            hint: `the registry's owner must call setVerifier(${self}, true); on the devnet, use the verifier account its JSON names`
          })
        }
        return yield* error
      }
      if (intent !== undefined) {
        // Journaled: past the commit point, the chain is the judge.
        const settled = yield* settle(intent)
        yield* journal.clearIntent
        if (settled._tag === "Recorded") return settled
        yield* Effect.logWarning(`verdict on round ${roundId} chunk ${chunkId} not recorded (${settled.reason}); signing it again`)
      } else if (!isRetryable(error) || attempt >= config.maxRetries) {
        return yield* error
      }
      yield* Effect.sleep(delay)
      delay = Duration.min(Duration.times(delay, config.retryBackoffFactor), config.retryMaxDelay)
    }
  })

  return { record, settle, recoverIntent, ownVerdict }
}
