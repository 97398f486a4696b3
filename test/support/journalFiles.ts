import { closeSync, openSync, statSync, writeSync } from "node:fs"
import { Effect } from "effect"
import { SqliteJournal } from "../../src/layers/journal/SqliteJournal.ts"
import { Journal } from "../../src/services/Journal.ts"
import { contractEvent, contractRecord } from "./journalContract.ts"

/** SQLite's default page size, which the journal keeps. */
export const pageSize = 4096

/**
 * A real journal, written through SqliteJournal: `count` transactions of three saves each (created, training,
 * committed), a meta entry, closed cleanly (so everything is in the main file, none in the WAL).
 */
export const writeJournal = (path: string, count: number) =>
  Effect.gen(function*() {
    const journal = yield* Journal
    for (let i = 0; i < count; i++) {
      const r = contractRecord(`tx-1-${i}-${i.toString(16).padStart(8, "0")}`, { chunkId: i, createdMs: 1_000 + i })
      yield* journal.save(r, contractEvent(r, "created", `round 1 chunk ${i}`))
      const training = { ...r, state: "training" as const }
      yield* journal.save(training, contractEvent(training))
      const committed = { ...r, state: "committed" as const, gradient_hash: `0x${i.toString(16).padStart(64, "0")}` }
      yield* journal.save(committed, contractEvent(committed, "state_changed", "block 42"))
    }
    yield* journal.setMeta("chain.genesis_hash", "0xfeed")
  }).pipe(Effect.provide(SqliteJournal.layer({ path })), Effect.scoped)

/** `pageSize` bytes of reproducible garbage over the page in the middle of the file: a disk's or a tool's damage. */
export const overwriteMiddlePage = (path: string, seed = 7): void => {
  const pages = Math.floor(statSync(path).size / pageSize)
  const garbage = Buffer.alloc(pageSize)
  let x = seed
  for (let i = 0; i < pageSize; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    garbage[i] = x >>> 24
  }
  const fd = openSync(path, "r+")
  writeSync(fd, garbage, 0, pageSize, Math.floor(pages / 2) * pageSize)
  closeSync(fd)
}
