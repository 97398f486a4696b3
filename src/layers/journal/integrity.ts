import type { DatabaseSync } from "node:sqlite"
import { ValidationError } from "../../domain/errors.ts"

/**
 * What an operator does about a damaged journal. Moving the journal aside and starting again is exactly what must
 * not be suggested: a miner on an empty journal no longer knows its own work, and its start-up reconciliation would
 * treat the pins of that work as orphans.
 */
export const corruptedJournalHint =
  "the journal was left untouched; `r3mes-miner journal rebuild` reconstructs this miner's records from the chain " +
  "and the IPFS store. Do not delete it or start on an empty journal: the miner would no longer know its own work"

/** SQLite's own words for a damaged file, in node:sqlite's messages (SQLITE_CORRUPT, SQLITE_NOTADB). */
export const isCorruption = (error: unknown): boolean =>
  /file is not a database|database disk image is malformed|SQLITE_CORRUPT|SQLITE_NOTADB/i.test(
    error instanceof Error ? error.message : String(error)
  )

/** More would only scroll the first (most telling) ones away; SQLite stops counting there too. */
const maxProblems = 20

/**
 * The problems SQLite finds in the whole file, none when it is sound.
 *
 * `integrity_check` rather than `quick_check`: it also verifies that every index agrees with its table, and
 * `findByKey` (which decides whether a claim was already worked on) reads through an index. Measured on a journal of
 * 20,000 transactions with 9 events each (69 MB), on this 2-core machine while other work ran: quick_check
 * 103–269 ms (median 163), integrity_check 187–481 ms (median 314). Both grow linearly with the file, so a journal
 * of a million transactions would take ~15 s at start; `quick_check` would halve that.
 */
export const integrityProblems = (db: DatabaseSync): ReadonlyArray<string> => {
  try {
    const rows = db.prepare(`PRAGMA integrity_check(${maxProblems})`).all() as Array<{ integrity_check: string }>
    const problems = rows.map((row) => row.integrity_check)
    return problems.length === 1 && problems[0] === "ok" ? [] : problems
  } catch (error) {
    // Damage that stops the check itself (e.g. in the schema's own page) is one more problem, not a crash.
    if (isCorruption(error)) return [error instanceof Error ? error.message : String(error)]
    throw error
  }
}

export const corruptedJournal = (path: string, problems: ReadonlyArray<string>): ValidationError =>
  new ValidationError({
    message: `journal: ${path} is corrupted (SQLite integrity check: ${problems[0] ?? "unknown damage"}${
      problems.length > 1 ? `, and ${problems.length - 1} more problem${problems.length === 2 ? "" : "s"}` : ""
    })`,
    hint: corruptedJournalHint
  })
