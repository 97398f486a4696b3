import { Context, type Effect } from "effect"
import { type MiningError, ValidationError } from "../domain/errors.ts"
import type { JournalEvent, TransactionRecord } from "../domain/TransactionRecord.ts"
import type { TransactionState } from "../domain/TransactionState.ts"

/** One entry of a transaction's history: every state change and notable step, with its time and cause. */
export type { JournalEvent } from "../domain/TransactionRecord.ts"

export interface TransactionQuery {
  readonly state?: TransactionState | undefined
  /** Only records updated after this instant (ISO 8601, as the records' `updated_at`). */
  readonly updatedAfter?: string | undefined
  readonly limit?: number | undefined
}

/**
 * Port: durable record of every transaction. Intents are written here before the side effect they announce
 * (DESIGN.md "Durability"), so `save` must be durable when it returns.
 */
export class Journal extends Context.Service<Journal, {
  /**
   * The fleet runner this journal writes for (DESIGN.md "Fleet"): many runners share one journal, and each starts,
   * and recovers, only the transactions it owns. Undefined for a miner's own journal, whose records are all its own.
   */
  readonly owner: string | undefined
  /**
   * Inserts or replaces the record and appends the event to its history, atomically. A record another runner of
   * the fleet has taken over (the journal's owner is not the saved record's) is not written: `takenOver`.
   */
  readonly save: (record: TransactionRecord, event: Omit<JournalEvent, "transaction_id">) => Effect.Effect<void, MiningError>
  readonly get: (transactionId: string) => Effect.Effect<TransactionRecord | undefined, MiningError>
  readonly findByKey: (key: string) => Effect.Effect<TransactionRecord | undefined, MiningError>
  /** Newest first. */
  readonly list: (query: TransactionQuery) => Effect.Effect<ReadonlyArray<TransactionRecord>, MiningError>
  readonly events: (transactionId: string) => Effect.Effect<ReadonlyArray<JournalEvent>, MiningError>
  /**
   * Facts about the journal as a whole rather than one transaction (e.g. the identity of the chain its records
   * belong to, so a chain that was reset is noticed). Undefined when never set.
   */
  readonly getMeta: (key: string) => Effect.Effect<string | undefined, MiningError>
  /** Inserts or replaces; durable when it returns, like `save`. */
  readonly setMeta: (key: string, value: string) => Effect.Effect<void, MiningError>
}>()("r3mes/services/Journal") {}

/**
 * A fleet's journal refuses to start a second unfinished transaction of one chunk (the field of its ValidationError):
 * another runner got there first. Only journals with an owner say so; a miner's own journal never does.
 */
export const unfinishedKeyField = "unfinished_key"

export const unfinishedKeyTaken = (key: string, detail: string): ValidationError =>
  new ValidationError({
    message: `journal: another runner's transaction of ${key} is unfinished: ${detail}`,
    field: unfinishedKeyField,
    hint: "nothing to fix: that runner finishes the chunk (or, if it died, recovers it when it starts again)"
  })

export const isUnfinishedKeyTaken = (error: MiningError): boolean =>
  error._tag === "ValidationError" && error.field === unfinishedKeyField

/** The field of the ValidationError a fleet's journal refuses a save with when the transaction is another runner's now. */
export const takenOverField = "taken_over"

export const takenOver = (transactionId: string, owner: string | null): ValidationError =>
  new ValidationError({
    message: `journal: transaction ${transactionId} is runner ${owner ?? "(none)"}'s now (taken over): this runner stops it`,
    field: takenOverField,
    hint: "nothing to fix: a runner whose work was taken over was thought dead (its name's lock was free); it leaves " +
      "the transaction to the runner that took it"
  })

export const isTakenOver = (error: MiningError): boolean => error._tag === "ValidationError" && error.field === takenOverField
