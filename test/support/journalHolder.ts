/**
 * A child process that opens the journal at argv[2] for mining, as `r3mes-miner mine` does, saves one record, and
 * holds it until killed. It prints one JSON line: `{"held":true,"pid":…}`, or `{"held":false,"error":{…}}` (and
 * exits 3) when the journal was refused.
 */
import { Effect } from "effect"
import { SqliteJournal } from "../../src/layers/journal/SqliteJournal.ts"
import { Journal } from "../../src/services/Journal.ts"
import { newRecord } from "../../src/domain/TransactionRecord.ts"

const path = process.argv[2]!

const hold = Effect.gen(function*() {
  const journal = yield* Journal
  const r = newRecord({ transactionId: `tx-held-${process.pid}`, key: "held", roundId: 1n, chunkId: 0, nowMs: Date.now() })
  yield* journal.save(r, { at: r.created_at, state: r.state, event: "created", detail: null })
  console.log(JSON.stringify({ held: true, pid: process.pid, transaction_id: r.transaction_id }))
  return yield* Effect.never
}).pipe(
  Effect.provide(SqliteJournal.layer({ path })),
  Effect.catch((error) =>
    Effect.sync(() => {
      console.log(JSON.stringify({ held: false, pid: process.pid, error: { tag: error._tag, message: error.message, hint: error.hint } }))
      process.exitCode = 3
    })
  )
)

// Effect.never alone does not keep Node's event loop alive.
const keepAlive = setInterval(() => undefined, 1 << 30)
Effect.runPromise(hold).finally(() => clearInterval(keepAlive))
