import { mkdirSync } from "node:fs"
import { type FileHandle, open } from "node:fs/promises"
import { dirname } from "node:path"
import { DatabaseSync, type SQLInputValue } from "node:sqlite"
import { Effect, Layer, Schema } from "effect"
import { classify } from "../../domain/classify.ts"
import { type MiningError, ValidationError } from "../../domain/errors.ts"
import { TransactionRecord } from "../../domain/TransactionRecord.ts"
import { Journal, type JournalEvent, type TransactionQuery } from "../../services/Journal.ts"
import { migrations } from "./migrations.ts"

/** "R3MJ": marks the file as an r3mes journal, so a foreign SQLite file is refused instead of being written to. */
export const APPLICATION_ID = 0x52334d4a

export interface SqliteJournalOptions {
  /** The journal file, e.g. `<dataDir>/journal.sqlite`. */
  readonly path: string
}

const decodeRecord = Schema.decodeUnknownSync(TransactionRecord)

const journalError = (e: unknown, context: string): MiningError => {
  const classified = classify(e, `journal: ${context}`)
  const text = e instanceof Error ? e.message : String(e)
  if (/file is not a database|database disk image is malformed|SQLITE_CORRUPT|SQLITE_NOTADB/i.test(text)) {
    return new ValidationError({
      message: `journal: ${context}: the journal file is corrupted or not a database (${text})`,
      hint: "move the file aside (it is kept, never overwritten) and start again; recovery needs a readable journal"
    })
  }
  return classified
}

/**
 * Opens (creating or migrating) the journal. Refuses a file that is corrupted, foreign (another application's
 * SQLite database) or from a newer version of the miner, with a clear error and without touching it.
 */
export const openJournalDatabase = (path: string): Effect.Effect<DatabaseSync, MiningError> =>
  Effect.try({
    try: () => {
      mkdirSync(dirname(path), { recursive: true })
      const db = new DatabaseSync(path)
      try {
        const appId = (db.prepare("PRAGMA application_id").get() as { application_id: number }).application_id
        const tables = (db.prepare("SELECT count(*) AS n FROM sqlite_master").get() as { n: number }).n
        if (appId !== APPLICATION_ID && (appId !== 0 || tables > 0)) {
          throw new ValidationError({
            message: `journal: ${path} is not an r3mes journal (application_id ${appId}, ${tables} objects)`,
            hint: "point R3MES_DATA_DIR at the miner's own directory; the file was left untouched"
          })
        }
        // WAL: readers (status, stats) never block the miner. NORMAL: a commit does not sync; a writer that needs
        // its commit on disk when it returns syncs the WAL itself (SqliteJournal's save does, off the main thread).
        // Checkpoints still sync, and NORMAL in WAL mode never corrupts the file.
        db.exec("PRAGMA journal_mode = WAL")
        db.exec("PRAGMA synchronous = NORMAL")
        db.exec("PRAGMA foreign_keys = ON")
        db.exec("PRAGMA busy_timeout = 5000")
        const version = (db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version
        if (version > migrations.length) {
          throw new ValidationError({
            message: `journal: ${path} has schema version ${version}, newer than this miner's ${migrations.length}`,
            hint: "upgrade r3mes-miner"
          })
        }
        for (let v = version; v < migrations.length; v++) {
          db.exec("BEGIN IMMEDIATE")
          try {
            db.exec(migrations[v]!)
            db.exec(`PRAGMA user_version = ${v + 1}`)
            if (v === 0) db.exec(`PRAGMA application_id = ${APPLICATION_ID}`)
            db.exec("COMMIT")
          } catch (e) {
            db.exec("ROLLBACK")
            throw e
          }
        }
        db.prepare("SELECT count(*) FROM transactions").get()
        return db
      } catch (e) {
        db.close()
        throw e
      }
    },
    catch: (e) => (e instanceof ValidationError ? e : journalError(e, `opening ${path}`))
  })

/**
 * Makes commits durable without blocking the event loop: `synchronous = FULL` would fsync inside every COMMIT, on
 * the main thread (2.4 ms a commit on this machine's disk, ~20 ms of each mining transaction's nine saves, when the
 * whole transaction has ~100 ms of main-thread work). Instead the WAL file is fdatasync'ed on libuv's thread pool
 * after the commit, and the save completes only once a sync that started after its commit has finished: what FULL
 * guarantees, with the commits of concurrent transactions sharing one sync (group commit).
 */
const makeWalSync = (walPath: string) => {
  // Opened at the first save, once the commit has created the WAL. SQLite reuses the file in place after a
  // checkpoint and deletes it only when the last connection closes, which ours is not while the journal is open: the
  // file opened here is the one SQLite writes to for as long as this journal lives.
  let wal: Promise<FileHandle> | undefined
  let running: Promise<void> | undefined
  let queued: Promise<void> | undefined

  const syncOnce = async (): Promise<void> => {
    wal ??= open(walPath, "r")
    const handle = await wal.catch((error) => {
      wal = undefined
      throw error
    })
    await handle.datasync()
  }

  /** Resolves once a sync that started after this call has finished. */
  const durable = (): Promise<void> => {
    if (running === undefined) {
      const started: Promise<void> = syncOnce().finally(() => {
        if (running === started) running = undefined
      })
      running = started
      return started
    }
    // A sync is under way but may have started before our commit: wait for the next one, shared by every commit
    // made meanwhile.
    queued ??= running.then(() => undefined, () => undefined).then(() => {
      queued = undefined
      return durable()
    })
    return queued
  }

  const close = async (): Promise<void> => {
    await Promise.allSettled([running, queued])
    const handle = await wal?.catch(() => undefined)
    wal = undefined
    await handle?.close().catch(() => undefined)
  }

  return { durable, close }
}

export const make = Effect.fnUntraced(function*(options: SqliteJournalOptions) {
  const db = yield* Effect.acquireRelease(openJournalDatabase(options.path), (db) => Effect.sync(() => db.close()))
  const walSync = yield* Effect.acquireRelease(
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

  const run = <A>(context: string, f: () => A): Effect.Effect<A, MiningError> =>
    Effect.try({ try: f, catch: (e) => journalError(e, context) })

  const parse = (row: unknown, context: string): Effect.Effect<TransactionRecord, MiningError> =>
    Effect.try({
      try: () => decodeRecord(JSON.parse((row as { record: string }).record)),
      catch: (e) =>
        new ValidationError({ message: `journal: ${context}: unreadable record (${e instanceof Error ? e.message : e})` })
    })

  const save = (record: TransactionRecord, event: Omit<JournalEvent, "transaction_id">) =>
    run(`saving ${record.transaction_id}`, () => {
      db.exec("BEGIN IMMEDIATE")
      try {
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
        db.exec("COMMIT")
      } catch (e) {
        if (db.isTransaction) db.exec("ROLLBACK")
        throw e
      }
    }).pipe(
      // Durable when save returns (the Journal port's promise): the intent is on disk before its side effect.
      Effect.andThen(Effect.tryPromise({
        try: walSync.durable,
        catch: (e) => journalError(e, `syncing ${record.transaction_id} to disk`)
      }))
    )

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
      const where = query.state === undefined ? "" : "WHERE state = ?"
      const params: Array<SQLInputValue> = query.state === undefined ? [] : [query.state]
      const limit = query.limit === undefined ? "" : "LIMIT ?"
      if (query.limit !== undefined) params.push(Math.max(0, Math.floor(query.limit)))
      return db.prepare(`SELECT record FROM transactions ${where} ORDER BY created_at DESC, seq DESC ${limit}`).all(
        ...params
      )
    }).pipe(Effect.flatMap((rows) => Effect.forEach(rows, (row) => parse(row, "list"))))

  const events = (transactionId: string) =>
    run(`reading the events of ${transactionId}`, () => eventsOf.all(transactionId) as unknown as Array<JournalEvent>)

  return Journal.of({ save, get, findByKey, list, events })
})

export const SqliteJournal = {
  /**
   * The Journal port on node:sqlite (WAL; every save on disk when it returns, synced off the main thread). Closed
   * when the layer's scope closes.
   */
  layer: (options: SqliteJournalOptions): Layer.Layer<Journal, MiningError> => Layer.effect(Journal, make(options))
} as const
