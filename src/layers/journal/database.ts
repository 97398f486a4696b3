import { existsSync, mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { Effect } from "effect"
import { classify } from "../../domain/classify.ts"
import { type MiningError, ResourceError, ValidationError } from "../../domain/errors.ts"
import { corruptedJournal, corruptedJournalHint, integrityProblems, isCorruption } from "./integrity.ts"
import { migrations } from "./migrations.ts"
import { dataDirSetting, explainPathError } from "../pathAccess.ts"

/** "R3MJ": marks the file as an r3mes journal, so a foreign SQLite file is refused instead of being written to. */
export const APPLICATION_ID = 0x52334d4a

/** The schema version this miner writes: one per migration. */
export const SCHEMA_VERSION = migrations.length

export interface JournalDatabase {
  readonly db: DatabaseSync
  /** The file's schema version; below SCHEMA_VERSION only when opened read-only (a writer migrates). */
  readonly version: number
}

/** A node:sqlite failure as the miner's typed error; a damaged file gets the hint that loses nothing. */
export const journalError = (e: unknown, context: string, path?: string): MiningError => {
  if (isCorruption(e)) {
    const text = e instanceof Error ? e.message : String(e)
    return new ValidationError({
      message: `journal: ${context}: the journal file is corrupted or not a database (${text})`,
      hint: corruptedJournalHint
    })
  }
  if (path === undefined) return classify(e, `journal: ${context}`)
  return classify(explainPathError(e, dirname(path)), `journal: ${context}`, { setting: dataDirSetting })
}

const pragmaNumber = (db: DatabaseSync, name: string): number =>
  Object.values(db.prepare(`PRAGMA ${name}`).get() as Record<string, number>)[0]!

/**
 * The journal's schema version, after refusing (untouched) a foreign SQLite database (another application's) or a
 * newer miner's journal.
 */
export const checkOwnership = (db: DatabaseSync, path: string): number => {
  const appId = pragmaNumber(db, "application_id")
  const tables = (db.prepare("SELECT count(*) AS n FROM sqlite_master").get() as { n: number }).n
  if (appId !== APPLICATION_ID && (appId !== 0 || tables > 0)) {
    throw new ValidationError({
      message: `journal: ${path} is not an r3mes journal (application_id ${appId}, ${tables} objects)`,
      hint: "point R3MES_DATA_DIR at the miner's own directory; the file was left untouched"
    })
  }
  const version = pragmaNumber(db, "user_version")
  if (version > SCHEMA_VERSION) {
    throw new ValidationError({
      message: `journal: ${path} has schema version ${version}, newer than this miner's ${SCHEMA_VERSION}`,
      hint: "upgrade r3mes-miner"
    })
  }
  return version
}

const migrate = (db: DatabaseSync, from: number): void => {
  for (let v = from; v < SCHEMA_VERSION; v++) {
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
}

/** Closes `db` when `f` throws, so a refused file is never left open. */
const closingOnError = <A>(db: DatabaseSync, f: () => A): A => {
  try {
    return f()
  } catch (e) {
    db.close()
    throw e
  }
}

/**
 * Opens the journal for mining: creates or migrates it, after checking the whole file. The caller holds the data
 * dir's lock. A file that is corrupted, foreign or from a newer miner is refused with a clear error, untouched: the
 * integrity check runs before anything is written.
 */
const openForWriting = (path: string): JournalDatabase => {
  mkdirSync(dirname(path), { recursive: true })
  const db = new DatabaseSync(path)
  return closingOnError(db, () => {
    const version = checkOwnership(db, path)
    const problems = integrityProblems(db)
    if (problems.length > 0) throw corruptedJournal(path, problems)
    // WAL: readers (status, stats, journal check) never block the miner. NORMAL: a commit does not sync; a writer
    // that needs its commit on disk when it returns syncs the WAL itself (SqliteJournal's save does, off the main
    // thread). Checkpoints still sync, and NORMAL in WAL mode never corrupts the file.
    db.exec("PRAGMA journal_mode = WAL")
    db.exec("PRAGMA synchronous = NORMAL")
    db.exec("PRAGMA foreign_keys = ON")
    db.exec("PRAGMA busy_timeout = 5000")
    migrate(db, version)
    db.prepare("SELECT count(*) FROM transactions").get()
    return { db, version: SCHEMA_VERSION }
  })
}

/**
 * Opens an existing journal read-only, beside a miner that may be writing it (WAL readers never block it). Never
 * creates, migrates or locks anything; no integrity check (that is `journal check`'s explicit job).
 */
const openForReading = (path: string): JournalDatabase => {
  if (!existsSync(path)) {
    throw new ResourceError({
      message: `journal: no journal at ${path}`,
      resource: "journal",
      hint: "pass the miner's --data-dir (R3MES_DATA_DIR); a journal is created only by `r3mes-miner mine`"
    })
  }
  const db = new DatabaseSync(path, { readOnly: true })
  return closingOnError(db, () => {
    db.exec("PRAGMA busy_timeout = 5000")
    const version = checkOwnership(db, path)
    if (version === 0) {
      throw new ValidationError({
        message: `journal: ${path} is empty (no schema yet): a miner is creating it, or its creation was interrupted`,
        hint: "start the miner (r3mes-miner mine) on this data dir; it creates the journal's schema"
      })
    }
    return { db, version }
  })
}

export const openJournalDatabase = Effect.fn("openJournalDatabase")(function*(
  path: string,
  options: { readonly readOnly: boolean }
) {
  return yield* Effect.try({
    try: () => (options.readOnly ? openForReading(path) : openForWriting(path)),
    catch: (e) => (e instanceof ValidationError || e instanceof ResourceError ? e : journalError(e, `opening ${path}`, path))
  })
})
