import { Clock, Deferred, Effect } from "effect"
import type { MiningError } from "../../domain/errors.ts"
import type { MinerConfig } from "../../domain/MinerConfig.ts"
import type { SignedTransaction, SubmissionReceipt, Task, TrainingResult } from "../../domain/mining.ts"
import type { TransactionRecord } from "../../domain/TransactionRecord.ts"
import type { Chain } from "../Chain.ts"
import type { GradientStore } from "../GradientStore.ts"
import type { Journal } from "../Journal.ts"
import type { MiningStats } from "../MiningStats.ts"
import type { PowSolver } from "../PowSolver.ts"
import type { ServiceBreakers } from "../ServiceBreakers.ts"
import type { TaskSource } from "../TaskSource.ts"
import type { Trainer } from "../Trainer.ts"

/** The ports and core services a mining transaction runs on. */
export interface MiningDeps {
  readonly config: MinerConfig
  readonly trainer: Trainer["Service"]
  readonly store: GradientStore["Service"]
  readonly chain: Chain["Service"]
  readonly tasks: TaskSource["Service"]
  readonly journal: Journal["Service"]
  readonly pow: PowSolver["Service"]
  readonly stats: MiningStats["Service"]
  readonly breakers: ServiceBreakers["Service"]
}

/** The state of one transaction in flight, owned by the fiber that runs it. */
export interface InFlight {
  record: TransactionRecord
  readonly task: Task
  readonly startedAtMs: number
  /** Training's output, in memory only: the envelope is not journaled (a crash before the pin means retraining). */
  training: TrainingResult | undefined
  /**
   * The signed submission, set once its intent is journaled: the commit point. From then on no compensation may run
   * unless the chain proves it does not hold the submission.
   */
  signed: SignedTransaction | undefined
  receipt: SubmissionReceipt | undefined
  /** The transaction timeout struck after the commit point: a new signature is no longer allowed. */
  timedOut: boolean
  running: boolean
  /** Set by a forced cleanup (operator), with why. */
  cancelReason: string | undefined
  /** Failed by a forced cleanup (only before the commit point): the running body loses the race and is compensated. */
  readonly cancelled: Deferred.Deferred<never, MiningError>
  /** Completed once the transaction has ended (final state written, or left to recovery). */
  readonly finished: Deferred.Deferred<TransactionRecord>
}

export const makeInFlight = Effect.fnUntraced(function*(record: TransactionRecord, task: Task) {
  const tx: InFlight = {
    record,
    task,
    startedAtMs: yield* Clock.currentTimeMillis,
    training: undefined,
    signed: undefined,
    receipt: undefined,
    timedOut: false,
    running: false,
    cancelReason: undefined,
    cancelled: yield* Deferred.make<never, MiningError>(),
    finished: yield* Deferred.make<TransactionRecord>()
  }
  return tx
})

/**
 * The transactions in flight, by id and by idempotency key. Only these are in memory: a finished transaction lives in
 * the journal alone, so a miner that runs for days does not grow.
 */
export const makeInFlightRegistry = () => {
  const byId = new Map<string, InFlight>()
  const byKey = new Map<string, string>()
  return {
    add: (tx: InFlight) =>
      Effect.sync(() => {
        byId.set(tx.record.transaction_id, tx)
        byKey.set(tx.record.key, tx.record.transaction_id)
      }),
    remove: (tx: InFlight) =>
      Effect.sync(() => {
        byId.delete(tx.record.transaction_id)
        if (byKey.get(tx.record.key) === tx.record.transaction_id) byKey.delete(tx.record.key)
      }),
    get: (id: string): InFlight | undefined => byId.get(id),
    byKey: (key: string): InFlight | undefined => {
      const id = byKey.get(key)
      return id === undefined ? undefined : byId.get(id)
    },
    has: (id: string): boolean => byId.has(id),
    size: (): number => byId.size,
    all: (): ReadonlyArray<InFlight> => [...byId.values()]
  }
}

export type InFlightRegistry = ReturnType<typeof makeInFlightRegistry>
