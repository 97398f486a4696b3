import { Context, Effect, Layer } from "effect"
import type { TransactionRecord } from "../domain/TransactionRecord.ts"
import { Journal, type JournalEvent, takenOver } from "../services/Journal.ts"
import { type FaultPlan, makeFaultInjector } from "./Faults.ts"

export type JournalMethod = "save" | "get" | "findByKey" | "list" | "events" | "getMeta" | "setMeta"

export interface InMemoryJournalOptions {
  readonly faults?: FaultPlan<JournalMethod>
  /**
   * Records present before the first call (with no events), e.g. the non-terminal transactions a crashed run left
   * behind, for recovery tests.
   */
  readonly records?: ReadonlyArray<TransactionRecord>
  /** Meta entries present before the first call, e.g. the identity of a chain the journal saw before a reset. */
  readonly meta?: Readonly<Record<string, string>>
  /** The fleet runner it writes for, as a fleet's shared journal (default: none, a miner's own journal). */
  readonly owner?: string
}

/** Control side of the in-memory Journal. */
export class InMemoryJournal extends Context.Service<InMemoryJournal, {
  readonly setFaults: (faults: FaultPlan<JournalMethod>) => Effect.Effect<void>
  readonly calls: (method: JournalMethod) => Effect.Effect<number>
  /** Every record in its latest version, in the order the transactions were first saved. */
  readonly all: Effect.Effect<ReadonlyArray<TransactionRecord>>
  /** What a fleet's takeover does to a record: it is `owner`'s now, and a save of the old owner's copy is refused. */
  readonly takeOver: (transactionId: string, owner: string) => Effect.Effect<void>
}>()("r3mes/testing/InMemoryJournal") {
  /**
   * The Journal port in memory, with the SQLite journal's semantics (test/support/journalContract.ts holds both to
   * them): `save` replaces the record and appends its event; `list` is newest first by `created_at`, ties broken by
   * the most recently created transaction first, then filtered by state and cut to `limit`; `findByKey` is the
   * newest of the key in that order; `events` are in the order they were saved. A fault on `save`
   * (e.g. `alwaysFail: new ResourceError({ resource: "disk", … })`) simulates a full disk: the record is not written.
   * `getMeta` / `setMeta` keep journal-wide entries, faults applying to them alike.
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
      const meta = new Map<string, string>(Object.entries(options.meta ?? {}))

      /** SQLite's order: `created_at` descending, ties broken by the most recently created transaction first. */
      const newestFirst = (): Array<TransactionRecord> =>
        [...records.values()]
          .map((record, order) => ({ record, order }))
          .sort((a, b) =>
            a.record.created_at < b.record.created_at ? 1 : a.record.created_at > b.record.created_at ? -1 : b.order - a.order
          )
          .map(({ record }) => record)

      const port = Journal.of({
        owner: options.owner,
        save: (record, event) =>
          faults.wrap(
            "save",
            Effect.suspend(() => {
              const stored = records.get(record.transaction_id)
              if (stored !== undefined && stored.owner !== record.owner) {
                return Effect.fail(takenOver(record.transaction_id, stored.owner))
              }
              put(record)
              const history = events.get(record.transaction_id) ?? []
              history.push({ ...event, transaction_id: record.transaction_id })
              events.set(record.transaction_id, history)
              return Effect.void
            })
          ),
        get: (transactionId) => faults.wrap("get", Effect.sync(() => records.get(transactionId))),
        findByKey: (key) =>
          faults.wrap(
            "findByKey",
            Effect.sync(() => {
              // One pass, not a sort: a claim asks this of journals with many thousand records. Insertion order
              // breaks ties, as in `newestFirst`.
              let found: TransactionRecord | undefined
              for (const record of records.values()) {
                if (record.key === key && (found === undefined || record.created_at >= found.created_at)) found = record
              }
              return found
            })
          ),
        list: (query) =>
          faults.wrap(
            "list",
            Effect.sync(() => {
              const matching = newestFirst().filter((record) =>
                (query.state === undefined || record.state === query.state) &&
                (query.updatedAfter === undefined || record.updated_at > query.updatedAfter)
              )
              return query.limit === undefined ? matching : matching.slice(0, Math.max(0, Math.floor(query.limit)))
            })
          ),
        events: (transactionId) => faults.wrap("events", Effect.sync(() => [...(events.get(transactionId) ?? [])])),
        getMeta: (key) => faults.wrap("getMeta", Effect.sync(() => meta.get(key))),
        setMeta: (key, value) => faults.wrap("setMeta", Effect.sync(() => void meta.set(key, value)))
      })

      const control = InMemoryJournal.of({
        setFaults: faults.set,
        calls: faults.calls,
        all: Effect.sync(() => [...records.values()]),
        takeOver: (transactionId, owner) =>
          Effect.sync(() => {
            const stored = records.get(transactionId)
            if (stored !== undefined) put({ ...stored, owner })
          })
      })

      return Context.make(Journal, port).pipe(Context.add(InMemoryJournal, control))
    }))
}
