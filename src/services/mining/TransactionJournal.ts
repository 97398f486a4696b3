import { Clock, Effect } from "effect"
import type { MiningError } from "../../domain/errors.ts"
import { type TransactionRecord, transition } from "../../domain/TransactionRecord.ts"
import type { TransactionState } from "../../domain/TransactionState.ts"
import type { Journal } from "../Journal.ts"
import type { MiningStats } from "../MiningStats.ts"
import type { InFlight } from "./InFlight.ts"

/**
 * How a transaction's record changes: every state change goes through the state machine (an illegal transition is a
 * defect, never papered over), is counted, logged ("transaction … from → to", one line per change, as operators grep
 * for it) and journaled with its event.
 */
export const makeTransactionJournal = (deps: {
  readonly journal: Journal["Service"]
  readonly stats: MiningStats["Service"]
}) => {
  const { journal, stats } = deps

  const saveRecord = (record: TransactionRecord, event: string, detail: string | null = null) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      journal.save(record, { at: new Date(now).toISOString(), state: record.state, event, detail }))

  /** Journals the in-flight record with an event (an intent, a notable step); durable when it returns. */
  const save = (tx: InFlight, event: string, detail: string | null = null): Effect.Effect<void, MiningError> =>
    Effect.suspend(() => saveRecord(tx.record, event, detail))

  /** Moves the record to `to` through the state machine and journals it; entering the current state is a resume. */
  const enter = Effect.fnUntraced(function*(tx: InFlight, to: TransactionState) {
    const from = tx.record.state
    if (from === to) {
      yield* Effect.logInfo(`transaction ${tx.record.transaction_id} resumes at ${to}`)
      return yield* save(tx, "resumed", to)
    }
    tx.record = yield* moved(tx.record, to)
    yield* stats.stateChanged(from, to)
    yield* Effect.logInfo(`transaction ${tx.record.transaction_id} ${from} → ${to}`)
    yield* save(tx, "state_changed", `${from} → ${to}`)
  })

  /** The state machine's transition at the current time; an illegal one is a bug of the miner (a defect). */
  const moved = (record: TransactionRecord, to: TransactionState) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.orDie(transition(record, to, now)))

  return { save, saveRecord, enter, moved }
}

export type TransactionJournal = ReturnType<typeof makeTransactionJournal>
