import { existsSync } from "node:fs"
import { DatabaseSync } from "node:sqlite"
import { Effect } from "effect"
import { ResourceError, ValidationError } from "../../domain/errors.ts"
import { TransactionState } from "../../domain/TransactionState.ts"
import { type LockState, lockState } from "./dataDirLock.ts"
import { checkOwnership, journalError } from "./database.ts"
import { corruptedJournal, integrityProblems, isCorruption } from "./integrity.ts"

/**
 * `r3mes-miner journal check`: the health of a journal, read beside a miner that may be writing it (read-only, no
 * lock taken, nothing created). JSON field names are the `--json` output's.
 */
export interface JournalCheck {
  readonly path: string
  readonly status: "ok" | "corrupted"
  /** SQLite's own words for each problem found (at most 20), none when ok. */
  readonly problems: ReadonlyArray<string>
  /** What to do about a corrupted journal; null when ok. */
  readonly hint: string | null
  /** Time the integrity check took, null when the file could not even be read as a database. */
  readonly check_ms: number | null
  readonly schema_version: number | null
  /** Null when the damage hides them. */
  readonly records: { readonly total: number; readonly by_state: Readonly<Record<string, number>> } | null
  readonly meta: Readonly<Record<string, string>> | null
  /** Whether a miner runs on this data dir now, and which. */
  readonly lock: LockState
}

/** What a damaged file still lets us read, or null: a report must not fail on the damage it reports. */
const salvage = <A>(read: () => A): A | null => {
  try {
    return read()
  } catch (error) {
    if (isCorruption(error)) return null
    throw error
  }
}

const countRecords = (db: DatabaseSync, version: number): NonNullable<JournalCheck["records"]> => {
  const byState: Record<string, number> = Object.fromEntries(TransactionState.literals.map((state) => [state, 0]))
  // Version 0: a file a miner is still creating, nothing in it yet.
  if (version === 0) return { total: 0, by_state: byState }
  const rows = db.prepare("SELECT state, count(*) AS n FROM transactions GROUP BY state").all() as Array<
    { state: string; n: number }
  >
  for (const { n, state } of rows) byState[state] = n
  return { total: rows.reduce((sum, row) => sum + row.n, 0), by_state: byState }
}

const readMeta = (db: DatabaseSync): Record<string, string> => {
  const hasTable = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get() !== undefined
  if (!hasTable) return {}
  const rows = db.prepare("SELECT key, value FROM meta ORDER BY key").all() as Array<{ key: string; value: string }>
  return Object.fromEntries(rows.map(({ key, value }) => [key, value]))
}

const inspect = (path: string, lock: LockState): JournalCheck => {
  const db = new DatabaseSync(path, { readOnly: true })
  try {
    db.exec("PRAGMA busy_timeout = 5000")
    const corrupted = (problems: ReadonlyArray<string>, rest: Partial<JournalCheck> = {}): JournalCheck => ({
      path,
      status: "corrupted",
      problems,
      hint: corruptedJournal(path, problems).hint ?? null,
      check_ms: null,
      schema_version: null,
      records: null,
      meta: null,
      lock,
      ...rest
    })
    let version: number
    try {
      version = checkOwnership(db, path)
    } catch (error) {
      // A damaged header: not even the schema version is readable.
      if (isCorruption(error)) return corrupted([error instanceof Error ? error.message : String(error)])
      throw error
    }
    const started = performance.now()
    const problems = integrityProblems(db)
    const checkMs = Math.round(performance.now() - started)
    const found = {
      check_ms: checkMs,
      schema_version: version,
      records: salvage(() => countRecords(db, version)),
      meta: salvage(() => readMeta(db))
    }
    return problems.length > 0
      ? corrupted(problems, found)
      : { path, status: "ok", problems: [], hint: null, lock, ...found }
  } finally {
    db.close()
  }
}

/**
 * Checks the journal at `path` (SQLite's integrity check over the whole file), counts its records per state, reads
 * its meta entries and whether a miner holds the data dir's lock. A corrupted journal is a report, not a failure;
 * a missing, foreign or newer journal fails.
 */
export const checkJournal = Effect.fn("checkJournal")(function*(path: string) {
  const lock = yield* lockState(path)
  if (!existsSync(path)) {
    return yield* new ResourceError({
      message: `journal: no journal at ${path}`,
      resource: "journal",
      hint: lock.held
        ? "a miner holds this data dir but has not created its journal yet; check again in a moment"
        : "pass the miner's --data-dir (R3MES_DATA_DIR); a journal is created only by `r3mes-miner mine`"
    })
  }
  return yield* Effect.try({
    try: () => inspect(path, lock),
    catch: (error) => (error instanceof ValidationError ? error : journalError(error, `checking ${path}`))
  })
})
