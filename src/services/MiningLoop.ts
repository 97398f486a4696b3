import { Context, Effect, Fiber, Layer, Option, Semaphore } from "effect"
import { isRetryable, type MiningError } from "../domain/errors.ts"
import { retryDelays } from "../domain/retryPolicy.ts"
import type { TransactionRecord } from "../domain/TransactionRecord.ts"
import { MiningCoordinator } from "./MiningCoordinator.ts"
import { Settings } from "./Settings.ts"
import { TaskSource } from "./TaskSource.ts"

export interface LoopOptions {
  /** Stop after this many transactions; run until interrupted when absent. */
  readonly iterations?: number | undefined
  /** Called with each final record (progress display, JSON output). */
  readonly onFinished?: ((record: TransactionRecord) => Effect.Effect<void>) | undefined
  /**
   * Completes when the loop should stop claiming work (graceful shutdown): transactions in flight then finish and
   * `run` returns their summary.
   */
  readonly stop?: Effect.Effect<void> | undefined
}

export interface LoopSummary {
  readonly transactions: number
  readonly committed: number
  readonly failed: number
  readonly rolled_back: number
  readonly task_completed: number
  readonly records: ReadonlyArray<TransactionRecord>
}

/**
 * Core service: claims work and runs mining transactions, at most R3MES_MAX_ACTIVE_TRANSACTIONS at once. A slot is
 * taken before a chunk is claimed, so the miner never holds a lease it has no capacity to work on.
 */
export class MiningLoop extends Context.Service<MiningLoop, {
  readonly run: (options: LoopOptions) => Effect.Effect<LoopSummary, MiningError>
}>()("r3mes/services/MiningLoop") {
  static readonly layer: Layer.Layer<MiningLoop, never, MiningCoordinator | TaskSource | Settings> = Layer.effect(
    MiningLoop,
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
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

      const run = Effect.fn("MiningLoop.run")(function*(options: LoopOptions) {
        const slots = yield* Semaphore.make(config.maxActiveTransactions)
        const records: Array<TransactionRecord> = []
        const fibers: Array<Fiber.Fiber<void, never>> = []
        const limit = options.iterations ?? Number.POSITIVE_INFINITY

        const runOne = (record: TransactionRecord) =>
          coordinator.executeAtomicMining(record.transaction_id).pipe(
            Effect.catch((error) =>
              Effect.logError(`transaction ${record.transaction_id} could not run: ${error.message}`).pipe(
                Effect.as(record)
              )
            ),
            Effect.tap((final) =>
              Effect.suspend(() => {
                records.push(final)
                return options.onFinished ? options.onFinished(final) : Effect.void
              })
            ),
            Effect.ensuring(Semaphore.release(slots, 1)),
            Effect.asVoid
          )

        const stop = options.stop ?? Effect.never
        // Waiting for a slot or for a free chunk ends as soon as the stop signal comes.
        const orStop = <A, E>(effect: Effect.Effect<A, E>) =>
          Effect.raceFirst(effect.pipe(Effect.map(Option.some)), stop.pipe(Effect.as(Option.none<A>())))

        for (let i = 0; i < limit; i++) {
          const slot = yield* orStop(Semaphore.take(slots, 1))
          if (Option.isNone(slot)) break
          const task = yield* orStop(claim).pipe(Effect.onError(() => Semaphore.release(slots, 1)))
          if (Option.isNone(task)) {
            yield* Semaphore.release(slots, 1)
            break
          }
          const created = yield* coordinator.createTransaction(task.value).pipe(
            Effect.onError(() => Semaphore.release(slots, 1))
          )
          fibers.push(yield* Effect.forkChild(runOne(created)))
        }
        yield* Fiber.joinAll(fibers)

        const count = (state: TransactionRecord["state"]) => records.filter((r) => r.state === state).length
        return {
          transactions: records.length,
          committed: count("committed"),
          failed: count("failed"),
          rolled_back: count("rolled_back"),
          task_completed: records.filter((r) => r.task_completed).length,
          records
        } satisfies LoopSummary
      })

      return MiningLoop.of({ run })
    })
  )
}
