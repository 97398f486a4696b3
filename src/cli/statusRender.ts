import { SUBMIT_INTENT } from "../domain/intents.ts"
import type { TransactionRecord } from "../domain/TransactionRecord.ts"
import { isTerminal, steps, type TransactionState } from "../domain/TransactionState.ts"
import type { JournalEvent } from "../services/Journal.ts"
import { abbreviate, formatAge, formatMs, formatTime, orDash, shorten, table } from "./render.ts"

/** The text output of `status`: the list of transactions, and one transaction with its history. */

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
  options: {
    readonly state: TransactionState | null
    readonly limit: number
    /** How many there are in all (in `state`), counted up to `maxLimit`; `maxLimit` means that many or more. */
    readonly total?: number | undefined
    readonly maxLimit?: number | undefined
  }
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
  return [
    table(["TRANSACTION", "STATE", "ROUND", "CHUNK", "CREATED", "AGE", "DURATION", "OUTCOME"], rows, { right: [2, 3, 5, 6] }),
    "",
    listFooter(records.length, { ...options, filter })
  ].join("\n")
}

/** "the newest 20 of 40 transactions" when the list is cut by --limit, else how many there are. */
export const listFooter = (
  shown: number,
  options: {
    readonly limit: number
    readonly filter: string
    readonly total?: number | undefined
    readonly maxLimit?: number | undefined
  }
): string => {
  const plural = (n: number) => `transaction${n === 1 ? "" : "s"}`
  const total = options.total ?? shown
  if (shown < options.limit || total <= shown) return `${shown} ${plural(shown)}${options.filter}, newest first`
  const atLeast = options.maxLimit !== undefined && total >= options.maxLimit
  const more = atLeast ? `${total} or more` : String(total)
  const raise = options.maxLimit !== undefined && shown >= options.maxLimit
    ? "the API lists at most " + options.maxLimit
    : `--limit N for more${options.maxLimit === undefined ? "" : `, up to ${options.maxLimit}`}`
  return `the newest ${shown} of ${more} ${plural(total)}${options.filter} (${raise})`
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

export const renderTransaction = (
  r: TransactionRecord & { readonly verdict?: string },
  events: ReadonlyArray<JournalEvent>
): string => {
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
    ["task completed", r.task_completed ? "yes" : "no"],
    ...(r.verdict === undefined ? [] : [["verdict", r.verdict] as [string, string]])
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
