import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { dirname, resolve } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { Effect } from "effect"
import { classify } from "../../domain/classify.ts"
import { type MiningError, ResourceError } from "../../domain/errors.ts"
import { dataDirSetting, explainPathError } from "../pathAccess.ts"

/**
 * One miner per data dir: two miners on one journal "recover" each other's live transactions and clash on nonces.
 *
 * The lock is SQLite's own file lock (POSIX `fcntl`) on a small database next to the journal, held in an exclusive
 * transaction for as long as the journal is open for mining. The kernel drops it when the process dies, SIGKILL
 * included, so there is never a stale lock to clear by hand, and SQLite also refuses a second connection of the same
 * process. A pid file alone could not do this: pids are reused, and two starts racing for a dead holder's file both
 * win. The pid file here only names the holder in the refusal.
 *
 * Never open the lock file other than through SQLite in a process that may hold the lock: closing any descriptor of
 * a file drops the process's `fcntl` locks on it, which SQLite alone knows how to avoid.
 */

export const lockFile = (journalPath: string): string => `${journalPath}.lock`

/** `{"pid":…,"started_at":…}` of the process holding the lock, written once it holds it. */
export const holderFile = (journalPath: string): string => `${journalPath}.pid`

export interface LockHolder {
  readonly pid: number | undefined
  readonly started_at: string | undefined
}

export type LockState =
  | { readonly held: false }
  | ({ readonly held: true } & LockHolder)

/**
 * How long a start waits for the lock: a reader probing it (`lockState`) holds it for microseconds, and must not
 * make a miner starting at that moment believe another one runs. Far below what a start takes anyway.
 */
const probeGraceMs = 250

const isBusy = (error: unknown): boolean =>
  /database is locked|SQLITE_BUSY/i.test(error instanceof Error ? error.message : String(error))

const readHolder = (journalPath: string): LockHolder => {
  try {
    const parsed = JSON.parse(readFileSync(holderFile(journalPath), "utf8")) as { pid?: unknown; started_at?: unknown }
    return {
      pid: typeof parsed.pid === "number" ? parsed.pid : undefined,
      started_at: typeof parsed.started_at === "string" ? parsed.started_at : undefined
    }
  } catch {
    // The holder is between taking the lock and writing its file, or died and its file went with its data dir.
    return { pid: undefined, started_at: undefined }
  }
}

const writeHolder = (journalPath: string): void => {
  const holder = { pid: process.pid, started_at: new Date().toISOString() }
  // Written aside and renamed, so a refused miner never reads half a file.
  const partial = `${holderFile(journalPath)}.${process.pid}.tmp`
  writeFileSync(partial, `${JSON.stringify(holder)}\n`)
  renameSync(partial, holderFile(journalPath))
}

export const inUseError = (journalPath: string, holder: LockHolder): ResourceError => {
  // Absolute: "./.r3mes is in use" does not say which of an operator's many `.r3mes` it is.
  const dir = resolve(dirname(journalPath))
  const who = holder.pid === undefined
    ? "pid unknown"
    : holder.pid === process.pid
    ? `pid ${holder.pid}, this very process`
    : `pid ${holder.pid}`
  return new ResourceError({
    message: `the data dir ${dir} is in use by another miner (${who})`,
    resource: "data dir",
    hint: `${holder.started_at === undefined ? "" : `that miner started at ${holder.started_at}; `}stop it first, ` +
      "or give this one its own --data-dir (R3MES_DATA_DIR); `r3mes-miner status`, `stats` and `journal check` read " +
      "its journal while it runs"
  })
}

const takeLock = (journalPath: string): DatabaseSync => {
  mkdirSync(dirname(journalPath), { recursive: true })
  const db = new DatabaseSync(lockFile(journalPath))
  try {
    db.exec(`PRAGMA busy_timeout = ${probeGraceMs}`)
    // MEMORY: no rollback journal file appears next to the lock (the transaction never writes anyway).
    db.exec("PRAGMA journal_mode = MEMORY")
    db.exec("PRAGMA locking_mode = EXCLUSIVE")
    db.exec("BEGIN EXCLUSIVE")
  } catch (error) {
    db.close()
    throw isBusy(error) ? inUseError(journalPath, readHolder(journalPath)) : error
  }
  writeHolder(journalPath)
  return db
}

const releaseLock = (journalPath: string, db: DatabaseSync): void => {
  // The pid file goes first: once the lock is released it may already be the next holder's.
  rmSync(holderFile(journalPath), { force: true })
  db.close()
}

/**
 * Holds the lock of the journal's data dir until the scope closes. Fails at once with a ResourceError naming the
 * holder when another miner (another process, or this one) holds it.
 */
export const acquireDataDirLock = Effect.fn("acquireDataDirLock")(function*(journalPath: string) {
  yield* Effect.acquireRelease(
    Effect.try({
      try: () => takeLock(journalPath),
      catch: (error) =>
        error instanceof ResourceError
          ? error
          : classify(explainPathError(error, dirname(journalPath)), `journal: locking the data dir ${dirname(journalPath)}`, {
            setting: dataDirSetting
          })
    }),
    (db) => Effect.sync(() => releaseLock(journalPath, db))
  )
})

/**
 * Whether a miner holds the data dir's lock, without taking it: for readers (`journal check`). Its probe takes a
 * shared lock for an instant, which a miner starting meanwhile rides out (`probeGraceMs`).
 */
export const lockState = (journalPath: string): Effect.Effect<LockState, MiningError> =>
  Effect.try({
    try: (): LockState => {
      // Never created by a reader: no lock file means no miner ever ran here.
      if (!existsSync(lockFile(journalPath))) return { held: false }
      const db = new DatabaseSync(lockFile(journalPath), { readOnly: true })
      try {
        db.exec("PRAGMA busy_timeout = 0")
        db.prepare("SELECT count(*) FROM sqlite_master").get()
        return { held: false }
      } catch (error) {
        if (isBusy(error)) return { held: true, ...readHolder(journalPath) }
        throw error
      } finally {
        db.close()
      }
    },
    catch: (error) => classify(error, `journal: probing the lock of ${dirname(journalPath)}`)
  })
