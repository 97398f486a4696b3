import { Console, Effect } from "effect"
import { percentile } from "../domain/statistics.ts"
import type { TransactionRecord } from "../domain/TransactionRecord.ts"
import type { TransactionVerdict } from "../app/embeddedVerifier.ts"
import type { MinerRun } from "../app/runMiner.ts"

const ms = (value: number | null) => (value === null ? "-" : `${Math.round(value)}ms`)

const durationMs = (r: TransactionRecord) => Date.parse(r.updated_at) - Date.parse(r.created_at)

/** One line per finished transaction: state, where, loss, step timings. */
export const transactionLine = (r: TransactionRecord): string => {
  const mark = r.state === "committed" ? "✓" : r.state === "failed" || r.state === "rolled_back" ? "✗" : "…"
  const where = `round ${r.round_id} chunk ${r.chunk_id}`
  const loss = r.loss_before === null || r.loss_after === null
    ? ""
    : `  loss ${r.loss_before.toFixed(3)}→${r.loss_after.toFixed(3)}`
  const steps = `train ${ms(r.step_ms.training)} ipfs ${ms(r.step_ms.ipfs_upload)} submit ${
    ms(r.step_ms.blockchain_submit)
  } complete ${ms(r.step_ms.task_complete)}`
  const tail = r.state === "committed"
    ? `${steps}${r.task_completed ? "" : "  (task not marked complete)"}`
    : r.state === "failed" || r.state === "rolled_back"
    ? `at ${r.failed_step ?? "start"}: [${r.error_category}] ${r.error_message}`
    : "submitted, awaiting the chain: the next start settles it"
  return `${mark} ${r.transaction_id.padEnd(22)} ${r.state.padEnd(11)} ${where}${loss}  ${tail}`
}

/** Back to the start of the line and erase it (ANSI EL 2): the bar's line, before something else is written. */
export const clearLine = "\r\x1b[2K"

export const bar = (done: number, total: number | undefined, width = 30): string => {
  if (total === undefined) return `[${done} done]`
  const filled = Math.round((Math.min(done, total) / total) * width)
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done}/${total}`
}

/**
 * Progress for `mine`: on a TTY each transaction's line and a progress bar kept on the last line; otherwise plain
 * lines; nothing on stdout with --json (the summary is the output).
 */
export const makeProgress = (options: {
  readonly tty: boolean
  readonly json: boolean
  readonly iterations: number | undefined
  /** Where the bar and log lines go (default process.stderr). */
  readonly stream?: { readonly write: (text: string) => unknown } | undefined
}) => {
  let done = 0
  /** The bar is on the last line, without a newline: anything else written now would be glued onto it. */
  let barShown = false
  const stream = options.stream ?? process.stderr
  const clearBarNow = () => {
    if (!barShown) return
    stream.write(clearLine)
    barShown = false
  }
  const drawBarNow = () => {
    if (!options.tty || options.json) return
    stream.write(bar(done, options.iterations))
    barShown = true
  }
  const clearBar = Effect.sync(clearBarNow)
  const drawBar = Effect.sync(drawBarNow)
  return {
    /**
     * Writes a log line (ending in a newline) without gluing it onto the bar: the bar is cleared, the line
     * written, the bar drawn again. Give it to the logger's console (FileLoggerOptions.consoleWrite).
     */
    writeLog: (line: string): void => {
      const shown = barShown
      clearBarNow()
      stream.write(line)
      if (shown) drawBarNow()
    },
    onFinished: Effect.fnUntraced(function*(record: TransactionRecord) {
      done++
      if (options.json) return
      yield* clearBar
      yield* Console.log(transactionLine(record))
      yield* drawBar
    }),
    started: (statsUrl: string, recovery: MinerRun["recovery"], chain: string, device: string) =>
      options.json ? Effect.void : Console.log(
        [
          `mining on ${chain}, training on ${device}; monitoring API at ${statsUrl}`,
          recovery.recovered > 0 || recovery.orphan_pins_released.length > 0
            ? `recovered ${recovery.recovered} transactions from the journal (committed ${recovery.committed}, rolled back ${recovery.rolled_back}, failed ${recovery.failed}), released ${recovery.orphan_pins_released.length} orphan pins`
            : "journal clean: nothing to recover"
        ].join("\n")
      ).pipe(Effect.andThen(drawBar)),
    onVerdict: Effect.fnUntraced(function*(verdict: TransactionVerdict) {
      if (options.json) return
      yield* clearBar
      const mark = verdict.verdict.startsWith("accepted") ? "✓" : "✗"
      const which = verdict.transactionId ?? `round ${verdict.roundId} chunk ${verdict.chunkId}`
      yield* Console.log(`  ${mark} verified ${which}: ${verdict.verdict}${verdict.verdict.startsWith("accepted") ? "" : ` (${verdict.reason})`}`)
      yield* drawBar
    }),
    stopping: (inFlight: number) =>
      Effect.andThen(clearBar, Console.error(`stopping: finishing ${inFlight} transactions in flight (signal again to force)`)),
    done: clearBar
  }
}

/** The end-of-run table. */
export const summaryTable = (run: MinerRun): string => {
  const s = run.summary
  const latencies = s.records.filter((r) => r.state === "committed").map(durationMs)
  const rows: Array<[string, string]> = [
    ["transactions", String(s.transactions)],
    ["committed", String(s.committed)],
    ["failed", String(s.failed)],
    ["rolled back", String(s.rolled_back)],
    ...(s.chain_lost > 0 ? [["  of which lost by the chain", String(s.chain_lost)] as [string, string]] : []),
    ...(s.suspended > 0 ? [["left to recovery", String(s.suspended)] as [string, string]] : []),
    ["task completed", String(s.task_completed)],
    ["latency p50 / p95", latencies.length === 0 ? "-" : `${ms(percentile(latencies, 50))} / ${ms(percentile(latencies, 95))}`],
    ["recovered at start", String(run.recovery.recovered)],
    ["orphan pins released", String(run.recovery.orphan_pins_released.length)]
  ]
  if (run.verdicts !== undefined) {
    const verdicts = Object.entries(run.verdicts).map(([name, n]) => `${name} ${n}`).join(", ")
    rows.push(["verdicts", verdicts === "" ? "none yet" : verdicts])
  }
  if (run.latestRound === null) rows.push(["learning", "no round finalized yet"])
  else if (run.latestRound !== undefined) {
    const r = run.latestRound
    const loss = r.testLoss === undefined ? "" : `, loss ${r.testLoss.toFixed(4)}`
    rows.push([
      "learning",
      `round ${r.roundId} finalized: test accuracy ${(r.testAccuracy * 100).toFixed(2)}%${loss} (${r.acceptedCount} gradients)`
    ])
  }
  if (run.interrupted) rows.push(["stopped by", s.interrupted ? "signal, forced" : "signal"])
  const width = Math.max(...rows.map(([k]) => k.length))
  return ["Summary", ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)].join("\n")
}

/** The `--json` output: counts that add up, and each transaction's outcome. */
export const summaryJson = (run: MinerRun, extra: Record<string, unknown>) => ({
  status: run.interrupted ? "interrupted" : "ok",
  ...extra,
  transactions: run.summary.transactions,
  committed: run.summary.committed,
  failed: run.summary.failed,
  rolled_back: run.summary.rolled_back,
  /** Committed, then lost by the chain (a reset devnet, a reorg): counted in rolled_back. */
  chain_lost: run.summary.chain_lost,
  /** Stopped past their commit point by a forced stop: the next start settles them with the chain. */
  left_to_recovery: run.summary.suspended,
  task_completed: run.summary.task_completed,
  /** The embedded devnet's verifier's verdicts on these transactions, by name (absent on another chain). */
  ...(run.verdicts === undefined ? {} : { verdicts: run.verdicts }),
  /** The newest finalized learning round at the end, on the embedded devnet (null: none yet). */
  ...(run.latestRound === undefined ? {} : {
    latest_round: run.latestRound === null ? null : {
      round_id: run.latestRound.roundId.toString(),
      accepted: run.latestRound.acceptedCount,
      test_accuracy: run.latestRound.testAccuracy,
      test_loss: run.latestRound.testLoss ?? null,
      weights_cid: run.latestRound.weightsCid
    }
  }),
  recovery: run.recovery,
  records: run.summary.records.map((r) => ({
    transaction_id: r.transaction_id,
    state: r.state,
    round_id: r.round_id,
    chunk_id: r.chunk_id,
    gradient_hash: r.gradient_hash,
    ipfs_hash: r.ipfs_hash,
    blockchain_tx_hash: r.blockchain_tx_hash,
    block_number: r.block_number,
    task_completed: r.task_completed,
    loss_before: r.loss_before,
    loss_after: r.loss_after,
    error_category: r.error_category,
    error_message: r.error_message,
    step_ms: r.step_ms
  }))
})
