import { Context, Effect, Layer, Option, Queue } from "effect"
import { type SubmissionReceipt, Task } from "../domain/mining.ts"
import { TaskSource } from "../services/TaskSource.ts"
import { type FaultPlan, makeFaultInjector } from "./Faults.ts"
import { rawCidV0 } from "./TestGradientStore.ts"

export type TaskSourceMethod = "next" | "complete"

/** A `complete` call that ran, with what it answered. */
export interface CompletedTask {
  readonly task: Task
  readonly receipt: SubmissionReceipt
  readonly result: boolean
}

export interface TestTaskSourceOptions {
  readonly faults?: FaultPlan<TaskSourceMethod>
  /** Default 1n. */
  readonly roundId?: bigint
  /** The round's on-chain difficulty floor. Default 16. */
  readonly difficulty?: number
  /** Default: `rawCidV0` of the text "r3mes test model". */
  readonly modelCid?: string
  /** Default "{}". */
  readonly spec?: string
  /** How many chunks the round has; once all are handed out `next` waits forever. Default: unlimited. */
  readonly chunks?: number
  /** What `complete` answers. Default true. */
  readonly completeResult?: boolean
  /** Unix seconds. Default 4102444800 (2100-01-01), so no lease or deadline ever expires in a test. */
  readonly leaseExpiry?: number
  /** Unix seconds. Default 4102444800 (2100-01-01). */
  readonly deadline?: number
}

const farFuture = 4_102_444_800

/** Control side of the test TaskSource. */
export class TestTaskSource extends Context.Service<TestTaskSource, {
  readonly setFaults: (faults: FaultPlan<TaskSourceMethod>) => Effect.Effect<void>
  readonly calls: (method: TaskSourceMethod) => Effect.Effect<number>
  /** Tasks handed out by `next`, in order. */
  readonly claimed: Effect.Effect<ReadonlyArray<Task>>
  /** Tasks handed back with `retry` (handed out again by `next` before new chunks), in order. */
  readonly retried: Effect.Effect<ReadonlyArray<Task>>
  /** `complete` calls that ran (not those failed by a fault), in order. */
  readonly completed: Effect.Effect<ReadonlyArray<CompletedTask>>
  readonly setCompleteResult: (result: boolean) => Effect.Effect<void>
}>()("r3mes/testing/TestTaskSource") {
  /**
   * A TaskSource over one round: `next` hands out chunk 0, 1, 2, … (a call failed by a fault consumes no chunk);
   * after `chunks` chunks it never returns, like the real source polling a round with no free chunk, so a miner
   * under test must be interrupted or bounded by iterations.
   */
  static readonly layer = (options: TestTaskSourceOptions = {}): Layer.Layer<TaskSource | TestTaskSource> =>
    Layer.effectContext(Effect.gen(function*() {
      const faults = yield* makeFaultInjector(options.faults)
      const claimed: Array<Task> = []
      const completed: Array<CompletedTask> = []
      const retried: Array<Task> = []
      let completeResult = options.completeResult ?? true
      const modelCid = options.modelCid ?? rawCidV0(new TextEncoder().encode("r3mes test model"))

      // Tasks handed back by `retry`, handed out first; once the round's chunks are all out, `next` waits for one.
      const returned = yield* Queue.unbounded<Task>()
      const next = Effect.suspend(() => {
        const chunkId = claimed.length
        if (options.chunks !== undefined && chunkId >= options.chunks) return Queue.take(returned)
        const task = new Task({
          roundId: options.roundId ?? 1n,
          chunkId,
          modelCid,
          spec: options.spec ?? "{}",
          difficulty: options.difficulty ?? 16,
          leaseExpiry: options.leaseExpiry ?? farFuture,
          deadline: options.deadline ?? farFuture
        })
        claimed.push(task)
        return Effect.succeed(task)
      })

      const port = TaskSource.of({
        next: faults.wrap(
          "next",
          Effect.flatMap(Queue.poll(returned), Option.match({ onNone: () => next, onSome: Effect.succeed }))
        ),
        retry: (task) => Effect.sync(() => retried.push(task)).pipe(Effect.andThen(Queue.offer(returned, task)), Effect.asVoid),
        complete: (task, receipt) =>
          faults.wrap(
            "complete",
            Effect.sync(() => {
              const result = completeResult
              completed.push({ task, receipt, result })
              return result
            })
          )
      })

      const control = TestTaskSource.of({
        setFaults: faults.set,
        calls: faults.calls,
        claimed: Effect.sync(() => [...claimed]),
        retried: Effect.sync(() => [...retried]),
        completed: Effect.sync(() => [...completed]),
        setCompleteResult: (result) =>
          Effect.sync(() => {
            completeResult = result
          })
      })

      return Context.make(TaskSource, port).pipe(Context.add(TestTaskSource, control))
    }))
}

/**
 * A task for harnesses that drive the coordinator directly: round 1 (the TestChain's default round), difficulty
 * 16, leases and deadlines that never expire; override any field.
 */
export const testTask = (chunkId: number, overrides: Partial<ConstructorParameters<typeof Task>[0]> = {}): Task =>
  new Task({
    roundId: 1n,
    chunkId,
    modelCid: "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
    spec: "{}",
    difficulty: 16,
    leaseExpiry: 4_000_000_000,
    deadline: 4_000_000_000,
    ...overrides
  })
