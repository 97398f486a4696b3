import { Duration, Effect, Option } from "effect"
import type { MiningError } from "../../domain/errors.ts"
import type { MinerConfig } from "../../domain/MinerConfig.ts"
import { type SignedTransaction, Submission, SubmissionReceipt } from "../../domain/mining.ts"
import type { TransactionRecord } from "../../domain/TransactionRecord.ts"
import type { Chain } from "../Chain.ts"
import type { ServiceBreakers } from "../ServiceBreakers.ts"

/**
 * The chain's verdict on a signed submission:
 * - `Submitted`: the chain holds this miner's submission of the chunk with this gradient hash (by this transaction, or
 *   by an earlier one of ours);
 * - `NotSubmitted`: the chain proves it does not, and this transaction never will put it there. `resignable` when a
 *   new signature could still succeed (the transaction was dropped because another one used its nonce, before the
 *   round's deadline); otherwise the chunk cannot be submitted by this transaction at all (reverted, deadline passed).
 */
export type Verdict =
  | { readonly _tag: "Submitted"; readonly receipt: SubmissionReceipt }
  | { readonly _tag: "NotSubmitted"; readonly reason: string; readonly resignable: boolean }

type Judgement = Verdict | { readonly _tag: "Undecided" }

const submitted = (receipt: SubmissionReceipt): Verdict => ({ _tag: "Submitted", receipt })
const notSubmitted = (reason: string, resignable: boolean): Verdict => ({ _tag: "NotSubmitted", reason, resignable })

/**
 * "The commit point is the broadcast, and the chain is the judge" (DESIGN.md "Durability"). Once a signed submission
 * is journaled, nothing may undo it until the chain has ruled: `settle` asks the chain about the transaction — its
 * receipt, its nonce, the chunk's submission, the round's deadline — and re-sends the same bytes while it may still be
 * mined, until the chain says submitted or proves it never will be. It retries every failure (the network may be
 * down for a long time) and only an interruption ends it early.
 */
export const makeSubmissionJudge = (deps: {
  readonly chain: Chain["Service"]
  readonly breakers: ServiceBreakers["Service"]
  readonly config: Pick<MinerConfig, "retryInitialDelay" | "retryMaxDelay" | "retryBackoffFactor">
}) => {
  const { breakers, chain, config } = deps
  const guarded = <A>(call: Effect.Effect<A, MiningError>) => breakers.guard("chain", call)

  /** This miner's submission of the chunk with the same gradient, as the chain records it. */
  const ownSubmission = Effect.fnUntraced(function*(submission: Submission, signed: SignedTransaction | undefined) {
    const id = yield* guarded(chain.identity)
    const recorded = yield* guarded(chain.getSubmission(submission.roundId, submission.chunkId))
    return recorded.pipe(
      Option.filter((s) =>
        s.miner.toLowerCase() === id.miner.toLowerCase() &&
        s.gradientHash.toLowerCase() === submission.gradientHash.toLowerCase()
      ),
      Option.map((s) =>
        new SubmissionReceipt({
          txHash: s.txHash,
          blockNumber: s.blockNumber,
          blockHash: s.blockHash,
          alreadySubmitted: signed === undefined || s.txHash.toLowerCase() !== signed.hash.toLowerCase()
        })
      )
    )
  })

  /** This miner's submission of a journaled record's gradient, as the chain records it (none when it has none). */
  const ownSubmissionOf = (record: TransactionRecord) =>
    record.gradient_hash === null || record.ipfs_hash === null
      ? Effect.succeed(Option.none<SubmissionReceipt>())
      : ownSubmission(
        new Submission({
          roundId: BigInt(record.round_id),
          chunkId: record.chunk_id,
          cid: record.ipfs_hash,
          gradientHash: record.gradient_hash,
          powNonce: BigInt(record.pow_nonce ?? "0")
        }),
        undefined
      )

  const judgeOnce = Effect.fnUntraced(function*(
    signed: SignedTransaction,
    submission: Submission,
    deadline: number
  ): Effect.fn.Return<Judgement, MiningError> {
    const status = yield* guarded(chain.transactionStatus(signed))
    if (status._tag === "Mined" && status.success) return submitted(status.receipt)
    if (status._tag === "Pending") {
      // The latest block is past the deadline: any block that could still include it is too, so it would revert.
      const now = yield* guarded(chain.now)
      if (now <= deadline) return { _tag: "Undecided" }
    }
    // Reverted, dropped, or pending past the deadline (it would revert if mined now): only the chunk's record says
    // whether an earlier transaction of ours put the same gradient there.
    const own = yield* ownSubmission(submission, signed)
    if (Option.isSome(own)) return submitted(own.value)
    if (status._tag === "Mined") {
      return notSubmitted(`transaction ${signed.hash} reverted in block ${status.receipt.blockNumber}`, false)
    }
    if (status._tag === "Dropped") {
      const now = yield* guarded(chain.now)
      return notSubmitted(
        `transaction ${signed.hash} was dropped: another transaction of the account used its nonce ${signed.nonce}`,
        now <= deadline
      )
    }
    return notSubmitted(`the round's deadline passed and transaction ${signed.hash} was never mined`, false)
  })

  const settle = Effect.fn("SubmissionJudge.settle")(function*(
    signed: SignedTransaction,
    submission: Submission,
    /** The round's deadline, Unix seconds (chain time). */
    deadline: number
  ): Effect.fn.Return<Verdict> {
    let delay = Duration.min(config.retryInitialDelay, Duration.millis(250))
    let failures = 0
    let resent = false
    for (;;) {
      const judged = yield* Effect.result(judgeOnce(signed, submission, deadline))
      if (judged._tag === "Success") {
        if (judged.success._tag !== "Undecided") return judged.success
        // Still pending and still in time: the node may never have received it (a lost request), or may have lost
        // it (a restarted devnet). The same bytes again are harmless either way; a node that mines as it receives
        // has the answer at once, so the next look comes without a wait.
        if (!resent) {
          resent = true
          yield* guarded(chain.rebroadcast(signed)).pipe(
            Effect.catch((error) => Effect.logDebug(`re-sending ${signed.hash}: ${error.message}`))
          )
          continue
        }
        resent = false
      } else {
        failures++
        // One line per doubling of the wait, not one per attempt: the chain may be away for a long time.
        if ((failures & (failures - 1)) === 0) {
          yield* Effect.logWarning(
            `the chain has not ruled on ${signed.hash} yet (${failures} failed looks): ${judged.failure.message}`
          )
        }
      }
      yield* Effect.sleep(delay)
      delay = Duration.min(Duration.times(delay, config.retryBackoffFactor), config.retryMaxDelay)
    }
  })

  return { settle, ownSubmission, ownSubmissionOf }
}

export type SubmissionJudge = ReturnType<typeof makeSubmissionJudge>
