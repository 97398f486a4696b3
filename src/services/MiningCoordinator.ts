import { Cause, Clock, Context, Deferred, Duration, Effect, Exit, Layer, Option, Scope } from "effect"
import { CircuitBreaker } from "effect/persistence"
import {
  errorCategory,
  isRetryable,
  type MiningError,
  NetworkError,
  ResourceError,
  RetryableError,
  TimeoutError,
  ValidationError
} from "../domain/errors.ts"
import { maxGradientBytes } from "../domain/MinerConfig.ts"
import {
  type MinerIdentity,
  PowInput,
  type RoundInfo,
  type SignedTransaction,
  Submission,
  type SubmissionReceipt,
  Task,
  transactionKey
} from "../domain/mining.ts"
import { retryDelays } from "../domain/retryPolicy.ts"
import { decodeSubmitIntent, encodeSubmitIntent, PIN_INTENT, SUBMIT_INTENT } from "../domain/intents.ts"
import {
  completeStep,
  countAttempt,
  newRecord,
  type RollbackAction,
  type TransactionRecord,
  transition,
  withAge
} from "../domain/TransactionRecord.ts"
import { isTerminal, type Step, type TransactionState } from "../domain/TransactionState.ts"
import { Chain } from "./Chain.ts"
import { CrashPoints } from "./CrashPoints.ts"
import { registerCompensation } from "./compensation.ts"
import { GradientStore } from "./GradientStore.ts"
import { Journal } from "./Journal.ts"
import { MiningStats, type StatisticsSnapshot } from "./MiningStats.ts"
import { PowSolver } from "./PowSolver.ts"
import { Settings } from "./Settings.ts"
import { TaskSource } from "./TaskSource.ts"
import { Trainer } from "./Trainer.ts"

export type BreakerState = "closed" | "open" | "half_open"

export interface RecoveryOptions {
  /** Pins of transactions that ended less than this long ago are kept (default 0). */
  readonly orphanGrace?: Duration.Input | undefined
  /** Also release pins the journal does not know (only for a store that is the miner's own). Default false. */
  readonly releaseUnknownPins?: boolean | undefined
}

export interface RecoverySummary {
  readonly recovered: number
  readonly committed: number
  readonly rolled_back: number
  readonly failed: number
  readonly orphan_pins_released: ReadonlyArray<string>
}

export interface CoordinatorStatistics extends StatisticsSnapshot {
  readonly circuit_breakers: { readonly chain: BreakerState; readonly ipfs: BreakerState }
}

/**
 * Core service: the atomic mining transaction.
 *
 *   pending → training → ipfs_upload → blockchain_submit → task_complete → committed
 *
 * Each compensation is registered before the side effect it undoes and runs, in reverse order, when the
 * transaction fails, times out or is interrupted. The chain submission is the commit point: once it is on chain
 * nothing is undone, and a failure to mark the task complete leaves the transaction committed with
 * `task_completed: false`.
 */
export class MiningCoordinator extends Context.Service<MiningCoordinator, {
  /** Registers a pending transaction for the task. ResourceError when R3MES_MAX_ACTIVE_TRANSACTIONS are in flight. */
  readonly createTransaction: (task: Task) => Effect.Effect<TransactionRecord, MiningError>
  /**
   * Runs a pending transaction to a final state and returns its final record (committed, failed or rolled_back:
   * the cause is in the record). Fails only when the transaction cannot be run at all.
   */
  readonly executeAtomicMining: (transactionId: string) => Effect.Effect<TransactionRecord, MiningError>
  /** createTransaction + executeAtomicMining. */
  readonly mine: (task: Task) => Effect.Effect<TransactionRecord, MiningError>
  readonly getTransactionStatus: (transactionId: string) => Effect.Effect<Option.Option<TransactionRecord>, MiningError>
  readonly getStatistics: Effect.Effect<CoordinatorStatistics>
  /** Rolls back in-flight transactions older than maxAge; returns their ids. */
  readonly cleanupStaleTransactions: (maxAge: Duration.Input) => Effect.Effect<ReadonlyArray<string>, MiningError>
  /**
   * Crash recovery, run at start before any new work: every non-terminal transaction of the journal is rolled
   * forward from its last completed step or compensated; then orphan pins are released.
   */
  readonly recoverTransactions: (options?: RecoveryOptions) => Effect.Effect<RecoverySummary, MiningError>
  /** Rolls back one in-flight transaction; false when it is unknown or already final. */
  readonly forceCleanupTransaction: (transactionId: string) => Effect.Effect<boolean, MiningError>
  readonly activeCount: Effect.Effect<number>
}>()("r3mes/services/MiningCoordinator") {
  static readonly layer: Layer.Layer<
    MiningCoordinator,
    never,
    Trainer | GradientStore | Chain | TaskSource | Journal | PowSolver | MiningStats | Settings
  > = Layer.effect(MiningCoordinator, Effect.suspend(() => make)).pipe(
    Layer.provide(CircuitBreaker.layerStoreMemory())
  )
}

/** The mutable state of one in-flight transaction, owned by the fiber that runs it. */
interface InFlight {
  record: TransactionRecord
  readonly task: Task
  readonly startedAtMs: number
  /** Set once the chain holds the submission: from then on nothing may be undone. */
  submitted: boolean
  running: boolean
  /** Completed by a forced cleanup: the running pipeline loses the race and is rolled back. */
  readonly cancelled: Deferred.Deferred<never, MiningError>
  /** Completed once the final state is written. */
  readonly finished: Deferred.Deferred<TransactionRecord>
}

const make = Effect.gen(function*() {
  const config = yield* Settings
  const trainer = yield* Trainer
  const store = yield* GradientStore
  const chain = yield* Chain
  const tasks = yield* TaskSource
  const journal = yield* Journal
  const pow = yield* PowSolver
  const stats = yield* MiningStats
  // Test hook (chaos test): a no-op unless R3MES_CRASH_AT is set.
  const crash = yield* CrashPoints
  const breakers = yield* CircuitBreaker.make({
    tripPolicy: CircuitBreaker.consecutive(config.circuitBreakerThreshold),
    openDuration: config.circuitBreakerReset
  })

  const inFlight = new Map<string, InFlight>()
  const inFlightKeys = new Map<string, string>()
  let identity: MinerIdentity | undefined

  const minerIdentity = Effect.suspend(() =>
    identity ? Effect.succeed(identity) : chain.identity.pipe(Effect.tap((id) => Effect.sync(() => (identity = id))))
  )

  /** Each attempt counts as one call for the breaker; only retryable failures count towards opening it. */
  const guarded = <A>(service: "chain" | "ipfs", effect: Effect.Effect<A, MiningError>) =>
    effect.pipe(
      breakers.execute({
        key: service,
        classify: (exit: Exit.Exit<A, MiningError>) =>
          Exit.isSuccess(exit)
            ? CircuitBreaker.success
            : Option.match(Cause.findErrorOption(exit.cause), {
              onNone: () => CircuitBreaker.ignored,
              onSome: (error) => (isRetryable(error) ? CircuitBreaker.failure() : CircuitBreaker.success)
            })
      }),
      Effect.catchTag("CircuitBreakerError", (error) =>
        Effect.fail(
          new NetworkError({
            message: `the ${service} circuit breaker is ${error.reason._tag === "CircuitHalfOpen" ? "half-open" : "open"}`,
            service,
            hint: `${config.circuitBreakerThreshold} consecutive ${service} failures; calls resume after ${
              Duration.format(config.circuitBreakerReset)
            }`
          })
        ))
    )

  const retrying = <A>(effect: Effect.Effect<A, MiningError>) =>
    Effect.retry(effect, { schedule: retryDelays(config), times: config.maxRetries, while: isRetryable })

  /** Retries retryable failures of one step by the configured schedule, counting every attempt in the record. */
  const withRetry = <A>(tx: InFlight, step: Step, effect: Effect.Effect<A, MiningError>) => {
    const attempt = Effect.suspend(() => {
      tx.record = countAttempt(tx.record, step)
      return effect
    })
    return retrying(attempt).pipe(
      Effect.ensuring(Effect.suspend(() => stats.retried(step, tx.record.attempts[step] - 1)))
    )
  }

  const save = (tx: InFlight, event: string, detail: string | null = null) =>
    journal.save(tx.record, { at: tx.record.updated_at, state: tx.record.state, event, detail })

  const enter = Effect.fnUntraced(function*(tx: InFlight, to: TransactionState) {
    const now = yield* Clock.currentTimeMillis
    const from = tx.record.state
    if (from === to) {
      // A transaction recovered in this state goes on with it.
      yield* Effect.logInfo(`transaction ${tx.record.transaction_id} resumes at ${to}`)
      return yield* save(tx, "resumed", to)
    }
    tx.record = yield* transition(tx.record, to, now)
    yield* stats.stateChanged(from, to)
    yield* Effect.logInfo(`transaction ${tx.record.transaction_id} ${from} → ${to}`)
    yield* save(tx, "state_changed", `${from} → ${to}`)
  })

  /** Runs a step inside its own span and records its latency once it succeeded. */
  const runStep = <A, R>(tx: InFlight, step: Step, body: Effect.Effect<A, MiningError, R>) =>
    Effect.gen(function*() {
      yield* enter(tx, step)
      const started = yield* Clock.currentTimeMillis
      const result = yield* body
      const now = yield* Clock.currentTimeMillis
      tx.record = completeStep(tx.record, step, now - started, now)
      yield* stats.stepCompleted(step, now - started)
      return result
    }).pipe(
      Effect.withSpan(`MiningCoordinator.${step}`, {
        attributes: {
          "r3mes.transaction_id": tx.record.transaction_id,
          "r3mes.round_id": tx.record.round_id,
          "r3mes.chunk_id": tx.record.chunk_id
        }
      })
    )

  /** Appends a compensation's outcome to the record (and the log: "Rolling back transaction" is an operator's grep). */
  const recordRollback = (tx: InFlight) => (action: RollbackAction) =>
    Effect.gen(function*() {
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

  /** Registered before the pin: releases it unless the chain references it by then. */
  const registerUnpin = (tx: InFlight, cid: string) =>
    registerCompensation({
      action: "unpin",
      target: cid,
      undo: retrying(store.unpin(cid)),
      keep: () => tx.submitted,
      record: recordRollback(tx)
    })

  const train = (tx: InFlight) =>
    runStep(
      tx,
      "training",
      Effect.flatMap(minerIdentity, (id) => withRetry(tx, "training", trainer.train(tx.task, id.miner)))
    ).pipe(
      Effect.tap((result) =>
        Effect.sync(() => {
          tx.record = {
            ...tx.record,
            gradient_hash: result.gradientHash,
            loss_before: result.lossBefore,
            loss_after: result.lossAfter
          }
        })
      )
    )

  const upload = (tx: InFlight, envelope: Uint8Array) =>
    runStep(
      tx,
      "ipfs_upload",
      Effect.gen(function*() {
        const limit = maxGradientBytes(config)
        if (envelope.byteLength > limit) {
          return yield* new ResourceError({
            message: `gradient of ${envelope.byteLength} bytes is over the ${config.maxGradientSizeMb} MB limit`,
            resource: "gradient size",
            hint: "raise R3MES_MAX_GRADIENT_SIZE_MB or use a smaller model"
          })
        }
        const cid = yield* retrying(guarded("ipfs", store.computeCid(envelope)))
        // Intent before side effect: the CID is journaled, and its unpin registered, before anything is pinned.
        tx.record = { ...tx.record, ipfs_hash: cid }
        yield* save(tx, PIN_INTENT, cid)
        yield* registerUnpin(tx, cid)
        yield* crash.hit("after_pin_intent") // crash point (test hook)
        const added = yield* withRetry(tx, "ipfs_upload", guarded("ipfs", store.add(envelope)))
        yield* crash.hit("after_pin") // crash point (test hook)
        if (added !== cid) {
          return yield* new ValidationError({
            message: `the store pinned ${added} but the locally computed CID is ${cid}`,
            hint: "the store's import options differ from the miner's"
          })
        }
        return cid
      })
    )

  const submit = (tx: InFlight, gradientHash: string, cid: string) =>
    runStep(
      tx,
      "blockchain_submit",
      Effect.gen(function*() {
        const id = yield* minerIdentity
        const difficulty = Math.max(tx.task.difficulty, config.powDifficulty)
        const powStarted = yield* Clock.currentTimeMillis
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
        yield* stats.powSolved(solution.hashes, (yield* Clock.currentTimeMillis) - powStarted)
        tx.record = { ...tx.record, pow_nonce: solution.nonce.toString() }
        yield* save(tx, "pow_solved", `difficulty ${difficulty}, ${solution.hashes} hashes`)
        yield* crash.hit("after_pow") // crash point (test hook)
        const receipt = yield* withRetry(
          tx,
          "blockchain_submit",
          guarded(
            "chain",
            chain.submitGradient(
              new Submission({
                roundId: tx.task.roundId,
                chunkId: tx.task.chunkId,
                cid,
                gradientHash,
                powNonce: solution.nonce
              }),
              // Intent before side effect: the signed transaction is journaled before it is broadcast.
              (signed) =>
                Effect.suspend(() => {
                  tx.record = { ...tx.record, blockchain_tx_hash: signed.hash }
                  return save(tx, SUBMIT_INTENT, encodeSubmitIntent(signed)).pipe(
                    Effect.andThen(crash.hit("after_submit_intent")) // crash point (test hook)
                  )
                })
            )
          )
        )
        yield* crash.hit("after_broadcast") // crash point (test hook)
        tx.submitted = true
        tx.record = {
          ...tx.record,
          blockchain_tx_hash: receipt.txHash,
          block_number: Number(receipt.blockNumber)
        }
        yield* Effect.annotateCurrentSpan({ "r3mes.cid": cid, "r3mes.tx_hash": receipt.txHash })
        return receipt
      })
    )

  /** Non-critical: a false answer or an error still leaves the submission committed. */
  const completeTask = (tx: InFlight, receipt: SubmissionReceipt) =>
    runStep(
      tx,
      "task_complete",
      withRetry(tx, "task_complete", tasks.complete(tx.task, receipt)).pipe(
        Effect.catch((error) =>
          Effect.gen(function*() {
            yield* Effect.logWarning(
              `task completion failed for transaction ${tx.record.transaction_id} (non-critical): ${error.message}`
            )
            tx.record = { ...tx.record, error_category: errorCategory(error), error_message: error.message }
            return false
          })
        )
      )
    ).pipe(Effect.tap((completed) => Effect.sync(() => (tx.record = { ...tx.record, task_completed: completed }))))

  const pipeline = (tx: InFlight) =>
    Effect.gen(function*() {
      const training = yield* train(tx)
      yield* crash.hit("after_training") // crash point (test hook)
      const cid = yield* upload(tx, training.envelope)
      const receipt = yield* submit(tx, training.gradientHash, cid)
      yield* completeTask(tx, receipt)
      yield* crash.hit("after_task_complete") // crash point (test hook)
    })

  const failureOf = (exit: Exit.Exit<void, MiningError>): MiningError =>
    Exit.isSuccess(exit) ? new ValidationError({ message: "no failure" }) : Option.getOrElse(
      Cause.findErrorOption(exit.cause),
      () =>
        Cause.hasInterrupts(exit.cause)
          ? new TimeoutError({ message: "transaction interrupted", hint: "stopped by shutdown or forced cleanup" })
          : new ValidationError({ message: `defect: ${Cause.pretty(exit.cause)}` })
    )

  /** Writes the final state. Runs uninterruptibly, after the compensations (the scope is already closed). */
  const finalize = Effect.fnUntraced(function*(tx: InFlight, exit: Exit.Exit<void, MiningError>) {
    const now = yield* Clock.currentTimeMillis
    const from = tx.record.state
    let final: TransactionState
    if (Exit.isSuccess(exit) || tx.submitted) {
      // On chain means committed, whatever happened after the submission.
      final = "committed"
      if (from !== "task_complete") {
        tx.record = { ...tx.record, state: "task_complete" }
      }
    } else {
      const error = failureOf(exit)
      final = from === "pending" || from === "training" ? "failed" : "rolled_back"
      tx.record = {
        ...tx.record,
        failed_step: from === "pending" ? null : from,
        error_category: errorCategory(error),
        error_message: error.message
      }
      yield* Effect.logError(
        `transaction ${tx.record.transaction_id} ${final} at ${from}: [${error._tag}] ${error.message}`
      )
    }
    tx.record = yield* transition(tx.record, final, now).pipe(
      Effect.orElseSucceed(() => ({ ...tx.record, state: final, updated_at: new Date(now).toISOString() }))
    )
    yield* stats.stateChanged(from, final)
    yield* Effect.logInfo(`transaction ${tx.record.transaction_id} ${from} → ${final}`)
    yield* save(tx, "state_changed", `${from} → ${final}`).pipe(
      Effect.catch((error) =>
        Effect.logError(`could not journal the final state of ${tx.record.transaction_id}: ${error.message}`)
      )
    )
    const compensations = tx.record.rollback_actions
    yield* stats.transactionFinished({
      state: final as "committed" | "failed" | "rolled_back",
      durationMs: now - tx.startedAtMs,
      errorCategory: final === "committed" ? null : (tx.record.error_category as ReturnType<typeof errorCategory>),
      taskCompleted: tx.record.task_completed,
      compensationsDone: compensations.filter((a) => a.status === "done").length,
      compensationsFailed: compensations.filter((a) => a.status === "failed").length
    })
    inFlight.delete(tx.record.transaction_id)
    inFlightKeys.delete(tx.record.key)
    yield* Deferred.succeed(tx.finished, tx.record)
    return tx.record
  })

  const track = Effect.fnUntraced(function*(record: TransactionRecord, task: Task, startedAtMs: number) {
    const tx: InFlight = {
      record,
      task,
      startedAtMs,
      submitted: false,
      running: false,
      cancelled: yield* Deferred.make<never, MiningError>(),
      finished: yield* Deferred.make<TransactionRecord>()
    }
    inFlight.set(record.transaction_id, tx)
    inFlightKeys.set(record.key, record.transaction_id)
    return tx
  })

  const createTransaction = Effect.fn("MiningCoordinator.createTransaction")(function*(task: Task) {
    const id = yield* minerIdentity
    const key = transactionKey(id, task)
    const running = inFlightKeys.get(key)
    if (running !== undefined) return inFlight.get(running)!.record
    const previous = yield* journal.findByKey(key)
    if (previous !== undefined && previous.state === "committed") return previous
    if (inFlight.size >= config.maxActiveTransactions) {
      return yield* new ResourceError({
        message: `too many active transactions (${inFlight.size} of ${config.maxActiveTransactions})`,
        resource: "active transactions",
        hint: "wait for one to finish or raise R3MES_MAX_ACTIVE_TRANSACTIONS"
      })
    }
    const now = yield* Clock.currentTimeMillis
    const record = newRecord({
      transactionId: `tx-${task.roundId}-${task.chunkId}-${crypto.randomUUID().slice(0, 8)}`,
      key,
      roundId: task.roundId,
      chunkId: task.chunkId,
      nowMs: now
    })
    const tx = yield* track(record, task, now)
    yield* stats.transactionCreated
    yield* save(tx, "created", `round ${task.roundId} chunk ${task.chunkId}`).pipe(
      Effect.tapError(() => finalize(tx, Exit.fail(new ResourceError({ message: "journal unavailable" }))))
    )
    yield* Effect.logInfo(`transaction ${record.transaction_id} created for round ${task.roundId} chunk ${task.chunkId}`).pipe(
      Effect.annotateLogs({ transaction_id: record.transaction_id })
    )
    yield* crash.hit("after_create") // crash point (test hook)
    return record
  })

  /**
   * Runs a transaction's body to its final state: bounded by the transaction timeout, cancellable by a forced
   * cleanup, with the compensations its scope collected run (in reverse order) before the final state is written.
   */
  const runGuarded = (tx: InFlight, body: Effect.Effect<void, MiningError, Scope.Scope>) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const exit = yield* restore(
          Effect.raceFirst(
            Scope.provide(body, scope).pipe(
              Effect.timeoutOrElse({
                duration: config.transactionTimeout,
                orElse: () =>
                  Effect.fail(
                    new TimeoutError({
                      message: `transaction exceeded ${Duration.format(config.transactionTimeout)}`,
                      timeoutMs: Duration.toMillis(config.transactionTimeout),
                      hint: "raise R3MES_TRANSACTION_TIMEOUT"
                    })
                  )
              })
            ),
            Deferred.await(tx.cancelled)
          )
        ).pipe(Effect.exit)
        yield* Scope.close(scope, exit)
        return yield* finalize(tx, exit)
      })
    ).pipe(Effect.annotateLogs({ transaction_id: tx.record.transaction_id }))

  const executeAtomicMining = Effect.fn("MiningCoordinator.executeAtomicMining")(
    function*(transactionId: string) {
      const tx = inFlight.get(transactionId)
      if (tx === undefined) {
        const stored = yield* journal.get(transactionId)
        if (stored !== undefined && isTerminal(stored.state)) return stored
        return yield* new ValidationError({
          message: `no pending transaction ${transactionId}`,
          field: "transaction_id"
        })
      }
      if (tx.running) {
        return yield* new ValidationError({ message: `transaction ${transactionId} is already running` })
      }
      tx.running = true
      yield* Effect.annotateCurrentSpan({
        "r3mes.transaction_id": transactionId,
        "r3mes.round_id": tx.record.round_id,
        "r3mes.chunk_id": tx.record.chunk_id
      })
      return yield* runGuarded(tx, pipeline(tx))
    }
  )

  /**
   * Takes a transaction a crash left non-terminal to a final state without retraining and without a second
   * submission: the chain's record of the chunk decides; a journaled signed transaction is finished (receipt, or
   * the same bytes re-sent); a pinned envelope is submitted; anything that cannot go forward is compensated.
   */
  const resume = (tx: InFlight, signed: SignedTransaction | undefined) =>
    Effect.gen(function*() {
      const cid = tx.record.ipfs_hash
      const gradientHash = tx.record.gradient_hash
      if (cid === null || gradientHash === null) {
        return yield* new ValidationError({ message: "nothing was uploaded before the restart" })
      }
      yield* registerUnpin(tx, cid)
      let receipt: SubmissionReceipt | undefined
      if (signed !== undefined && tx.record.pow_nonce !== null) {
        const submission = new Submission({
          roundId: tx.task.roundId,
          chunkId: tx.task.chunkId,
          cid,
          gradientHash,
          powNonce: BigInt(tx.record.pow_nonce)
        })
        receipt = yield* retrying(guarded("chain", chain.resumeSubmission(submission, signed))).pipe(
          Effect.tapError((e) => Effect.logWarning(`signed submission ${signed.hash} cannot be finished: ${e.message}`)),
          Effect.catchTag("ValidationError", () => Effect.succeed(undefined))
        )
      }
      if (receipt === undefined) {
        const pinned = yield* retrying(guarded("ipfs", store.pins))
        if (!pinned.includes(cid)) {
          return yield* new ValidationError({
            message: `the envelope ${cid} was never pinned; going forward would need retraining`
          })
        }
        if (tx.record.state === "ipfs_upload") {
          const now = yield* Clock.currentTimeMillis
          tx.record = completeStep(tx.record, "ipfs_upload", 0, now)
        }
        receipt = yield* submit(tx, gradientHash, cid)
      } else {
        tx.submitted = true
        tx.record = { ...tx.record, blockchain_tx_hash: receipt.txHash, block_number: Number(receipt.blockNumber) }
        if (tx.record.state === "ipfs_upload") {
          yield* enter(tx, "blockchain_submit")
        }
      }
      yield* completeTask(tx, receipt)
      yield* crash.hit("after_task_complete") // crash point (test hook)
    })

  const recoverOne = Effect.fnUntraced(function*(record: TransactionRecord) {
    const now = yield* Clock.currentTimeMillis
    const roundId = BigInt(record.round_id)
    const round = yield* chain.getRound(roundId).pipe(Effect.orElseSucceed(() => Option.none<RoundInfo>()))
    const task = new Task({
      roundId,
      chunkId: record.chunk_id,
      modelCid: Option.match(round, { onNone: () => "", onSome: (r) => r.modelCid }),
      spec: Option.match(round, { onNone: () => "{}", onSome: (r) => r.spec }),
      difficulty: Option.match(round, { onNone: () => 0, onSome: (r) => r.difficulty }),
      leaseExpiry: 0,
      deadline: Option.match(round, { onNone: () => 0, onSome: (r) => r.deadline })
    })
    const tx = yield* track(record, task, now)
    tx.running = true
    yield* stats.transactionResumed(record.state)
    yield* Effect.logWarning(`recovering transaction ${record.transaction_id} left at ${record.state}`)
    if (record.state === "pending" || record.state === "training") {
      return yield* finalize(
        tx,
        Exit.fail(
          new RetryableError({
            message: "interrupted by a restart before anything was uploaded",
            hint: "the chunk can be mined again"
          })
        )
      )
    }
    const events = yield* journal.events(record.transaction_id)
    const intent = events.findLast((e) => e.event === SUBMIT_INTENT)
    const signed = intent === undefined
      ? undefined
      : yield* decodeSubmitIntent(intent.detail).pipe(Effect.orElseSucceed(() => undefined))
    return yield* runGuarded(tx, resume(tx, signed))
  })

  const recoverTransactions = Effect.fn("MiningCoordinator.recoverTransactions")(function*(
    options: RecoveryOptions = {}
  ) {
    const open = (yield* journal.list({})).filter((r) => !isTerminal(r.state) && !inFlight.has(r.transaction_id))
    const recovered = yield* Effect.forEach([...open].reverse(), recoverOne)
    const orphans = yield* releaseOrphanPins(options)
    const summary: RecoverySummary = {
      recovered: recovered.length,
      committed: recovered.filter((r) => r.state === "committed").length,
      rolled_back: recovered.filter((r) => r.state === "rolled_back").length,
      failed: recovered.filter((r) => r.state === "failed").length,
      orphan_pins_released: orphans
    }
    yield* stats.recovered(summary)
    if (summary.recovered > 0 || orphans.length > 0) {
      yield* Effect.logWarning(`recovery: ${JSON.stringify(summary)}`)
    }
    return summary
  })

  /**
   * Releases pins no committed or in-flight transaction references: those of transactions that ended without a
   * submission (their compensation failed or never ran) and, when the store is the miner's own, pins the journal
   * does not know. Pins of transactions updated within the grace period are left alone.
   */
  const releaseOrphanPins = Effect.fnUntraced(function*(options: RecoveryOptions) {
    const now = yield* Clock.currentTimeMillis
    const graceMs = Duration.toMillis(Duration.fromInputUnsafe(options.orphanGrace ?? "0 seconds"))
    const records = yield* journal.list({})
    const live = new Set<string>()
    const releasable = new Set<string>()
    for (const r of records) {
      if (r.ipfs_hash === null) continue
      if (r.state === "committed" || !isTerminal(r.state) || inFlight.has(r.transaction_id)) live.add(r.ipfs_hash)
      else if (now - Date.parse(r.updated_at) >= graceMs) releasable.add(r.ipfs_hash)
    }
    for (const tx of inFlight.values()) if (tx.record.ipfs_hash !== null) live.add(tx.record.ipfs_hash)
    const pins = yield* retrying(guarded("ipfs", store.pins))
    const known = new Set(records.flatMap((r) => (r.ipfs_hash === null ? [] : [r.ipfs_hash])))
    const orphans = pins.filter((cid) =>
      !live.has(cid) && (releasable.has(cid) || (options.releaseUnknownPins === true && !known.has(cid)))
    )
    for (const cid of orphans) {
      yield* retrying(store.unpin(cid))
      yield* Effect.logWarning(`released orphan pin ${cid}`)
    }
    return orphans
  })

  const mine = Effect.fn("MiningCoordinator.mine")(function*(task: Task) {
    const record = yield* createTransaction(task)
    if (isTerminal(record.state)) return record
    return yield* executeAtomicMining(record.transaction_id)
  })

  const getTransactionStatus = Effect.fn("MiningCoordinator.getTransactionStatus")(function*(transactionId: string) {
    const now = yield* Clock.currentTimeMillis
    const live = inFlight.get(transactionId)
    if (live !== undefined) return Option.some(withAge(live.record, now))
    const stored = yield* journal.get(transactionId)
    return stored === undefined ? Option.none() : Option.some(withAge(stored, now))
  })

  const breakerState = (key: "chain" | "ipfs") =>
    breakers.state(key).pipe(
      Effect.map((state): BreakerState =>
        state._tag === "Closed" ? "closed" : state._tag === "Open" ? "open" : "half_open"
      ),
      Effect.orElseSucceed((): BreakerState => "closed")
    )

  const getStatistics = Effect.gen(function*() {
    const snapshot = yield* stats.snapshot
    return {
      ...snapshot,
      circuit_breakers: { chain: yield* breakerState("chain"), ipfs: yield* breakerState("ipfs") }
    } satisfies CoordinatorStatistics
  })

  /** A transaction not yet started is rolled back here; a running one is cancelled and waited for. */
  const cleanup = Effect.fnUntraced(function*(tx: InFlight, reason: string) {
    if (tx.running) {
      yield* Deferred.fail(tx.cancelled, new ValidationError({ message: reason, hint: "stopped by an operator" }))
      yield* Deferred.await(tx.finished)
    } else {
      tx.running = true
      yield* finalize(tx, Exit.fail(new ValidationError({ message: reason })))
    }
  })

  const forceCleanupTransaction = Effect.fn("MiningCoordinator.forceCleanupTransaction")(
    function*(transactionId: string) {
      const tx = inFlight.get(transactionId)
      if (tx === undefined) return false
      yield* Effect.logWarning(`force cleanup of transaction ${transactionId}`)
      yield* cleanup(tx, "transaction force-cleaned")
      return true
    }
  )

  const cleanupStaleTransactions = Effect.fn("MiningCoordinator.cleanupStaleTransactions")(
    function*(maxAge: Duration.Input) {
      const now = yield* Clock.currentTimeMillis
      const limit = Duration.toMillis(Duration.fromInputUnsafe(maxAge))
      const stale = [...inFlight.values()].filter((tx) => now - tx.startedAtMs > limit)
      yield* Effect.forEach(
        stale,
        (tx) => cleanup(tx, `stale: older than ${Duration.format(Duration.fromInputUnsafe(maxAge))}`),
        { concurrency: "unbounded", discard: true }
      )
      return stale.map((tx) => tx.record.transaction_id)
    }
  )

  // Every coordinator log line says where it comes from: the replaced engine's operators grep for it.
  const logged = <Args extends ReadonlyArray<unknown>, A, E>(f: (...args: Args) => Effect.Effect<A, E>) =>
  (...args: Args) => f(...args).pipe(Effect.annotateLogs({ logger: "atomic_coordinator" }))

  return MiningCoordinator.of({
    createTransaction: logged(createTransaction),
    executeAtomicMining: logged(executeAtomicMining),
    mine: logged(mine),
    getTransactionStatus,
    getStatistics,
    cleanupStaleTransactions: logged(cleanupStaleTransactions),
    forceCleanupTransaction: logged(forceCleanupTransaction),
    recoverTransactions: logged(recoverTransactions),
    activeCount: Effect.sync(() => inFlight.size)
  })
})

