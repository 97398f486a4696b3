import { Effect, type Redacted, Schema } from "effect"
import { TransactionRecord } from "../../domain/TransactionRecord.ts"
import { TransactionState } from "../../domain/TransactionState.ts"
import { runnerNameHeld } from "../fleet/runnerName.ts"
import { lostConnectionAsFailure, pgError } from "../postgres/pgErrors.ts"
import { checkSchema } from "../postgres/pgMigrations.ts"
import { openPgPool } from "../postgres/pgPool.ts"

/**
 * `r3mes-miner journal check` in a fleet: the health of the fleet's journal in Postgres, read beside running runners
 * (read-only sessions, no name or lock taken, nothing created). JSON field names are the `--json` output's.
 */
export interface FleetJournalCheck {
  /** The fleet's database, its password redacted. */
  readonly database: string
  readonly status: "ok" | "corrupted"
  /** Records that cannot be read back, or whose columns disagree with the record (at most 20); none when ok. */
  readonly problems: ReadonlyArray<string>
  /** What to do about them; null when ok. */
  readonly hint: string | null
  readonly check_ms: number
  readonly schema_version: number
  readonly records: { readonly total: number; readonly by_state: Readonly<Record<string, number>> }
  readonly meta: Readonly<Record<string, string>>
  /** Every runner with records: whether a process holds its name now, and its records by state. */
  readonly runners: ReadonlyArray<{
    readonly runner: string
    readonly running: boolean
    readonly transactions: Readonly<Record<string, number>>
  }>
  /**
   * The nonce ledger, per account and chain: nonces reserved, the first (an account that sent transactions before
   * its fleet has earlier ones outside the ledger), the next one, and those missing in between.
   */
  readonly nonces: ReadonlyArray<{
    readonly chain_id: number
    readonly account: string
    readonly reserved: number
    readonly first: number
    readonly next: number
    /** At most 20. */
    readonly missing: ReadonlyArray<number>
  }>
  /** What is not damage but worth knowing (a gone runner's unfinished work, nonces reserved outside the ledger). */
  readonly notes: ReadonlyArray<string>
}

const decodeRecord = Schema.decodeUnknownSync(TransactionRecord)
const unfinishedStates = TransactionState.literals.filter((s) => !["committed", "failed", "rolled_back"].includes(s))
const maxListed = 20

interface Row {
  readonly transaction_id: string
  readonly key: string
  readonly state: string
  readonly owner: string | null
  readonly record: string
}

/** Why a row's record cannot be trusted, or undefined. */
const rowProblem = (row: Row): string | undefined => {
  let record: TransactionRecord
  try {
    record = decodeRecord(JSON.parse(row.record))
  } catch (error) {
    return `${row.transaction_id}: unreadable record (${(error instanceof Error ? error.message : String(error)).split("\n")[0]})`
  }
  const disagreeing = [
    record.transaction_id === row.transaction_id ? undefined : `transaction_id ${record.transaction_id}`,
    record.key === row.key ? undefined : `key ${record.key}`,
    record.state === row.state ? undefined : `state ${record.state}`,
    record.owner === row.owner ? undefined : `owner ${record.owner}`
  ].filter((d) => d !== undefined)
  return disagreeing.length === 0
    ? undefined
    : `${row.transaction_id}: its columns (state ${row.state}, owner ${row.owner}) disagree with its record (${disagreeing.join(", ")})`
}

/** The numbers between the first and the last of `reserved` (ascending) that it lacks, at most `maxListed`. */
const gapsOf = (reserved: ReadonlyArray<number>): Array<number> => {
  const missing: Array<number> = []
  for (let i = 1; i < reserved.length && missing.length < maxListed; i++) {
    for (let n = reserved[i - 1]! + 1; n < reserved[i]! && missing.length < maxListed; n++) missing.push(n)
  }
  return missing
}

/**
 * Checks the fleet's journal: every record read back and compared with its row's columns, records per state and per
 * runner (running or gone), meta entries, and the account's nonce ledger. Unreadable records are a report
 * ("corrupted"), not a failure; an unreachable database, or one without the journal, fails with a hint.
 */
export const checkPgJournal = Effect.fn("checkPgJournal")(function*(url: Redacted.Redacted<string>) {
  const { sql, target } = yield* openPgPool({ url, readOnly: true, maxConnections: 2 }, "journal")
  const run = <A>(context: string, effect: Effect.Effect<A, unknown>) =>
    Effect.mapError(lostConnectionAsFailure(effect), (e) => pgError(e, context, target))
  const version = yield* checkSchema(sql, target.display).pipe(
    Effect.mapError((e) => (e._tag === "SqlError" ? pgError(e, "opening (read only)", target) : e))
  )
  const started = performance.now()
  const rows = yield* run(
    "reading every record",
    sql<Row>`SELECT transaction_id, key, state, owner, record::text AS record FROM r3mes_transactions ORDER BY seq`
  )
  const problems = rows.map(rowProblem).filter((p) => p !== undefined)
  const checkMs = Math.round(performance.now() - started)

  const byState: Record<string, number> = Object.fromEntries(TransactionState.literals.map((state) => [state, 0]))
  const byRunner = new Map<string, Record<string, number>>()
  for (const row of rows) {
    byState[row.state] = (byState[row.state] ?? 0) + 1
    if (row.owner !== null) {
      const counts = byRunner.get(row.owner) ?? {}
      counts[row.state] = (counts[row.state] ?? 0) + 1
      byRunner.set(row.owner, counts)
    }
  }
  const runners = yield* Effect.forEach([...byRunner].sort(([a], [b]) => a.localeCompare(b)), ([runner, transactions]) =>
    run(`looking whether runner ${runner} runs`, runnerNameHeld(sql, runner)).pipe(
      Effect.map((running) => ({ runner, running, transactions }))
    ))

  const metaRows = yield* run("reading meta", sql<{ readonly key: string; readonly value: string }>`SELECT key, value FROM r3mes_meta ORDER BY key`)
  const ledgerRows = yield* run(
    "reading the nonce ledger",
    sql<{ readonly chain_id: string; readonly account: string; readonly nonce: string }>`
      SELECT chain_id::text, account, nonce::text FROM r3mes_nonces
      ORDER BY r3mes_nonces.chain_id, r3mes_nonces.account, r3mes_nonces.nonce`
  )
  const ledgers = new Map<string, { chain_id: number; account: string; nonces: Array<number> }>()
  for (const row of ledgerRows) {
    const id = `${row.chain_id}/${row.account}`
    const ledger = ledgers.get(id) ?? { chain_id: Number(row.chain_id), account: row.account, nonces: [] }
    ledger.nonces.push(Number(row.nonce))
    ledgers.set(id, ledger)
  }
  // Never empty: a ledger is listed once it has a row. Rows come ascending by nonce (ordered by the table's bigint
  // column: an unqualified ORDER BY nonce would sort the text output column).
  const nonces = [...ledgers.values()].map(({ account, chain_id, nonces: reserved }) => ({
    chain_id,
    account,
    reserved: reserved.length,
    first: reserved[0]!,
    next: reserved.at(-1)! + 1,
    missing: gapsOf(reserved)
  }))

  const notes = [
    ...runners.flatMap(({ running, runner, transactions }) => {
      const unfinished = unfinishedStates.reduce((sum, state) => sum + (transactions[state] ?? 0), 0)
      return running || unfinished === 0
        ? []
        : [`runner ${runner} is gone with ${unfinished} unfinished transaction(s): a running runner takes them over at its next look (every 5 s), or at its start`]
    }),
    ...nonces.flatMap((n) =>
      n.missing.length === 0
        ? []
        : [`account ${n.account} on chain ${n.chain_id}: nonce(s) ${n.missing.join(", ")} between ${n.first} and ${n.next - 1} are not in the ledger (sent outside the fleet, e.g. by a wallet with the same key)`]
    )
  ]
  return {
    database: target.display,
    status: problems.length === 0 ? "ok" : "corrupted",
    problems: problems.slice(0, maxListed),
    hint: problems.length === 0
      ? null
      : "a record that does not read back cannot be recovered by any runner: look at it (SELECT record FROM " +
        "r3mes_transactions WHERE transaction_id = …) and settle it with the chain (r3mes-miner status TX_ID on a runner)",
    check_ms: checkMs,
    schema_version: version,
    records: { total: rows.length, by_state: byState },
    meta: Object.fromEntries(metaRows.map(({ key, value }) => [key, value])),
    runners,
    nonces,
    notes
  } satisfies FleetJournalCheck
}, Effect.scoped)
