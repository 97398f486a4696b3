import { Cause, Clock, Deferred, Duration, Effect, Exit, Option, Schedule, Scope } from "effect"
import { type ErrorCategory, errorCategory, isRetryable, type MiningError, TimeoutError } from "../../domain/errors.ts"
import type { TransactionRecord } from "../../domain/TransactionRecord.ts"
import type { Step, TransactionState } from "../../domain/TransactionState.ts"
import { isTakenOver } from "../Journal.ts"
import type { InFlight, InFlightRegistry, MiningDeps } from "./InFlight.ts"
import type { TransactionJournal } from "./TransactionJournal.ts"
import type { StepSpec, TransactionSteps } from "./transactionSteps.ts"

/** Why a transaction did not commit, as the record, the statistics and the log show it. */
interface Failure {
  readonly category: ErrorCategory
  readonly message: string
  readonly tag: string
}

const failureOf = (cause: Cause.Cause<MiningError>, tx?: InFlight): Failure =>
  Option.match(Cause.findErrorOption(cause), {
    onSome: (error) =>
      tx?.cancelReason !== undefined
        ? { category: "interrupted", message: tx.cancelReason, tag: "Cancelled" }
        : { category: errorCategory(error), message: error.message, tag: error._tag },
    onNone: () =>
      Cause.hasInterrupts(cause)
        ? { category: "interrupted", message: "interrupted (shutdown or forced stop)", tag: "Interrupted" }
        : { category: "unknown", message: `defect: ${Cause.pretty(cause)}`, tag: "Defect" }
  })

/** The journal refused a write: the transaction is another runner's now. */
const takenOverIn = (cause: Cause.Cause<MiningError>): boolean =>
  Option.match(Cause.findErrorOption(cause), { onSome: isTakenOver, onNone: () => false })

/** How a transaction ended. `suspended`: past the commit point when the miner stopped; recovery will ask the chain. */
export type Outcome =
  | { readonly _tag: "Committed" }
  | { readonly _tag: "Failed"; readonly failure: Failure }
  | { readonly _tag: "Suspended" }

/**
 * Runs mining transactions: the steps of `transactionSteps.ts` in order, each in its span, entering its state through
 * the state machine, timed and counted. Around them, the rules of DESIGN.md "Durability", in one place:
 *
 * - before the commit point (the journaled signed submission) the transaction is bounded by the transaction timeout
 *   and can be cancelled; any failure runs the compensations its scope collected, in reverse order;
 * - past the commit point nothing is undone until the chain rules: a timeout lets the judge go on, a failure hands
 *   over to the judge, a shutdown leaves the record for recovery; only the chain's proof that the submission is not
 *   there lets the compensations run.
 */
export const makeTransactionRunner = (deps: MiningDeps & {
  readonly records: TransactionJournal
  readonly steps: TransactionSteps
  readonly inFlight: InFlightRegistry
}) => {
  const { config, inFlight, records, stats, steps } = deps

  const runStep = Effect.fnUntraced(
    function*(tx: InFlight, spec: StepSpec) {
      yield* records.enter(tx, spec.step)
      const started = yield* Clock.currentTimeMillis
      yield* spec.run(tx)
      yield* steps.completed(tx, spec.step, (yield* Clock.currentTimeMillis) - started)
    },
    // The span is named after the step, so it is not Effect.fn's.
    (effect, tx, spec) =>
      Effect.withSpan(effect, `MiningCoordinator.${spec.step}`, {
        attributes: {
          "r3mes.transaction_id": tx.record.transaction_id,
          "r3mes.round_id": tx.record.round_id,
          "r3mes.chunk_id": tx.record.chunk_id
        }
      })
  )

  const runSteps = (tx: InFlight, specs: ReadonlyArray<StepSpec>) =>
    Effect.forEach(specs, (spec) => runStep(tx, spec), { discard: true })

  /** The steps from `step` on: where a transaction resumes. */
  const stepsFrom = (step: Step): ReadonlyArray<StepSpec> => steps.steps.slice(steps.steps.findIndex((s) => s.step === step))

  const timeoutError = () =>
    new TimeoutError({
      message: `transaction exceeded ${Duration.format(config.transactionTimeout)}`,
      timeoutMs: Duration.toMillis(config.transactionTimeout),
      hint: "raise R3MES_TRANSACTION_TIMEOUT"
    })

  /** Fails at the transaction timeout, unless the commit point was passed by then: the chain decides those. */
  const timer = (tx: InFlight): Effect.Effect<never, MiningError> =>
    Effect.sleep(config.transactionTimeout).pipe(
      Effect.andThen(Effect.suspend(() => {
        if (tx.signed === undefined) return Effect.fail(timeoutError())
        tx.timedOut = true
        return Effect.never
      }))
    )

  /** Writes the final state, or for a suspended transaction that it was left to recovery. */
  const record = Effect.fnUntraced(function*(tx: InFlight, outcome: Outcome) {
    const from = tx.record.state
    const id = tx.record.transaction_id
    if (outcome._tag === "Suspended") {
      yield* Effect.logWarning(`transaction ${id} left at ${from} for recovery: its submission is on its way to the chain`)
      yield* stats.transactionSuspended(from)
      return yield* records.save(tx, "left_for_recovery", "stopped past the commit point; the next start asks the chain")
    }
    let final: TransactionState
    if (outcome._tag === "Committed") {
      // The chain holds it: committed, whatever happened after the submission (task completion is non-critical).
      if (from === "blockchain_submit") tx.record = yield* records.moved(tx.record, "task_complete")
      final = "committed"
    } else {
      final = from === "pending" || from === "training" ? "failed" : "rolled_back"
      tx.record = {
        ...tx.record,
        failed_step: from === "pending" ? null : from,
        error_category: outcome.failure.category,
        error_message: outcome.failure.message
      }
      yield* Effect.logError(`transaction ${id} ${final} at ${from}: [${outcome.failure.tag}] ${outcome.failure.message}`)
    }
    tx.record = yield* records.moved(tx.record, final)
    yield* stats.stateChanged(from, final)
    yield* Effect.logInfo(`transaction ${id} ${from} → ${final}`)
    const compensations = tx.record.rollback_actions
    yield* stats.transactionFinished({
      state: final as "committed" | "failed" | "rolled_back",
      durationMs: (yield* Clock.currentTimeMillis) - tx.startedAtMs,
      errorCategory: outcome._tag === "Failed" ? outcome.failure.category : null,
      taskCompleted: tx.record.task_completed,
      compensationsDone: compensations.filter((a) => a.status === "done").length,
      compensationsFailed: compensations.filter((a) => a.status === "failed").length
    })
    yield* saveEnd(records.save(tx, "state_changed", `${from} → ${final}`))
  })

  /**
   * The last word of a transaction, tried again while the journal is unreachable (a database restarting, for a
   * minute at most): unwritten, the record stays unfinished in the journal until a recovery — the next start, or in
   * a fleet another runner once this one is gone — although this runner knows how it ended. The first try is made
   * whatever happens (an interrupted transaction journals its end too); the next ones are interruptible: a stop
   * meanwhile leaves it to that recovery, as a failure does.
   */
  const saveEnd = (save: Effect.Effect<void, MiningError>) =>
    save.pipe(Effect.catchIf(isRetryable, () =>
      Effect.interruptible(
        save.pipe(Effect.delay("1 second"), Effect.retry({ schedule: Schedule.spaced("1 second"), times: 59, while: isRetryable }))
      )))

  /** Records the end and forgets the transaction: a journal that cannot take the last word is logged, not fatal. */
  const finish = (tx: InFlight, outcome: Outcome): Effect.Effect<TransactionRecord> =>
    record(tx, outcome).pipe(
      Effect.catch((error) => Effect.logError(`could not journal the end of ${tx.record.transaction_id}: ${error.message}`)),
      Effect.andThen(Effect.suspend(() => inFlight.remove(tx))),
      Effect.andThen(Effect.suspend(() => Deferred.succeed(tx.finished, tx.record))),
      Effect.andThen(Effect.sync(() => tx.record))
    )

  /**
   * Another runner of the fleet took the transaction over (this one was thought dead): it is that runner's to finish
   * from its journal. Nothing is undone here (the other runner may be using the pin) and nothing more journaled.
   */
  const handOver = (tx: InFlight): Effect.Effect<TransactionRecord> =>
    Effect.logWarning(
      `transaction ${tx.record.transaction_id} was taken over by another runner of the fleet: stopped here at ` +
        `${tx.record.state}, nothing undone; that runner finishes it`
    ).pipe(
      Effect.andThen(stats.transactionSuspended(tx.record.state)),
      Effect.andThen(Effect.suspend(() => inFlight.remove(tx))),
      Effect.andThen(Effect.suspend(() => Deferred.succeed(tx.finished, tx.record))),
      Effect.andThen(Effect.sync(() => tx.record))
    )

  /** A shutdown that finds the transaction past the commit point: committed if the chain has answered, else suspended. */
  const stoppedPastCommit = (tx: InFlight): Outcome =>
    tx.receipt !== undefined ? { _tag: "Committed" } : { _tag: "Suspended" }

  /**
   * Runs `specs` for a transaction to its end and returns the final record. Never fails: the cause is in the record.
   */
  const run = (
    tx: InFlight,
    specs: ReadonlyArray<StepSpec>,
    /** Runs first in the transaction's scope: where recovery registers the compensations of what a crash left. */
    prelude: Effect.Effect<void, MiningError, Scope.Scope> = Effect.void
  ): Effect.Effect<TransactionRecord> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const compensate = (exit: Exit.Exit<unknown, unknown>) => Scope.close(scope, exit)
        const keep = Scope.close(scope, Exit.void)

        const bounded = Effect.raceFirst(
          Scope.provide(Effect.andThen(prelude, runSteps(tx, specs)), scope),
          Effect.raceFirst(timer(tx), Deferred.await(tx.cancelled))
        )
        const first = yield* Effect.exit(restore(bounded))
        if (Exit.isSuccess(first)) {
          yield* keep
          return yield* finish(tx, { _tag: "Committed" })
        }
        if (takenOverIn(first.cause)) {
          yield* keep
          return yield* handOver(tx)
        }
        // Past the commit point: journaled signed, or (recovered at task_complete) with the chain's receipt in hand.
        if (tx.signed === undefined && tx.receipt === undefined) {
          yield* compensate(first)
          return yield* finish(tx, { _tag: "Failed", failure: failureOf(first.cause, tx) })
        }
        if (Cause.hasInterruptsOnly(first.cause)) {
          yield* keep
          return yield* finish(tx, stoppedPastCommit(tx))
        }
        // Past the commit point, the timeout (or a defect) stopped the steps: the chain decides, however long it takes.
        const second = yield* Effect.exit(restore(Scope.provide(runSteps(tx, stepsFrom("blockchain_submit")), scope)))
        if (Exit.isSuccess(second)) {
          yield* keep
          return yield* finish(tx, { _tag: "Committed" })
        }
        if (takenOverIn(second.cause)) {
          yield* keep
          return yield* handOver(tx)
        }
        if (tx.signed === undefined && tx.receipt === undefined) {
          yield* compensate(second)
          return yield* finish(tx, { _tag: "Failed", failure: failureOf(second.cause) })
        }
        yield* keep
        if (!Cause.hasInterruptsOnly(second.cause)) {
          yield* Effect.logError(`transaction ${tx.record.transaction_id}: ${Cause.pretty(second.cause)}`)
        }
        return yield* finish(tx, stoppedPastCommit(tx))
      })
    ).pipe(Effect.annotateLogs({ transaction_id: tx.record.transaction_id }))

  /** Ends a transaction that never started (forced cleanup of a pending one, or recovery that cannot resume it). */
  const abandon = (tx: InFlight, error: MiningError) => finish(tx, { _tag: "Failed", failure: failureOf(Cause.fail(error)) })

  return { run, stepsFrom, abandon, finish }
}

export type TransactionRunner = ReturnType<typeof makeTransactionRunner>
