import { createHash } from "node:crypto"
import { mkdtempSync, readFileSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqliteJournal } from "../../src/layers/journal/SqliteJournal.ts"
import { Journal } from "../../src/services/Journal.ts"
import { overwriteMiddlePage, pageSize, writeJournal } from "../support/journalFiles.ts"

/**
 * Issue 11, defect 6: a journal with bytes overwritten mid-file opened as if nothing were wrong ("journal clean",
 * then mining on it). SQLite reads only the pages a query touches, so the damage surfaced, if ever, in the middle
 * of some later transaction.
 */

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex")

describe("a corrupted journal is detected at start (issue 11, defect 6)", () => {
  it.effect("bytes overwritten mid-file: opening it for mining is refused, the file untouched, the hint loses nothing", () =>
    Effect.gen(function*() {
      const path = join(mkdtempSync(join(tmpdir(), "r3mes-corrupt-")), "journal.sqlite")
      yield* writeJournal(path, 300)
      assert.isAbove(statSync(path).size, 40 * pageSize, "a journal of many pages")
      overwriteMiddlePage(path)
      // What made the defect: the file still opens, and a query that misses the damaged page still answers.
      const raw = new DatabaseSync(path, { readOnly: true })
      assert.strictEqual((raw.prepare("SELECT count(*) AS n FROM meta").get() as { n: number }).n, 1)
      raw.close()

      const before = sha256(path)
      const error = yield* Effect.flip(Effect.scoped(Layer.build(SqliteJournal.layer({ path }))))
      assert.strictEqual(error._tag, "ValidationError")
      assert.match(error.message, /^journal: .*journal\.sqlite is corrupted \(SQLite integrity check: /)
      assert.include(error.hint, "`r3mes-miner journal rebuild` reconstructs this miner's records from the chain and the IPFS store")
      assert.include(error.hint, "left untouched")
      assert.notMatch(error.hint ?? "", /move (the file|it) aside/)
      assert.strictEqual(sha256(path), before, "the refused file is not written to")
      // Refused again on the next start: nothing was "repaired" behind the operator's back.
      const again = yield* Effect.flip(Effect.scoped(Layer.build(SqliteJournal.layer({ path }))))
      assert.include(again.message, "is corrupted")
    }))

  it.effect("a sound journal of the same size opens (the check does not cry wolf)", () =>
    Effect.gen(function*() {
      const path = join(mkdtempSync(join(tmpdir(), "r3mes-corrupt-")), "journal.sqlite")
      yield* writeJournal(path, 300)
      const listed = yield* Effect.scoped(
        Journal.use((journal) => journal.list({ state: "committed" })).pipe(Effect.provide(SqliteJournal.layer({ path })))
      )
      assert.strictEqual(listed.length, 300)
    }))
})
