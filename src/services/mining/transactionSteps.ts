import { Clock, Effect, Option, type Scope } from "effect"
import {
  errorCategory,
  isRetryable,
  type MiningError,
  ResourceError,
  RetryableError,
  TimeoutError,
  ValidationError
} from "../../domain/errors.ts"
import { maxGradientBytes } from "../../domain/MinerConfig.ts"
import { PowInput, type SignedTransaction, Submission, type SubmissionReceipt } from "../../domain/mining.ts"
import { encodeSubmitIntent, PIN_INTENT, SUBMIT_INTENT } from "../../domain/intents.ts"
import { retryDelays } from "../../domain/retryPolicy.ts"
import { completeStep, countAttempt, type RollbackAction } from "../../domain/TransactionRecord.ts"
import type { Step } from "../../domain/TransactionState.ts"
import { registerCompensation } from "../compensation.ts"
import type { InFlight, MiningDeps } from "./InFlight.ts"
import type { PinGuard } from "./PinGuard.ts"
import type { SubmissionJudge } from "./SubmissionJudge.ts"
import type { TransactionJournal } from "./TransactionJournal.ts"

/**
 * One step of the mining transaction as the runner interprets it: entering its state, its span, its latency and
 * statistics are applied around `run` by the runner; retries, breakers, intents and compensations inside `run`.
 */
export interface StepSpec {
  readonly step: Step
  /** A failure of a non-critical step is recorded on the record and the transaction goes on (task completion). */
  readonly critical: boolean
  readonly run: (tx: InFlight) => Effect.Effect<void, MiningError, Scope.Scope>
}

/** The thrown-away error a transaction fails with when the chain proved its submission is not there. */
const notSubmittedError = (reason: string, resignable: boolean, timedOut: boolean): MiningError =>
  resignable && !timedOut
    ? new RetryableError({ message: `not on chain: ${reason}`, hint: "signing the submission again" })
    : timedOut
    ? new TimeoutError({ message: `not on chain: ${reason}; the transaction timeout has passed` })
    : new ValidationError({ message: `not on chain: ${reason}`, hint: "the chunk can be mined again" })

/**
 * The four steps of DESIGN.md's mining transaction, in order:
 *
 *   training → ipfs_upload (intent: the CID; compensation: unpin) → blockchain_submit (intent: the signed
 *   transaction = THE COMMIT POINT; then the chain is the judge) → task_complete (non-critical)
 */
export const makeTransactionSteps = (deps: MiningDeps & {
  readonly records: TransactionJournal
  readonly judge: SubmissionJudge
  readonly pins: PinGuard
}) => {
  const { breakers, chain, config, judge, pins, pow, records, stats, store, tasks, trainer } = deps

  const retrying = <A>(effect: Effect.Effect<A, MiningError>) =>
    Effect.retry(effect, { schedule: retryDelays(config), times: config.maxRetries, while: isRetryable })

  /** Retries retryable failures of one step by the configured schedule, counting every attempt in the record. */
  const withRetry = <A>(
    tx: InFlight,
    step: Step,
    effect: Effect.Effect<A, MiningError>,
    retryWhile: (error: MiningError) => boolean = isRetryable
  ) => {
    const attempt = Effect.suspend(() => {
      tx.record = countAttempt(tx.record, step)
      return effect
    })
    return Effect.retry(attempt, { schedule: retryDelays(config), times: config.maxRetries, while: retryWhile }).pipe(
      Effect.ensuring(Effect.suspend(() => stats.retried(step, tx.record.attempts[step] - 1)))
    )
  }

  /** Appends a compensation's outcome to the record (and the log: "Rolling back transaction" is an operator's grep). */
  const recordRollback = (tx: InFlight) =>
    Effect.fnUntraced(function*(action: RollbackAction) {
      tx.record = { ...tx.record, rollback_actions: [...tx.record.rollback_actions, action] }
      if (action.status === "done") {
        yield* Effect.logWarning(
          `Rolling back transaction ${tx.record.transaction_id}: ${action.action} ${action.target} done`
        )
      } else {
        yield* Effect.logError(
          `Rolling back transaction ${tx.record.transaction_id}: ${action.action} ${action.target} FAILED: ${action.error}`
        )
      }
    })

  /** Registered before the pin (and again by recovery): released when the transaction rolls back. */
  const registerUnpin = (tx: InFlight, cid: string) =>
    registerCompensation({
      action: "unpin",
      target: cid,
      undo: retrying(store.unpin(cid)),
      record: recordRollback(tx)
    })

  const identity = breakers.guard("chain", chain.identity)

  const train = Effect.fnUntraced(function*(tx: InFlight) {
    const id = yield* identity
    const result = yield* withRetry(tx, "training", trainer.train(tx.task, id.miner))
    tx.training = result
    tx.record = {
      ...tx.record,
      gradient_hash: result.gradientHash,
      loss_before: result.lossBefore,
      loss_after: result.lossAfter
    }
  })

  const upload = Effect.fnUntraced(function*(tx: InFlight) {
    const envelope = tx.training?.envelope
    if (envelope === undefined) return yield* Effect.die("upload without a trained envelope")
    const limit = maxGradientBytes(config)
    if (envelope.byteLength > limit) {
      return yield* new ResourceError({
        message: `gradient of ${envelope.byteLength} bytes is over the ${config.maxGradientSizeMb} MB limit`,
        resource: "gradient size",
        hint: "raise R3MES_MAX_GRADIENT_SIZE_MB or use a smaller model"
      })
    }
    const cid = yield* retrying(breakers.guard("ipfs", store.computeCid(envelope)))
    // Intent before side effect: the CID is journaled, and its unpin registered, before anything is pinned; all of it
    // under the CID's pin guard, so that a release of the same CID under way does not unpin it after us.
    const added = yield* pins.pinning(
      cid,
      Effect.gen(function*() {
        tx.record = { ...tx.record, ipfs_hash: cid }
        yield* records.save(tx, PIN_INTENT, cid)
        yield* registerUnpin(tx, cid)
        return yield* withRetry(tx, "ipfs_upload", breakers.guard("ipfs", store.add(envelope)))
      })
    )
    if (added !== cid) {
      return yield* new ValidationError({
        message: `the store pinned ${added} but the locally computed CID is ${cid}`,
        hint: "the store's import options differ from the miner's"
      })
    }
  })

  /** The submission of the pinned envelope, with its proof of work (solved once: the nonce is journaled). */
  const prepareSubmission = Effect.fnUntraced(function*(tx: InFlight) {
    const cid = tx.record.ipfs_hash
    const gradientHash = tx.record.gradient_hash
    if (cid === null || gradientHash === null) return yield* Effect.die("submit without a pinned gradient")
    if (tx.record.pow_nonce === null) {
      const id = yield* identity
      const difficulty = Math.max(tx.task.difficulty, config.powDifficulty)
      const started = yield* Clock.currentTimeMillis
      const solution = yield* pow.solve(
        new PowInput({
          chainId: id.chainId,
          registry: id.registry,
          miner: id.miner,
          roundId: tx.task.roundId,
          chunkId: tx.task.chunkId,
          gradientHash,
          cid,
          difficulty
        })
      )
      yield* stats.powSolved(solution.hashes, (yield* Clock.currentTimeMillis) - started)
      tx.record = { ...tx.record, pow_nonce: solution.nonce.toString() }
      yield* records.save(tx, "pow_solved", `difficulty ${difficulty}, ${solution.hashes} hashes`)
    }
    return new Submission({
      roundId: tx.task.roundId,
      chunkId: tx.task.chunkId,
      cid,
      gradientHash,
      powNonce: BigInt(tx.record.pow_nonce!)
    })
  })

  /**
   * THE COMMIT POINT: the signed transaction is journaled, then marked. Uninterruptible, so that a timeout or a
   * shutdown finds it either not journaled (and compensates) or journaled and marked (and lets the chain decide).
   */
  const commit = (tx: InFlight) =>
    Effect.fnUntraced(function*(signed: SignedTransaction): Effect.fn.Return<void, MiningError> {
      tx.record = { ...tx.record, blockchain_tx_hash: signed.hash }
      yield* records.save(tx, SUBMIT_INTENT, encodeSubmitIntent(signed))
      tx.signed = signed
    }, Effect.uninterruptible)

  /** Asks the chain to rule on the journaled submission; a proof that it is not there voids the commit point. */
  const settle = Effect.fnUntraced(function*(tx: InFlight, submission: Submission) {
    const signed = tx.signed!
    const verdict = yield* judge.settle(signed, submission, tx.task.deadline)
    if (verdict._tag === "Submitted") return verdict.receipt
    yield* Effect.logWarning(`transaction ${tx.record.transaction_id}: ${verdict.reason}`)
    tx.signed = undefined
    yield* records.save(tx, "not_submitted", verdict.reason)
    return yield* Effect.fail(notSubmittedError(verdict.reason, verdict.resignable, tx.timedOut))
  })

  /** One signature: AlreadySubmitted of ours with the same gradient is success; a failure past the commit point settles. */
  const signAndSend = (tx: InFlight, submission: Submission) =>
    breakers.guard("chain", chain.submitGradient(submission, commit(tx))).pipe(
      Effect.catch((error): Effect.Effect<SubmissionReceipt, MiningError> => {
        if (tx.signed !== undefined) return settle(tx, submission)
        if (error._tag === "ChainRevertError" && error.errorName === "AlreadySubmitted") {
          return judge.ownSubmission(submission, undefined).pipe(
            Effect.flatMap(Option.match({ onNone: () => Effect.fail(error), onSome: Effect.succeed }))
          )
        }
        return Effect.fail(error)
      })
    )

  const submit = Effect.fnUntraced(function*(tx: InFlight) {
    const submission = yield* prepareSubmission(tx)
    const receipt = tx.signed !== undefined
      // Resumed past the commit point (recovery): the journaled transaction is the only one allowed.
      ? yield* settle(tx, submission)
      : yield* withRetry(
        tx,
        "blockchain_submit",
        signAndSend(tx, submission),
        (error) => isRetryable(error) && !tx.timedOut
      )
    tx.receipt = receipt
    tx.record = {
      ...tx.record,
      blockchain_tx_hash: receipt.txHash,
      block_number: Number(receipt.blockNumber),
      block_hash: receipt.blockHash
    }
    yield* Effect.annotateCurrentSpan({ "r3mes.cid": submission.cid, "r3mes.tx_hash": receipt.txHash })
  })

  /** Non-critical: a false answer or an error still leaves the submission committed. */
  const completeTask = Effect.fnUntraced(function*(tx: InFlight) {
    const receipt = tx.receipt
    if (receipt === undefined) return yield* Effect.die("task completion without a receipt")
    const completed = yield* withRetry(tx, "task_complete", breakers.guard("chain", tasks.complete(tx.task, receipt))).pipe(
      Effect.catch(Effect.fnUntraced(function*(error: MiningError) {
        yield* Effect.logWarning(
          `task completion failed for transaction ${tx.record.transaction_id} (non-critical): ${error.message}`
        )
        tx.record = { ...tx.record, error_category: errorCategory(error), error_message: error.message }
        return false
      }))
    )
    tx.record = { ...tx.record, task_completed: completed }
  })

  const steps: ReadonlyArray<StepSpec> = [
    { step: "training", critical: true, run: train },
    { step: "ipfs_upload", critical: true, run: upload },
    { step: "blockchain_submit", critical: true, run: submit },
    { step: "task_complete", critical: false, run: completeTask }
  ]

  /** Marks a step done (with its latency) in the record and the statistics. */
  const completed = (tx: InFlight, step: Step, ms: number) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      tx.record = completeStep(tx.record, step, ms, now)
      return stats.stepCompleted(step, ms)
    })

  return { steps, registerUnpin, completed, settle, prepareSubmission, retrying }
}

export type TransactionSteps = ReturnType<typeof makeTransactionSteps>
