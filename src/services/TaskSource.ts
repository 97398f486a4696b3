import { Context, type Effect } from "effect"
import type { MiningError } from "../domain/errors.ts"
import type { SubmissionReceipt, Task } from "../domain/mining.ts"

/** Port: where work comes from (claiming a chunk) and where it is reported done (completing it). */
export class TaskSource extends Context.Service<TaskSource, {
  /** Claims the next free chunk; waits (polling, never spinning) while none is free. */
  readonly next: Effect.Effect<Task, MiningError>
  /**
   * Marks the task complete. Non-critical for the transaction: `false` or an error leaves the transaction
   * committed with `task_completed: false`.
   */
  readonly complete: (task: Task, receipt: SubmissionReceipt) => Effect.Effect<boolean, MiningError>
  /**
   * Hands `task` out again, at a coming `next` and before any new claim, while its lease lasts: its transaction
   * ended before submitting and the chunk is still this miner's. Left unworked, it would hold its round (a learning
   * round closes only when every chunk is in) until the lease expires.
   */
  readonly retry: (task: Task) => Effect.Effect<void>
}>()("r3mes/services/TaskSource") {}
