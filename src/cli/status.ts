import { Clock, Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { maxListLimit, type TransactionList, type TransactionWithEvents } from "../api/MonitoringApiSchemas.ts"
import { withAge } from "../domain/TransactionRecord.ts"
import type { MiningError } from "../domain/errors.ts"
import { TransactionState } from "../domain/TransactionState.ts"
import { logToStderr, runCliEffect } from "./errors.ts"
import { CliExit, ExitCode } from "./exit.ts"
import {
  askMinerOrJournal,
  describeSource,
  loadMonitorTarget,
  type MonitorTarget,
  monitorFlags,
  readJournal,
  type Source,
  noteJsonSource,
  printJson
} from "./monitorClient.ts"
import { renderList, renderTransaction } from "./statusRender.ts"

// Where `journal` took these from before status.ts was split.

/**
 * `r3mes-miner status [TX_ID]`: what a miner is doing, asked of its monitoring API when one answers, else read
 * from the journal in its data dir (monitorClient.ts); the text output is statusRender.ts.
 */

/** The API's own bound, so `--limit` never asks for what /transactions would refuse. */
const maxLimit = maxListLimit

const transactionId = Argument.String("transaction-id").pipe(
  Argument.withMetavar("TX_ID"),
  Argument.withDescription("A transaction id (tx-<round>-<chunk>-<suffix>): show its record and full history"),
  Argument.optional
)

const limit = Flag.Int("limit").pipe(
  Flag.withMetavar("N"),
  Flag.withDescription(`Without TX_ID: how many of the latest transactions to list (1 to ${maxLimit}; default 20).`),
  Flag.withDefault(20)
)

const state = Flag.Literals("state", TransactionState.literals).pipe(
  Flag.withDescription("Without TX_ID: list only the transactions in this state."),
  Flag.optional
)

const json = Flag.Boolean("json").pipe(
  Flag.withDescription(
    "Print exactly what the monitoring API answers (GET /transaction/TX_ID, or GET /transactions?state=&limit=), " +
      "computed from the journal when no miner answers."
  ),
  Flag.withDefault(false)
)

const events = Flag.Boolean("events").pipe(
  Flag.withDescription("With --json and TX_ID: add the history, as GET /transaction/TX_ID?events=true does."),
  Flag.withDefault(false)
)

const showTransaction = Effect.fnUntraced(function*(
  target: MonitorTarget,
  id: string,
  options: { readonly json: boolean; readonly events: boolean }
) {
  const withEvents = !options.json || options.events
  const found = yield* askMinerOrJournal(target, {
    path: `/transaction/${encodeURIComponent(id)}${withEvents ? "?events=true" : ""}`,
    ask: (client) => client.transaction({ params: { id }, query: { events: withEvents ? "true" : undefined } }),
    fromJournal: (journal) =>
      Effect.gen(function*() {
        const record = yield* journal.get(id)
        if (record === undefined) return Option.none<TransactionWithEvents>()
        // As the API shows it: the age relative to the reader's clock.
        const shown: TransactionWithEvents = withAge(record, yield* Clock.currentTimeMillis)
        return Option.some(withEvents ? { ...shown, events: yield* journal.events(id) } : shown)
      })
  })
  if (Option.isNone(found.value)) {
    const where = found.source._tag === "api" ? `at ${found.source.url}` : `in the journal ${found.source.path}`
    yield* Console.error(
      `r3mes-miner: no transaction ${id} ${where}\n` +
        "hint: check the id (tx-<round>-<chunk>-<suffix>) against the latest, listed by `r3mes-miner status`" +
        (found.source._tag === "api" ? "" : "; a transaction of another miner is in that miner's --data-dir")
    )
    return yield* new CliExit({ code: ExitCode.failure })
  }
  if (options.json) {
    yield* noteJsonSource(found.source)
    return yield* printJson(found.value.value)
  }
  const { events: history = [], ...record } = found.value.value
  yield* Console.log(`source: ${describeSource(found.source)}\n\n${renderTransaction(record, history)}`)
})

/**
 * How many transactions there are (in `state`), from the same source as the list, up to the API's bound: neither the
 * API nor the journal port counts, and a list of `maxLimit` records is cheap. `maxLimit` itself means "at least".
 */
const countTransactions = (
  target: MonitorTarget,
  source: Source,
  state: TransactionState | null
): Effect.Effect<number, MiningError | CliExit> => {
  const query = { state: state ?? undefined, limit: maxLimit }
  if (source._tag === "journal") return readJournal(target, source.why, (journal) => Effect.map(journal.list(query), (r) => r.length))
  return askMinerOrJournal(target, {
    path: `/transactions?limit=${maxLimit}`,
    ask: (client) => Effect.map(client.transactions({ query }), (list) => list.transactions.length),
    fromJournal: (journal) => Effect.map(journal.list(query), (records) => Option.some(records.length))
  }).pipe(Effect.map((found) => Option.getOrElse(found.value, () => 0)))
}

const listTransactions = Effect.fnUntraced(function*(
  target: MonitorTarget,
  options: { readonly json: boolean; readonly state: TransactionState | null; readonly limit: number }
) {
  const query = new URLSearchParams({ limit: String(options.limit) })
  if (options.state !== null) query.set("state", options.state)
  const found = yield* askMinerOrJournal(target, {
    path: `/transactions?${query}`,
    ask: (client) => client.transactions({ query: { state: options.state ?? undefined, limit: options.limit } }),
    fromJournal: (journal) =>
      Effect.gen(function*() {
        const records = yield* journal.list({ state: options.state ?? undefined, limit: options.limit })
        const now = yield* Clock.currentTimeMillis
        return Option.some<TransactionList>({
          transactions: records.map((r) => withAge(r, now)),
          count: records.length,
          state: options.state,
          limit: options.limit
        })
      })
  })
  const listed = Option.getOrElse(found.value, (): Pick<TransactionList, "transactions"> => ({ transactions: [] }))
  if (options.json) {
    yield* noteJsonSource(found.source)
    return yield* printJson(listed)
  }
  const total = listed.transactions.length < options.limit
    ? listed.transactions.length
    : yield* countTransactions(target, found.source, options.state)
  yield* Console.log(
    `source: ${describeSource(found.source)}\n\n${renderList(listed.transactions, { ...options, total, maxLimit })}`
  )
})

export const statusCommand = Command.make(
  "status",
  { settings: monitorFlags, transactionId, limit, state, json, events },
  Effect.fnUntraced(function*(input) {
    if (input.limit < 1 || input.limit > maxLimit) {
      yield* Console.error(
        `--limit ${input.limit} is invalid: expected an integer from 1 to ${maxLimit}\nhint: omit --limit to list the latest 20`
      )
      return yield* new CliExit({ code: ExitCode.usage })
    }
    const target = yield* loadMonitorTarget(input.settings)
    yield* runCliEffect(
      Option.match(input.transactionId, {
        onNone: () => listTransactions(target, { json: input.json, state: Option.getOrNull(input.state), limit: input.limit }),
        onSome: (id) => showTransaction(target, id, { json: input.json, events: input.events })
      })
    )
  }, logToStderr)
).pipe(
  Command.withDescription(
    "Show transactions: without TX_ID the latest ones (newest first), with TX_ID one transaction's record and its " +
      "full history, from before a restart too. Asks the running miner's monitoring API (--stats-host, " +
      "--stats-port); when none answers within 2 s, reads the journal instead, never creating it: a fleet's in " +
      "Postgres (every runner's records) with --fleet-database-url (R3MES_FLEET_DATABASE_URL), else the one in " +
      "--data-dir. " +
      "Exit codes: 0 shown, 1 unknown TX_ID or no journal, 2 invalid usage."
  ),
  Command.withExamples([
    { command: "r3mes-miner status", description: "The latest 20 transactions" },
    { command: "r3mes-miner status --state rolled_back --limit 5", description: "The latest 5 rolled back" },
    { command: "r3mes-miner status tx-3-17-9f2c4e1a", description: "One transaction, with its history" },
    { command: "r3mes-miner status tx-3-17-9f2c4e1a --json --events", description: "The same, as the API's JSON" }
  ])
)
