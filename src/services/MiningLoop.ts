import { Clock, Context, Deferred, Duration, Effect, FiberSet, Layer, Option, PubSub, Schedule, Semaphore } from "effect"
import { errorOfCategory, isRetryable, isTransientCategory, type MiningError } from "../domain/errors.ts"
import { nominalDelay, retryDelays } from "../domain/retryPolicy.ts"
import type { Task } from "../domain/mining.ts"
import type { TransactionRecord } from "../domain/TransactionRecord.ts"
import { isTerminal } from "../domain/TransactionState.ts"
import { MiningCoordinator } from "./MiningCoordinator.ts"
import { ServiceBreakers } from "./ServiceBreakers.ts"
import { Settings } from "./Settings.ts"
import { TaskSource } from "./TaskSource.ts"

export interface LoopOptions {
  /** Stop after this many transactions; run until stopped when absent. */
  readonly iterations?: number | undefined
  /** Called with each final record (progress display, JSON output). */
  readonly onFinished?: ((record: TransactionRecord) => Effect.Effect<void>) | undefined
  /**
   * Completes when the loop should stop claiming work (graceful shutdown): transactions in flight then finish and
   * `run` returns their summary.
   */
  readonly stop?: Effect.Effect<void> | undefined
  /**
   * Completes when the loop should stop at once (a second signal): transactions in flight are interrupted —
   * compensated before their commit point, left to recovery after it — and `run` returns the summary.
   */
  readonly abort?: Effect.Effect<void> | undefined
  /**
   * After `stop`, how long the transactions in flight get to finish before they are stopped like an abort (a
   * transaction past its commit point may wait for the chain until the round's deadline; recovery settles it at the
   * next start). Default: no limit.
   */
  readonly stopGrace?: Duration.Input | undefined
  /**
   * How many final records the summary keeps, the newest (default: all of a bounded run up to 1,000; 100 of an
   * endless one). The journal has them all.
   */
  readonly keepRecords?: number | undefined
  /** How often the journal's committed records are checked against the chain while mining (default 10 s). */
  readonly auditInterval?: Duration.Input | undefined
}

export interface LoopSummary {
  readonly transactions: number
  readonly committed: number
  readonly failed: number
  readonly rolled_back: number
  /** Of this run's transactions, those committed and then lost by the chain (reset, reorg): counted rolled back. */
  readonly chain_lost: number
  /** Stopped past the commit point by an abort: left to recovery, which asks the chain at the next start. */
  readonly suspended: number
  readonly task_completed: number
  /** The newest final records (see `keepRecords`); the journal has them all. */
  readonly records: ReadonlyArray<TransactionRecord>
  /** Ended by `abort`. */
  readonly interrupted: boolean
}

/** A run that did nothing: what a miner stopped before its loop started reports. */
export const noTransactions: LoopSummary = {
  transactions: 0,
  committed: 0,
  failed: 0,
  rolled_back: 0,
  chain_lost: 0,
  suspended: 0,
  task_completed: 0,
  records: [],
  interrupted: false
}

/**
 * Core service: claims work and runs mining transactions, at most R3MES_MAX_ACTIVE_TRANSACTIONS at once. A slot is
 * taken before a chunk is claimed, so the miner never holds a lease it has no capacity to work on; no chunk is
 * claimed while a circuit breaker is open (the work would fail at its first call to that service). Failures that
 * retrying cannot fix back off exponentially and, past R3MES_MAX_CONSECUTIVE_FAILURES in a row, stop the loop with
 * the cause instead of burning claims (each one a paid chain transaction). Memory stays bounded: finished
 * transactions live in the journal, the loop keeps counts and the newest records only.
 */
export class MiningLoop extends Context.Service<MiningLoop, {
  readonly run: (options: LoopOptions) => Effect.Effect<LoopSummary, MiningError>
}>()("r3mes/services/MiningLoop") {
  static readonly layer: Layer.Layer<MiningLoop, never, MiningCoordinator | ServiceBreakers | TaskSource | Settings> =
    Layer.effect(
      MiningLoop,
      Effect.gen(function*() {
        const coordinator = yield* MiningCoordinator
        const breakers = yield* ServiceBreakers
        const tasks = yield* TaskSource
        const config = yield* Settings

        // Claim failures that are transient (chain unreachable, busy) never end a miner that runs for days: back off
        // and claim again. Anything else (bad key, bad config) stops the loop.
        const claim = tasks.next.pipe(
          Effect.tapError((error) =>
            isRetryable(error) ? Effect.logWarning(`claiming a chunk failed, backing off: ${error.message}`) : Effect.void
          ),
          Effect.retry({ schedule: retryDelays(config), while: isRetryable })
        )

        // A claimed chunk whose transaction cannot be created for now (the chain or the journal unreachable: the first
        // look at a chunk mined before asks the chain whether it still holds that work) is handed back to the task
        // source and claimed again after the breaker's pause: it never ends the loop.
        const create = (task: Task) =>
          coordinator.createTransaction(task).pipe(
            Effect.catchIf(isRetryable, (error) =>
              Effect.logWarning(
                `starting a transaction for chunk ${task.chunkId} of round ${task.roundId} failed, handing it back: ` +
                  error.message
              ).pipe(Effect.andThen(tasks.retry(task)), Effect.as(undefined)))
          )

        const run = Effect.fn("MiningLoop.run")(function*(options: LoopOptions) {
          const limit = options.iterations ?? Number.POSITIVE_INFINITY
          const keep = options.keepRecords ?? Math.min(options.iterations ?? 100, 1_000)
          const slots = yield* Semaphore.make(config.maxActiveTransactions)
          const runs = yield* FiberSet.make<void, never>()
          const { interrupted: _interrupted, records: _records, ...zero } = noTransactions
          const counts = { ...zero }
          const startedAt = new Date(yield* Clock.currentTimeMillis).toISOString()
          const lost = yield* coordinator.chainLost

          /** Transactions of this run reported committed, then found lost by the chain: the summary says so too. */
          const applyLost = Effect.gen(function*() {
            const waiting = yield* PubSub.remaining(lost)
            if (waiting === 0) return
            for (const id of yield* PubSub.takeUpTo(lost, waiting)) {
              const record = Option.getOrUndefined(yield* coordinator.getTransactionStatus(id).pipe(Effect.option, Effect.map(Option.flatten)))
              if (record === undefined || record.created_at < startedAt || counts.committed === 0) continue
              counts.committed--
              counts.rolled_back++
              counts.chain_lost++
              const kept = records.findIndex((r) => r.transaction_id === id)
              if (kept !== -1) records[kept] = record
            }
          })
          const records: Array<TransactionRecord> = []
          /** The task of each transaction in flight. */
          const taskOf = new Map<string, Task>()
          let consecutive = 0
          let lastFailure: TransactionRecord | undefined
          const halted = yield* Deferred.make<void>()

          const summary = (interrupted: boolean): LoopSummary => ({ ...counts, records: [...records], interrupted })

          /**
           * A transaction that ended before submitting leaves its chunk leased to this miner: it is handed back to the
           * task source, which hands it out again while the lease lasts (a learning round closes only when every
           * chunk is in, so a chunk left unworked would hold it until the lease expires). The usual guards bound the
           * retries: failures that retrying cannot fix count towards the limit, an unreachable service opens its
           * breaker. Not after the chain lost the transaction, nor after it refused the submission.
           */
          const handBack = (final: TransactionRecord) =>
            Effect.suspend(() => {
              const task = taskOf.get(final.transaction_id)
              taskOf.delete(final.transaction_id)
              // A revert at the submission is the chain's word on the claim (not ours any more, round closed…).
              const chainRuled = final.failed_step === "blockchain_submit" && !isTransientCategory(final.error_category)
              const again = task !== undefined && (final.state === "failed" || final.state === "rolled_back") &&
                final.error_category !== "chain_lost" && !chainRuled
              return again ? tasks.retry(task) : Effect.void
            })

          const finished = (final: TransactionRecord) =>
            Effect.suspend(() => {
              counts.transactions++
              if (final.state === "committed") counts.committed++
              else if (final.state === "failed") counts.failed++
              else if (final.state === "rolled_back") counts.rolled_back++
              else counts.suspended++
              if (final.task_completed) counts.task_completed++
              records.push(final)
              if (records.length > keep) records.shift()
              if (final.state === "committed") consecutive = 0
              else if (isTerminal(final.state) && !isTransientCategory(final.error_category)) {
                consecutive++
                lastFailure = final
                if (consecutive >= config.maxConsecutiveFailures) return Deferred.succeed(halted, undefined)
              }
              return Effect.void
            }).pipe(
              Effect.andThen(handBack(final)),
              Effect.andThen(applyLost),
              Effect.andThen(options.onFinished ? options.onFinished(final) : Effect.void)
            )

          const runOne = (record: TransactionRecord) =>
            coordinator.executeAtomicMining(record.transaction_id).pipe(
              Effect.catch((error) =>
                Effect.logError(`transaction ${record.transaction_id} could not run: ${error.message}`).pipe(
                  Effect.andThen(coordinator.getTransactionStatus(record.transaction_id)),
                  Effect.map(Option.getOrElse(() => record)),
                  Effect.orElseSucceed(() => record)
                )
              ),
              Effect.flatMap(finished),
              // An abort interrupts the run after its end was journaled: the journal has the final record.
              Effect.onInterrupt(() =>
                coordinator.getTransactionStatus(record.transaction_id).pipe(
                  Effect.flatMap(Option.match({ onNone: () => Effect.void, onSome: finished })),
                  Effect.ignore
                )
              ),
              Effect.ensuring(Semaphore.release(slots, 1))
            )

          const stop = Effect.raceFirst(options.stop ?? Effect.never, Deferred.await(halted))
          // Waiting for a slot, a breaker or a free chunk ends as soon as the stop signal comes.
          const orStop = <A, E>(effect: Effect.Effect<A, E>) =>
            Effect.raceFirst(effect.pipe(Effect.map(Option.some)), stop.pipe(Effect.as(Option.none<A>())))

          /** Before a claim: back off after failures that retrying cannot fix. */
          const backoff = Effect.suspend(() =>
            consecutive === 0 ? Effect.void : Effect.sleep(nominalDelay(config, consecutive))
          )

          const claiming = Effect.gen(function*() {
            for (let i = 0; i < limit; i++) {
              if (Option.isNone(yield* orStop(Semaphore.take(slots, 1)))) break
              const ready = yield* orStop(Effect.andThen(breakers.awaitPassable, backoff))
              const task = Option.isNone(ready)
                ? Option.none<Task>()
                : yield* orStop(claim).pipe(Effect.onError(() => Semaphore.release(slots, 1)))
              if (Option.isNone(task)) {
                yield* Semaphore.release(slots, 1)
                break
              }
              const created = yield* create(task.value).pipe(Effect.onError(() => Semaphore.release(slots, 1)))
              // Not created for now (handed back), in flight already (a claim found again), or committed: nothing to run.
              if (created === undefined || !(yield* coordinator.isRunnable(created.transaction_id))) {
                yield* Semaphore.release(slots, 1)
                i--
                continue
              }
              taskOf.set(created.transaction_id, task.value)
              yield* FiberSet.run(runs, runOne(created))
            }
            // Stopped: what is in flight finishes, within the grace; past it the rest is stopped like an abort.
            const graceOver = options.stopGrace === undefined
              ? Effect.never
              : Effect.andThen(stop, Effect.sleep(options.stopGrace))
            return yield* Effect.raceFirst(FiberSet.awaitEmpty(runs).pipe(Effect.as(false)), graceOver.pipe(Effect.as(true)))
          })

          const audit = coordinator.auditChain.pipe(
            Effect.catch((error) => Effect.logWarning(`checking the journal against the chain: ${error.message}`)),
            Effect.repeat(Schedule.spaced(Duration.fromInputUnsafe(options.auditInterval ?? "10 seconds"))),
            Effect.delay(Duration.fromInputUnsafe(options.auditInterval ?? "10 seconds"))
          )
          yield* Effect.forkScoped(audit)

          const aborted = yield* Effect.raceFirst(claiming, (options.abort ?? Effect.never).pipe(Effect.as(true)))
          if (aborted) {
            yield* Effect.logWarning("stopping now: interrupting the transactions in flight")
            yield* FiberSet.clear(runs)
            yield* FiberSet.awaitEmpty(runs)
          }
          // One last look at the chain, so that the summary does not report as committed what it no longer holds.
          yield* coordinator.auditChain.pipe(Effect.ignore)
          yield* applyLost
          if (yield* Deferred.isDone(halted)) {
            const last = lastFailure!
            return yield* errorOfCategory(last.error_category, {
              message: `stopped after ${consecutive} transactions in a row failed in a way retrying cannot fix; the last ` +
                `(${last.transaction_id}, at ${last.failed_step ?? "start"}): ${last.error_message}`,
              hint: "fix that cause, then start the miner again (R3MES_MAX_CONSECUTIVE_FAILURES sets the limit)"
            })
          }
          return summary(aborted)
        }, Effect.scoped)

        return MiningLoop.of({ run })
      })
    )
}
