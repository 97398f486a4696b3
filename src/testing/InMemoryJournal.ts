import { Context, Effect, Layer } from "effect"
import type { TransactionRecord } from "../domain/TransactionRecord.ts"
import { Journal, type JournalEvent } from "../services/Journal.ts"
import { type FaultPlan, makeFaultInjector } from "./Faults.ts"

export type JournalMethod = "save" | "get" | "findByKey" | "list" | "events"

export interface InMemoryJournalOptions {
  readonly faults?: FaultPlan<JournalMethod>
  /**
   * Records present before the first call (with no events), e.g. the non-terminal transactions a crashed run left
   * behind, for recovery tests.
   */
  readonly records?: ReadonlyArray<TransactionRecord>
}

/** Control side of the in-memory Journal. */
export class InMemoryJournal extends Context.Service<InMemoryJournal, {
  readonly setFaults: (faults: FaultPlan<JournalMethod>) => Effect.Effect<void>
  readonly calls: (method: JournalMethod) => Effect.Effect<number>
  /** Every record in its latest version, in the order the transactions were first saved. */
  readonly all: Effect.Effect<ReadonlyArray<TransactionRecord>>
}>()("r3mes/testing/InMemoryJournal") {
  /**
   * The Journal port in memory, with the SQLite journal's semantics: `save` replaces the record and appends its
   * event; `list` is newest first by `created_at`, ties broken by the most recently created transaction first,
   * then filtered by state and cut to `limit`; `events` are in the order they were saved. A fault on `save`
   * (e.g. `alwaysFail: new ResourceError({ resource: "disk", … })`) simulates a full disk: the record is not written.
   */
  static readonly layer = (options: InMemoryJournalOptions = {}): Layer.Layer<Journal | InMemoryJournal> =>
    Layer.effectContext(Effect.gen(function*() {
      const faults = yield* makeFaultInjector(options.faults)
      // Map iteration order is insertion order: a transaction keeps its first-save position when replaced.
      const records = new Map<string, TransactionRecord>()
      const events = new Map<string, Array<JournalEvent>>()

      const put = (record: TransactionRecord): void => {
        records.set(record.transaction_id, record)
      }
      for (const record of options.records ?? []) put(record)

      const port = Journal.of({
        save: (record, event) =>
          faults.wrap(
            "save",
            Effect.sync(() => {
              put(record)
              const history = events.get(record.transaction_id) ?? []
              history.push({ ...event, transaction_id: record.transaction_id })
              events.set(record.transaction_id, history)
            })
          ),
        get: (transactionId) => faults.wrap("get", Effect.sync(() => records.get(transactionId))),
        findByKey: (key) =>
          faults.wrap(
            "findByKey",
            Effect.sync(() => {
              let found: TransactionRecord | undefined
              for (const record of records.values()) if (record.key === key) found = record
              return found
            })
          ),
        list: (query) =>
          faults.wrap(
            "list",
            Effect.sync(() => {
              const newestFirst = [...records.values()]
                .map((record, order) => ({ record, order }))
                .sort((a, b) =>
                  a.record.created_at < b.record.created_at
                    ? 1
                    : a.record.created_at > b.record.created_at
                    ? -1
                    : b.order - a.order
                )
                .map(({ record }) => record)
                .filter((record) => query.state === undefined || record.state === query.state)
              return query.limit === undefined ? newestFirst : newestFirst.slice(0, Math.max(0, query.limit))
            })
          ),
        events: (transactionId) => faults.wrap("events", Effect.sync(() => [...(events.get(transactionId) ?? [])]))
      })

      const control = InMemoryJournal.of({
        setFaults: faults.set,
        calls: faults.calls,
        all: Effect.sync(() => [...records.values()])
      })

      return Context.make(Journal, port).pipe(Context.add(InMemoryJournal, control))
    }))
}
