import { existsSync } from "node:fs"
import { get } from "node:http"
import { join } from "node:path"
import { Clock, Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { type MiningError, ResourceError } from "../domain/errors.ts"
import { SUBMIT_INTENT } from "../domain/intents.ts"
import { minerSettings } from "../domain/MinerConfigSchema.ts"
import { type TransactionRecord, withAge } from "../domain/TransactionRecord.ts"
import { isTerminal, steps, TransactionState } from "../domain/TransactionState.ts"
import { SqliteJournal } from "../layers/journal/SqliteJournal.ts"
import { Journal, type JournalEvent } from "../services/Journal.ts"
import { logToStderr, runCliEffect } from "./errors.ts"
import { CliExit, ExitCode } from "./exit.ts"
import { loadSettings, type SettingFlagValues, settingFlags } from "./settingsFlags.ts"

/**
 * `r3mes-miner status [TX_ID]` (and, through the helpers exported here, `stats`): what a miner is doing, asked of
 * its monitoring API when one answers, else read from the journal in its data dir, so the history of a
 * transaction survives the process that ran it.
 */

// ---------------------------------------------------------------------------------------------------------------
// Where the answers come from: the running miner's monitoring API, else its journal.

/** --stats-host / --stats-port (where a running miner answers) and --data-dir (its journal, when none does). */
export const monitorFlags = settingFlags([minerSettings.statsHost, minerSettings.statsPort, minerSettings.dataDir])

export interface MonitorTarget {
  readonly host: string
  readonly port: number
  readonly dataDir: string
}

/** A miner that is up answers in milliseconds; waiting longer only delays the fallback to the journal. */
const apiTimeoutMs = 2000

export const minerUrl = (target: Pick<MonitorTarget, "host" | "port">): string =>
  `http://${target.host.includes(":") ? `[${target.host}]` : target.host}:${target.port}`

export const journalFile = (dataDir: string): string => join(dataDir, "journal.sqlite")

/** Where an answer came from, as the human output's first line and the JSON's `source` say. */
export type Source =
  | { readonly _tag: "api"; readonly url: string }
  | { readonly _tag: "journal"; readonly path: string; readonly why: string }

export const describeSource = (source: Source): string =>
  source._tag === "api"
    ? `the miner at ${source.url}`
    : `the journal ${source.path} (${source.why})`

type Json = Record<string, unknown>

type MinerAnswer =
  | { readonly _tag: "answered"; readonly url: string; readonly status: number; readonly body: Json }
  | { readonly _tag: "unanswered"; readonly why: string }

const unanswered = (why: string): MinerAnswer => ({ _tag: "unanswered", why })

/** One GET with node:http (fetch refuses the ports of its "bad ports" list, which a miner may well listen on). */
const httpGet = (url: string, signal: AbortSignal) =>
  new Promise<{ readonly status: number; readonly contentType: string; readonly text: string }>((resolve, reject) => {
    const request = get(url, { headers: { accept: "application/json" }, signal }, (response) => {
      let text = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => (text += chunk))
      response.on("error", reject)
      response.on("end", () =>
        resolve({ status: response.statusCode ?? 0, contentType: response.headers["content-type"] ?? "", text })
      )
    })
    request.on("error", reject)
  })

const reasonOf = (error: unknown): string => {
  const { cause, code, message, name } = (typeof error === "object" && error !== null ? error : {}) as {
    cause?: { name?: unknown }
    code?: unknown
    message?: unknown
    name?: unknown
  }
  if (name === "TimeoutError" || cause?.name === "TimeoutError") return `no answer within ${apiTimeoutMs / 1000} s`
  if (code === "ECONNREFUSED") return "connection refused"
  if (typeof code === "string") return typeof message === "string" ? message : code
  return typeof message === "string" ? message : String(error)
}

/**
 * GET `path` of the monitoring API. Anything but a JSON answer from an r3mes-miner (nothing listening, no answer in
 * time, another program on the port) is `unanswered`, with the reason, so the caller reads the journal instead.
 */
const askMiner = Effect.fnUntraced(function*(
  target: MonitorTarget,
  path: string,
  recognize: (body: Json) => boolean
) {
  const base = minerUrl(target)
  if (target.port === 0) return unanswered("--stats-port is 0; pass the port the miner listens on to ask it")
  const fetched = yield* Effect.tryPromise({
    try: (signal) => httpGet(`${base}${path}`, AbortSignal.any([signal, AbortSignal.timeout(apiTimeoutMs)])),
    catch: reasonOf
  }).pipe(Effect.result)
  if (fetched._tag === "Failure") return unanswered(`no miner answered at ${base}: ${fetched.failure}`)
  const { contentType, status, text } = fetched.success
  const notOurs = unanswered(`${base} answered, but not as an r3mes-miner monitoring API`)
  if (!contentType.startsWith("application/json")) return notOurs
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    return notOurs
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) return notOurs
  const json = body as Json
  const ours = status === 200 ? recognize(json) : typeof json["error"] === "string"
  return ours ? { _tag: "answered", url: base, status, body: json } satisfies MinerAnswer : notOurs
})

/**
 * Runs `read` on the data dir's journal, opened read-only and without the data dir's lock, so it works while a
 * miner runs there. A journal that does not exist is not created: a status query on the wrong directory must not
 * leave an empty journal behind.
 */
const readJournal = <A>(
  target: MonitorTarget,
  why: string,
  read: (journal: Journal["Service"]) => Effect.Effect<A, MiningError>
): Effect.Effect<A, MiningError> => {
  const path = journalFile(target.dataDir)
  if (!existsSync(path)) {
    return Effect.fail(
      new ResourceError({
        message: `no journal in ${target.dataDir}`,
        resource: "journal",
        hint: `${why}; start the miner (r3mes-miner mine) or pass its --data-dir and --stats-port`
      })
    )
  }
  return Journal.use(read).pipe(Effect.provide(SqliteJournal.layer({ path, readOnly: true })))
}

/**
 * Asks the running miner for `path`, else computes the same answer from the journal. `value` is none when the
 * thing asked for does not exist (404). Any other error answer of the API ends the command with its message.
 */
export const askMinerOrJournal = Effect.fnUntraced(function*<A>(
  target: MonitorTarget,
  request: {
    readonly path: string
    readonly recognize: (body: Json) => boolean
    readonly fromJournal: (journal: Journal["Service"]) => Effect.Effect<Option.Option<A>, MiningError>
  }
) {
  const answer = yield* askMiner(target, request.path, request.recognize)
  if (answer._tag === "answered") {
    const source: Source = { _tag: "api", url: answer.url }
    if (answer.status === 200) return { source, value: Option.some<unknown>(answer.body) }
    if (answer.status === 404) return { source, value: Option.none<unknown>() }
    yield* Console.error(
      `r3mes-miner: the miner at ${answer.url} answered ${answer.status} to GET ${request.path}: ${
        String(answer.body["message"] ?? answer.body["error"])
      }`
    )
    return yield* new CliExit({ code: ExitCode.failure })
  }
  const value: Option.Option<unknown> = yield* readJournal(target, answer.why, request.fromJournal)
  const source: Source = { _tag: "journal", path: journalFile(target.dataDir), why: answer.why }
  return { source, value }
})

/** With --json stdout carries only the JSON; that it came from the journal is worth a line on stderr. */
export const noteJsonSource = (source: Source): Effect.Effect<void> =>
  source._tag === "journal" ? Console.error(`r3mes-miner: read ${describeSource(source)}`) : Effect.void

export const printJson = (value: unknown): Effect.Effect<void> => Console.log(JSON.stringify(value, null, 2))

// ---------------------------------------------------------------------------------------------------------------
// Text output.

/** Aligned columns under a header; `right` names the columns aligned right (numbers). The last column is not padded. */
export const table = (
  header: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  options: { readonly indent?: string; readonly right?: ReadonlyArray<number> } = {}
): string => {
  const all = [header, ...rows]
  const widths = header.map((_, column) => Math.max(...all.map((row) => (row[column] ?? "").length)))
  const last = header.length - 1
  return all.map((row) =>
    (options.indent ?? "") + row.map((cell, column) =>
      options.right?.includes(column) === true
        ? cell.padStart(widths[column]!)
        : column === last
        ? cell
        : cell.padEnd(widths[column]!)
    ).join("  ").trimEnd()
  ).join("\n")
}

/** 42s, 3m 12s, 2h 05m, 3d 4h. */
export const formatAge = (seconds: number): string => {
  const s = Math.max(0, Math.floor(seconds))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`
}

/** 850 ms, 3.2 s, then as an age. */
export const formatMs = (ms: number | null | undefined): string => {
  if (ms === null || ms === undefined) return "-"
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`
  return formatAge(ms / 1000)
}

/** `2025-01-02 03:04:05Z`: to the second, still UTC. */
const formatTime = (iso: string): string => iso.replace("T", " ").replace(/\.\d+Z$/, "Z")

const shorten = (text: string, max: number): string => (text.length <= max ? text : `${text.slice(0, max - 1)}…`)

/** `0x1234abcd…ef01`: enough to recognise a hash in a table; the full one is in `status TX_ID`. */
const abbreviate = (hash: string): string => (hash.length <= 16 ? hash : `${hash.slice(0, 10)}…${hash.slice(-4)}`)

const orDash = (value: string | number | null | undefined): string =>
  value === null || value === undefined || value === "" ? "-" : String(value)

const durationMs = (r: TransactionRecord): number => Date.parse(r.updated_at) - Date.parse(r.created_at)

/** The short story of a transaction, for the list: where it committed, or where and why it did not. */
const outcome = (r: TransactionRecord): string => {
  if (r.state === "committed") {
    const where = r.block_number === null ? "" : `block ${r.block_number} `
    const hash = r.blockchain_tx_hash === null ? "" : `tx ${abbreviate(r.blockchain_tx_hash)}`
    return `${where}${hash}${r.task_completed ? "" : " (task not marked complete)"}`.trim()
  }
  if (r.state === "failed" || r.state === "rolled_back") {
    return shorten(`at ${r.failed_step ?? "start"}: [${r.error_category ?? "unknown"}] ${r.error_message ?? ""}`.trim(), 80)
  }
  return "in flight, or left for recovery at the next start"
}

export const renderList = (
  records: ReadonlyArray<TransactionRecord>,
  options: { readonly state: TransactionState | null; readonly limit: number }
): string => {
  const filter = options.state === null ? "" : ` in state ${options.state}`
  if (records.length === 0) return `no transactions${filter}`
  const rows = records.map((r) => [
    r.transaction_id,
    r.state,
    r.round_id,
    String(r.chunk_id),
    formatTime(r.created_at),
    formatAge(r.age_seconds),
    isTerminal(r.state) ? formatMs(durationMs(r)) : "-",
    outcome(r)
  ])
  const more = records.length === options.limit ? `; --limit ${options.limit} shown, raise it for more` : ""
  return [
    table(["TRANSACTION", "STATE", "ROUND", "CHUNK", "CREATED", "AGE", "DURATION", "OUTCOME"], rows, { right: [2, 3, 5, 6] }),
    "",
    `${records.length} transaction${records.length === 1 ? "" : "s"}${filter}, newest first${more}`
  ].join("\n")
}

/** An event's detail on one line: a signed transaction shows as its hash and nonce, not its raw bytes. */
const eventDetail = (event: JournalEvent): string => {
  if (event.detail === null) return ""
  if (event.event === SUBMIT_INTENT) {
    try {
      const intent = JSON.parse(event.detail) as { hash?: unknown; nonce?: unknown }
      if (typeof intent.hash === "string") return `signed tx ${intent.hash} (nonce ${String(intent.nonce)})`
    } catch {
      // shown as it is, shortened, below
    }
  }
  return shorten(event.detail.replace(/\s+/g, " "), 100)
}

export const renderTransaction = (r: TransactionRecord, events: ReadonlyArray<JournalEvent>): string => {
  const fields: Array<[string, string]> = [
    ["key", r.key],
    ["round / chunk", `${r.round_id} / ${r.chunk_id}`],
    ["created", `${formatTime(r.created_at)} (${formatAge(r.age_seconds)} ago)`],
    ["updated", formatTime(r.updated_at)],
    ["gradient hash", orDash(r.gradient_hash)],
    ["loss", r.loss_before === null || r.loss_after === null ? "-" : `${r.loss_before.toFixed(4)} → ${r.loss_after.toFixed(4)}`],
    ["ipfs cid", orDash(r.ipfs_hash)],
    ["pow nonce", orDash(r.pow_nonce)],
    ["chain tx", `${orDash(r.blockchain_tx_hash)}${r.block_number === null ? "" : ` (block ${r.block_number})`}`],
    ["task completed", r.task_completed ? "yes" : "no"]
  ]
  if (r.error_category !== null || r.error_message !== null) {
    fields.push(["error", `at ${r.failed_step ?? "start"}: [${r.error_category ?? "unknown"}] ${r.error_message ?? ""}`.trim()])
  }
  const width = Math.max(...fields.map(([name]) => name.length))
  const lines = [
    `${r.transaction_id}  ${r.state}`,
    ...fields.map(([name, value]) => `  ${name.padEnd(width)}  ${value}`),
    "",
    table(
      ["STEP", "DONE", "ATTEMPTS", "TIME"],
      steps.map((step) => [step, r.progress[step] ? "yes" : "no", String(r.attempts[step]), formatMs(r.step_ms[step])]),
      { indent: "  ", right: [2, 3] }
    )
  ]
  if (r.rollback_actions.length > 0) {
    lines.push(
      "",
      "  Rollback",
      table(
        ["ACTION", "TARGET", "STATUS", "AT", "ERROR"],
        r.rollback_actions.map((a) => [a.action, a.target, a.status, formatTime(a.at), a.error ?? ""]),
        { indent: "  " }
      )
    )
  }
  lines.push("", `  History (${events.length} event${events.length === 1 ? "" : "s"}, oldest first)`)
  lines.push(
    events.length === 0
      ? "  none recorded"
      : table(["AT", "STATE", "EVENT", "DETAIL"], events.map((e) => [e.at, e.state, e.event, eventDetail(e)]), { indent: "  " })
  )
  return lines.join("\n")
}

// ---------------------------------------------------------------------------------------------------------------
// The command.

const maxLimit = 1000

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

const isRecordJson = (body: Json): boolean => typeof body["transaction_id"] === "string"

const showTransaction = Effect.fnUntraced(function*(
  target: MonitorTarget,
  id: string,
  options: { readonly json: boolean; readonly events: boolean }
) {
  const withEvents = !options.json || options.events
  const found = yield* askMinerOrJournal(target, {
    path: `/transaction/${encodeURIComponent(id)}${withEvents ? "?events=true" : ""}`,
    recognize: isRecordJson,
    fromJournal: (journal) =>
      Effect.gen(function*() {
        const record = yield* journal.get(id)
        if (record === undefined) return Option.none()
        // As the API shows it: the age relative to the reader's clock.
        const shown = withAge(record, yield* Clock.currentTimeMillis)
        return Option.some(withEvents ? { ...shown, events: yield* journal.events(id) } : shown)
      })
  })
  if (Option.isNone(found.value)) {
    const where = found.source._tag === "api" ? `at ${found.source.url}` : `in the journal ${found.source.path}`
    yield* Console.error(`r3mes-miner: no transaction ${id} ${where}`)
    return yield* new CliExit({ code: ExitCode.failure })
  }
  if (options.json) {
    yield* noteJsonSource(found.source)
    return yield* printJson(found.value.value)
  }
  const { events: history = [], ...record } = found.value.value as TransactionRecord & {
    readonly events?: ReadonlyArray<JournalEvent>
  }
  yield* Console.log(`source: ${describeSource(found.source)}\n\n${renderTransaction(record, history)}`)
})

const listTransactions = Effect.fnUntraced(function*(
  target: MonitorTarget,
  options: { readonly json: boolean; readonly state: TransactionState | null; readonly limit: number }
) {
  const query = new URLSearchParams({ limit: String(options.limit) })
  if (options.state !== null) query.set("state", options.state)
  const found = yield* askMinerOrJournal(target, {
    path: `/transactions?${query}`,
    recognize: (body) => Array.isArray(body["transactions"]),
    fromJournal: (journal) =>
      Effect.gen(function*() {
        const records = yield* journal.list({ state: options.state ?? undefined, limit: options.limit })
        const now = yield* Clock.currentTimeMillis
        return Option.some({
          transactions: records.map((r) => withAge(r, now)),
          count: records.length,
          state: options.state,
          limit: options.limit
        })
      })
  })
  const listed = Option.getOrElse(found.value, () => ({ transactions: [] })) as {
    readonly transactions: ReadonlyArray<TransactionRecord>
  }
  if (options.json) {
    yield* noteJsonSource(found.source)
    return yield* printJson(listed)
  }
  yield* Console.log(`source: ${describeSource(found.source)}\n\n${renderList(listed.transactions, options)}`)
})

/** Reads --stats-host, --stats-port and --data-dir (flags over env over defaults), validated as for `mine`. */
export const loadMonitorTarget = Effect.fnUntraced(function*(values: SettingFlagValues) {
  const { config } = yield* loadSettings(values)
  return { host: config.statsHost, port: config.statsPort, dataDir: config.dataDir } satisfies MonitorTarget
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
      "--stats-port); when none answers within 2 s, reads the journal in --data-dir instead (never creating it). " +
      "Exit codes: 0 shown, 1 unknown TX_ID or no journal, 2 invalid usage."
  ),
  Command.withExamples([
    { command: "r3mes-miner status", description: "The latest 20 transactions" },
    { command: "r3mes-miner status --state rolled_back --limit 5", description: "The latest 5 rolled back" },
    { command: "r3mes-miner status tx-3-17-9f2c4e1a", description: "One transaction, with its history" },
    { command: "r3mes-miner status tx-3-17-9f2c4e1a --json --events", description: "The same, as the API's JSON" }
  ])
)
