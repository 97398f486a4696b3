import { Effect, Schema } from "effect"
import { ValidationError } from "./errors.ts"
import { canTransition, type Step, TransactionState } from "./TransactionState.ts"

const perStep = <S extends Schema.Top>(value: S) =>
  Schema.Struct({ training: value, ipfs_upload: value, blockchain_submit: value, task_complete: value })

/** One compensation that ran (or failed to run) while a transaction was rolled back. */
export const RollbackAction = Schema.Struct({
  action: Schema.String,
  target: Schema.String,
  status: Schema.Literals(["done", "failed"]),
  error: Schema.NullOr(Schema.String),
  at: Schema.String
})
export type RollbackAction = typeof RollbackAction.Type

/**
 * The transaction record as the status API, the journal and the CLI show it (snake_case, like the status API of the
 * engine we replace). Big integers (round id, nonce) are decimal strings so JSON carries them exactly.
 */
export const TransactionRecord = Schema.Struct({
  transaction_id: Schema.String,
  key: Schema.String,
  state: TransactionState,
  created_at: Schema.String,
  updated_at: Schema.String,
  age_seconds: Schema.Number,
  round_id: Schema.String,
  chunk_id: Schema.Int,
  gradient_hash: Schema.NullOr(Schema.String),
  /** The training step's loss on the chunk's first batch before and after (what the work achieved). */
  loss_before: Schema.NullOr(Schema.Number),
  loss_after: Schema.NullOr(Schema.Number),
  ipfs_hash: Schema.NullOr(Schema.String),
  pow_nonce: Schema.NullOr(Schema.String),
  blockchain_tx_hash: Schema.NullOr(Schema.String),
  block_number: Schema.NullOr(Schema.Number),
  /** The hash of the block that holds the submission, to tell when the chain lost it (absent in older journals). */
  block_hash: Schema.NullOr(Schema.String).pipe(Schema.withDecodingDefaultKey(Effect.succeed(null))),
  /** The fleet runner working on it (DESIGN.md "Fleet"); null for a miner alone (and in older journals). */
  owner: Schema.NullOr(Schema.String).pipe(Schema.withDecodingDefaultKey(Effect.succeed(null))),
  task_completed: Schema.Boolean,
  failed_step: Schema.NullOr(Schema.String),
  error_category: Schema.NullOr(Schema.String),
  error_message: Schema.NullOr(Schema.String),
  rollback_actions: Schema.Array(RollbackAction),
  attempts: perStep(Schema.Int),
  progress: perStep(Schema.Boolean),
  step_ms: perStep(Schema.NullOr(Schema.Number))
})
export type TransactionRecord = typeof TransactionRecord.Type

export const decodeTransactionRecord = Schema.decodeUnknownEffect(TransactionRecord)

const iso = (ms: number): string => new Date(ms).toISOString()

export const newRecord = (options: {
  readonly transactionId: string
  readonly key: string
  readonly roundId: bigint
  readonly chunkId: number
  readonly nowMs: number
  /** The fleet runner that starts it; none for a miner alone. */
  readonly owner?: string | undefined
}): TransactionRecord => ({
  transaction_id: options.transactionId,
  key: options.key,
  state: "pending",
  created_at: iso(options.nowMs),
  updated_at: iso(options.nowMs),
  age_seconds: 0,
  round_id: options.roundId.toString(),
  chunk_id: options.chunkId,
  gradient_hash: null,
  loss_before: null,
  loss_after: null,
  ipfs_hash: null,
  pow_nonce: null,
  blockchain_tx_hash: null,
  block_number: null,
  block_hash: null,
  owner: options.owner ?? null,
  task_completed: false,
  failed_step: null,
  error_category: null,
  error_message: null,
  rollback_actions: [],
  attempts: { training: 0, ipfs_upload: 0, blockchain_submit: 0, task_complete: 0 },
  progress: { training: false, ipfs_upload: false, blockchain_submit: false, task_complete: false },
  step_ms: { training: null, ipfs_upload: null, blockchain_submit: null, task_complete: null }
})

/** Moves a record to `to`, refusing transitions the state machine does not allow. */
export const transition = (
  record: TransactionRecord,
  to: TransactionState,
  nowMs: number
): Effect.Effect<TransactionRecord, ValidationError> =>
  canTransition(record.state, to)
    ? Effect.succeed({ ...record, state: to, updated_at: iso(nowMs) })
    : Effect.fail(
      new ValidationError({
        message: `illegal transaction state transition ${record.state} → ${to} (${record.transaction_id})`,
        field: "state"
      })
    )

export const completeStep = (record: TransactionRecord, step: Step, ms: number, nowMs: number): TransactionRecord => ({
  ...record,
  updated_at: iso(nowMs),
  progress: { ...record.progress, [step]: true },
  step_ms: { ...record.step_ms, [step]: ms }
})

export const countAttempt = (record: TransactionRecord, step: Step): TransactionRecord => ({
  ...record,
  attempts: { ...record.attempts, [step]: record.attempts[step] + 1 }
})

/** Age is relative to the reader's clock, so it is refreshed whenever a record is shown. */
export const withAge = (record: TransactionRecord, nowMs: number): TransactionRecord => ({
  ...record,
  age_seconds: Math.max(0, (nowMs - Date.parse(record.created_at)) / 1000)
})

/** One entry of a transaction's history, as the journal keeps it and `/transaction/:id?events=true` shows it. */
export const JournalEvent = Schema.Struct({
  transaction_id: Schema.String,
  at: Schema.String,
  state: TransactionState,
  event: Schema.String,
  detail: Schema.NullOr(Schema.String)
})
export type JournalEvent = typeof JournalEvent.Type
