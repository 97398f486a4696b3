import type { SQLInputValue } from "node:sqlite"
import { Effect, Layer, Schema } from "effect"
import { type MiningError, ValidationError } from "../../domain/errors.ts"
import { TransactionRecord } from "../../domain/TransactionRecord.ts"
import { Journal, type JournalEvent, type TransactionQuery } from "../../services/Journal.ts"
import { acquireDataDirLock } from "./dataDirLock.ts"
import { journalError, openJournalDatabase } from "./database.ts"
import { makeWalSync } from "./walSync.ts"

export interface SqliteJournalOptions {
  /** The journal file, e.g. `<dataDir>/journal.sqlite`. */
  readonly path: string
  /**
   * For readers beside a running miner (`status`, `stats`, `journal check`): opens an existing journal read-only,
   * without the data dir's lock, and never creates, migrates or integrity-checks it; `save` and `setMeta` fail.
   * Default false: the miner's own journal, locked for the layer's lifetime, checked, created or migrated.
   */
  readonly readOnly?: boolean
}

/** The first schema version with the meta table: a read-only journal may be older (a writer migrates first). */
const META_SINCE = 2

const decodeRecord = Schema.decodeUnknownSync(TransactionRecord)

export const make = Effect.fnUntraced(function*(options: SqliteJournalOptions) {
  const readOnly = options.readOnly === true
  // The lock first: a second miner must not even migrate or check the file the first one is writing.
  if (!readOnly) yield* acquireDataDirLock(options.path)
  const { db, version } = yield* Effect.acquireRelease(
    openJournalDatabase(options.path, { readOnly }),
    ({ db }) => Effect.sync(() => db.close())
  )
  const walSync = readOnly ? undefined : yield* Effect.acquireRelease(
    Effect.sync(() => makeWalSync(`${options.path}-wal`)),
    (sync) => Effect.promise(sync.close)
  )

  const upsert = db.prepare(
    `INSERT INTO transactions (transaction_id, key, state, created_at, updated_at, round_id, chunk_id, record)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (transaction_id) DO UPDATE SET
       state = excluded.state, updated_at = excluded.updated_at, record = excluded.record`
  )
  const insertEvent = db.prepare(
    "INSERT INTO events (transaction_id, at, state, event, detail) VALUES (?, ?, ?, ?, ?)"
  )
  const byId = db.prepare("SELECT record FROM transactions WHERE transaction_id = ?")
  const byKey = db.prepare("SELECT record FROM transactions WHERE key = ? ORDER BY created_at DESC, seq DESC LIMIT 1")
  const eventsOf = db.prepare(
    "SELECT transaction_id, at, state, event, detail FROM events WHERE transaction_id = ? ORDER BY id"
  )
  const hasMeta = version >= META_SINCE
  const metaOf = hasMeta ? db.prepare("SELECT value FROM meta WHERE key = ?") : undefined
  const upsertMeta = hasMeta
    ? db.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
    : undefined

  const run = <A>(context: string, f: () => A): Effect.Effect<A, MiningError> =>
    Effect.try({ try: f, catch: (e) => journalError(e, context) })

  const parse = (row: unknown, context: string): Effect.Effect<TransactionRecord, MiningError> =>
    Effect.try({
      try: () => decodeRecord(JSON.parse((row as { record: string }).record)),
      catch: (e) =>
        new ValidationError({ message: `journal: ${context}: unreadable record (${e instanceof Error ? e.message : e})` })
    })

  /**
   * Runs `write` (of `what`) in one transaction, then waits until it is on disk: the port's promise for every
   * write.
   */
  const durably = (what: string, write: () => void): Effect.Effect<void, MiningError> => {
    const context = `saving ${what}`
    if (walSync === undefined) {
      return Effect.fail(
        new ValidationError({
          message: `journal: ${context}: ${options.path} is open read-only (a reader beside the miner)`,
          hint: "only `r3mes-miner mine` writes the journal"
        })
      )
    }
    return run(context, () => {
      db.exec("BEGIN IMMEDIATE")
      try {
        write()
        db.exec("COMMIT")
      } catch (e) {
        if (db.isTransaction) db.exec("ROLLBACK")
        throw e
      }
    }).pipe(
      // Durable when the write returns: the intent is on disk before its side effect.
      Effect.andThen(Effect.tryPromise({
        try: walSync.durable,
        catch: (e) => journalError(e, `syncing ${what} to disk`)
      }))
    )
  }

  const save = Effect.fn("SqliteJournal.save")(function*(
    record: TransactionRecord,
    event: Omit<JournalEvent, "transaction_id">
  ) {
    yield* durably(record.transaction_id, () => {
      upsert.run(
        record.transaction_id,
        record.key,
        record.state,
        record.created_at,
        record.updated_at,
        record.round_id,
        record.chunk_id,
        JSON.stringify(record)
      )
      insertEvent.run(record.transaction_id, event.at, event.state, event.event, event.detail)
    })
  })

  const get = (transactionId: string) =>
    run(`reading ${transactionId}`, () => byId.get(transactionId)).pipe(
      Effect.flatMap((row) => (row === undefined ? Effect.succeed(undefined) : parse(row, transactionId)))
    )

  const findByKey = (key: string) =>
    run(`reading key ${key}`, () => byKey.get(key)).pipe(
      Effect.flatMap((row) => (row === undefined ? Effect.succeed(undefined) : parse(row, key)))
    )

  const list = (query: TransactionQuery) =>
    run("listing transactions", () => {
      const conditions: Array<string> = []
      const params: Array<SQLInputValue> = []
      if (query.state !== undefined) {
        conditions.push("state = ?")
        params.push(query.state)
      }
      if (query.updatedAfter !== undefined) {
        conditions.push("updated_at > ?")
        params.push(query.updatedAfter)
      }
      const where = conditions.length === 0 ? "" : `WHERE ${conditions.join(" AND ")}`
      const limit = query.limit === undefined ? "" : "LIMIT ?"
      if (query.limit !== undefined) params.push(Math.max(0, Math.floor(query.limit)))
      return db.prepare(`SELECT record FROM transactions ${where} ORDER BY created_at DESC, seq DESC ${limit}`).all(
        ...params
      )
    }).pipe(Effect.flatMap((rows) => Effect.forEach(rows, (row) => parse(row, "list"))))

  const events = (transactionId: string) =>
    run(`reading the events of ${transactionId}`, () => eventsOf.all(transactionId) as unknown as Array<JournalEvent>)

  const getMeta = (key: string) =>
    run(`reading meta ${key}`, () => (metaOf?.get(key) as { value: string } | undefined)?.value)

  const setMeta = Effect.fn("SqliteJournal.setMeta")(function*(key: string, value: string) {
    yield* durably(`meta ${key}`, () => upsertMeta!.run(key, value))
  })

  // A data dir's journal is one miner's: all its records are its own.
  return Journal.of({ owner: undefined, save, get, findByKey, list, events, getMeta, setMeta })
})

export const SqliteJournal = {
  /**
   * The Journal port on node:sqlite (WAL; every write on disk when it returns, synced off the main thread). By
   * default the miner's own journal: the data dir's lock is held and the file integrity-checked at open, refused
   * when another miner holds it (ResourceError) or when damaged (ValidationError). `readOnly` for readers. Closed
   * (and the lock released) when the layer's scope closes.
   */
  layer: (options: SqliteJournalOptions): Layer.Layer<Journal, MiningError> => Layer.effect(Journal, make(options))
} as const
