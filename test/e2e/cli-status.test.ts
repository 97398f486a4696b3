import { existsSync, mkdtempSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Layer, Logger, Metric } from "effect"
import { Task } from "../../src/domain/mining.ts"
import { newRecord, type TransactionRecord } from "../../src/domain/TransactionRecord.ts"
import type { TransactionState } from "../../src/domain/TransactionState.ts"
import { MonitoringApi } from "../../src/layers/http/MonitoringApi.ts"
import { SqliteJournal } from "../../src/layers/journal/SqliteJournal.ts"
import { Journal } from "../../src/services/Journal.ts"
import { MiningCoordinator } from "../../src/services/MiningCoordinator.ts"
import { harness } from "../support/harness.ts"
import { cli as runCli } from "../support/cli.ts"

/** Asynchronous: the monitoring API the CLI asks may be served by this very process. */
const cli = (args: ReadonlyArray<string>) => runCli(args, { timeoutMs: 60_000 })

/** A port nothing listens on (taken, then released): the CLI finds no miner there and reads the journal. */
const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

/** Fields that depend on when they are read. */
const volatile = new Set(["age_seconds", "uptime_seconds", "transactions_per_minute", "committed_per_minute"])
const stable = (value: unknown): unknown =>
  Array.isArray(value)
    ? value.map(stable)
    : typeof value === "object" && value !== null
    ? Object.fromEntries(Object.entries(value).filter(([k]) => !volatile.has(k)).map(([k, v]) => [k, stable(v)]))
    : value

// ---------------------------------------------------------------------------------------------------------------
// A journal written by an earlier miner process (one transaction of it spans a restart).

const t0 = Date.parse("2025-03-01T10:00:00.000Z")
const at = (offsetMs: number) => new Date(t0 + offsetMs).toISOString()

interface Fixture {
  readonly record: TransactionRecord
  readonly events: ReadonlyArray<{ readonly at: number; readonly state: TransactionState; readonly event: string; readonly detail: string | null }>
}

const base = (id: string, chunkId: number, createdMs: number) =>
  newRecord({ transactionId: id, key: `31337:0xregistry:0xminer:1:${chunkId}`, roundId: 1n, chunkId, nowMs: t0 + createdMs })

const walk = (from: number, path: ReadonlyArray<TransactionState>, stepMs = 1000) =>
  path.slice(1).map((state, i) => ({ at: from + (i + 1) * stepMs, state, event: "state_changed", detail: `${path[i]} → ${state}` }))

const committedA: Fixture = {
  record: {
    ...base("tx-1-1-aaaa0001", 1, 0),
    state: "committed",
    updated_at: at(4000),
    gradient_hash: `0x${"ab".repeat(32)}`,
    loss_before: 2.3,
    loss_after: 1.9,
    ipfs_hash: "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
    pow_nonce: "12345",
    blockchain_tx_hash: `0x${"cd".repeat(32)}`,
    block_number: 42,
    task_completed: true,
    attempts: { training: 1, ipfs_upload: 2, blockchain_submit: 1, task_complete: 1 },
    progress: { training: true, ipfs_upload: true, blockchain_submit: true, task_complete: true },
    step_ms: { training: 1000, ipfs_upload: 200, blockchain_submit: 2500, task_complete: 300 }
  },
  events: [
    { at: 0, state: "pending", event: "created", detail: "round 1 chunk 1" },
    ...walk(0, ["pending", "training", "ipfs_upload", "blockchain_submit", "task_complete", "committed"], 800)
  ]
}

/** Committed by the next process after a restart: pinned and signed before, resumed and finished after. */
const restartedB: Fixture = {
  record: {
    ...base("tx-1-2-bbbb0002", 2, 10_000),
    state: "committed",
    updated_at: at(70_000),
    gradient_hash: `0x${"ef".repeat(32)}`,
    ipfs_hash: "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
    pow_nonce: "999",
    blockchain_tx_hash: `0x${"12".repeat(32)}`,
    block_number: 43,
    task_completed: false,
    attempts: { training: 1, ipfs_upload: 1, blockchain_submit: 1, task_complete: 3 },
    progress: { training: true, ipfs_upload: true, blockchain_submit: true, task_complete: false },
    step_ms: { training: 1200, ipfs_upload: 300, blockchain_submit: 2000, task_complete: null }
  },
  events: [
    { at: 10_000, state: "pending", event: "created", detail: "round 1 chunk 2" },
    ...walk(10_000, ["pending", "training", "ipfs_upload"]),
    { at: 12_500, state: "ipfs_upload", event: "pin_intent", detail: "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG" },
    { at: 13_000, state: "blockchain_submit", event: "state_changed", detail: "ipfs_upload → blockchain_submit" },
    {
      at: 13_500,
      state: "blockchain_submit",
      event: "submit_intent",
      detail: JSON.stringify({ hash: `0x${"12".repeat(32)}`, raw: `0x${"f8".repeat(120)}`, nonce: 7 })
    },
    // The process died here; the next one recovered the transaction from the journal.
    { at: 65_000, state: "blockchain_submit", event: "resumed", detail: "blockchain_submit" },
    { at: 66_000, state: "task_complete", event: "state_changed", detail: "blockchain_submit → task_complete" },
    { at: 70_000, state: "committed", event: "state_changed", detail: "task_complete → committed" }
  ]
}

const rolledBackC: Fixture = {
  record: {
    ...base("tx-1-3-cccc0003", 3, 20_000),
    state: "rolled_back",
    updated_at: at(25_000),
    failed_step: "ipfs_upload",
    error_category: "network",
    error_message: "IPFS: connection refused",
    rollback_actions: [{ action: "unpin", target: "QmcAfz6ph7Zz8b5RS8NgzCnYR5FYH8xVbGg45FMd4MpgfB", status: "done", error: null, at: at(24_500) }],
    attempts: { training: 1, ipfs_upload: 4, blockchain_submit: 0, task_complete: 0 },
    progress: { training: true, ipfs_upload: false, blockchain_submit: false, task_complete: false },
    step_ms: { training: 900, ipfs_upload: null, blockchain_submit: null, task_complete: null }
  },
  events: [
    { at: 20_000, state: "pending", event: "created", detail: "round 1 chunk 3" },
    ...walk(20_000, ["pending", "training", "ipfs_upload", "rolled_back"], 1500)
  ]
}

const failedD: Fixture = {
  record: {
    ...base("tx-1-4-dddd0004", 4, 30_000),
    state: "failed",
    updated_at: at(31_000),
    failed_step: "training",
    error_category: "validation",
    error_message: "malformed model weights",
    attempts: { training: 1, ipfs_upload: 0, blockchain_submit: 0, task_complete: 0 }
  },
  events: [
    { at: 30_000, state: "pending", event: "created", detail: "round 1 chunk 4" },
    ...walk(30_000, ["pending", "training", "failed"], 500)
  ]
}

/** Left in flight by a process that stopped: recovered at the next start. */
const inFlightE: Fixture = {
  record: { ...base("tx-1-5-eeee0005", 5, 80_000), state: "training", updated_at: at(81_000) },
  events: [
    { at: 80_000, state: "pending", event: "created", detail: "round 1 chunk 5" },
    ...walk(80_000, ["pending", "training"])
  ]
}

const fixtures = [committedA, restartedB, rolledBackC, failedD, inFlightE]

const writeJournal = (dataDir: string) =>
  Effect.gen(function*() {
    const journal = yield* Journal
    for (const { events, record } of fixtures) {
      for (const event of events) {
        yield* journal.save(record, { ...event, at: at(event.at) })
      }
    }
  }).pipe(Effect.provide(SqliteJournal.layer({ path: join(dataDir, "journal.sqlite") })))

describe("r3mes-miner status / stats on the journal (no miner running)", () => {
  let dataDir = ""
  let flags: ReadonlyArray<string> = []

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "r3mes-status-"))
    await Effect.runPromise(writeJournal(dataDir))
    flags = ["--data-dir", dataDir, "--stats-port", String(await freePort())]
  })

  it("status lists the latest transactions, newest first, as a table", async () => {
    const run = await cli(["status", ...flags])
    assert.strictEqual(run.status, 0, run.stderr)
    const lines = run.stdout.split("\n")
    assert.include(lines[0], `source: the journal ${join(dataDir, "journal.sqlite")}`)
    assert.include(lines[0], "connection refused")
    const header = lines.findIndex((line) => line.startsWith("TRANSACTION"))
    assert.isAbove(header, 0)
    assert.match(lines[header]!, /^TRANSACTION\s+STATE\s+ROUND\s+CHUNK\s+CREATED\s+AGE\s+DURATION\s+OUTCOME$/)
    const ids = lines.slice(header + 1, header + 6).map((line) => line.split(/\s+/)[0])
    assert.deepStrictEqual(ids, ["tx-1-5-eeee0005", "tx-1-4-dddd0004", "tx-1-3-cccc0003", "tx-1-2-bbbb0002", "tx-1-1-aaaa0001"])
    assert.match(run.stdout, /tx-1-1-aaaa0001\s+committed\s+1\s+1\s+2025-03-01 10:00:00Z .* 4\.0 s\s+block 42 tx 0xcdcdcdcd…cdcd$/m)
    assert.match(run.stdout, /tx-1-3-cccc0003\s+rolled_back .* at ipfs_upload: \[network\] IPFS: connection refused/)
    assert.include(run.stdout, "5 transactions, newest first")
  })

  it("status --state and --limit filter the list; --json is GET /transactions's shape", async () => {
    const [committed, limited, asJson] = await Promise.all([
      cli(["status", "--state", "committed", ...flags]),
      cli(["status", "--limit", "2", ...flags]),
      cli(["status", "--json", "--state", "committed", ...flags])
    ])
    assert.strictEqual(committed.status, 0, committed.stderr)
    assert.include(committed.stdout, "tx-1-1-aaaa0001")
    assert.include(committed.stdout, "tx-1-2-bbbb0002")
    assert.notInclude(committed.stdout, "tx-1-3-cccc0003")
    assert.include(committed.stdout, "2 transactions in state committed")

    assert.strictEqual(limited.status, 0, limited.stderr)
    assert.include(limited.stdout, "tx-1-5-eeee0005")
    assert.include(limited.stdout, "tx-1-4-dddd0004")
    assert.notInclude(limited.stdout, "tx-1-3-cccc0003")
    // The total, not only how many were shown (issue 15: "20 transactions" when 40 exist).
    assert.include(limited.stdout, "the newest 2 of 5 transactions (--limit N for more, up to 1000)")

    assert.strictEqual(asJson.status, 0, asJson.stderr)
    const body = JSON.parse(asJson.stdout)
    assert.strictEqual(body.count, 2)
    assert.strictEqual(body.state, "committed")
    assert.strictEqual(body.limit, 20)
    assert.deepStrictEqual(stable(body.transactions), stable([restartedB.record, committedA.record]))
    assert.include(asJson.stderr, "read the journal")
  })

  it("status TX_ID shows the record, its steps and its whole history, from before and after the restart", async () => {
    const run = await cli(["status", "tx-1-2-bbbb0002", ...flags])
    assert.strictEqual(run.status, 0, run.stderr)
    assert.match(run.stdout, /^tx-1-2-bbbb0002 {2}committed$/m)
    assert.match(run.stdout, /^ {2}chain tx\s+0x(12){32} \(block 43\)$/m)
    assert.match(run.stdout, /^ {2}task completed\s+no$/m)
    assert.match(run.stdout, /^ {2}task_complete\s+no\s+3\s+-$/m)
    assert.include(run.stdout, "History (9 events, oldest first)")
    const history = run.stdout.split("\n").filter((line) => /^ {2}2025-03-01T/.test(line))
    assert.deepStrictEqual(
      history.map((line) => line.trim().split(/\s+/).slice(0, 3)),
      [
        ["2025-03-01T10:00:10.000Z", "pending", "created"],
        ["2025-03-01T10:00:11.000Z", "training", "state_changed"],
        ["2025-03-01T10:00:12.000Z", "ipfs_upload", "state_changed"],
        ["2025-03-01T10:00:12.500Z", "ipfs_upload", "pin_intent"],
        ["2025-03-01T10:00:13.000Z", "blockchain_submit", "state_changed"],
        ["2025-03-01T10:00:13.500Z", "blockchain_submit", "submit_intent"],
        ["2025-03-01T10:01:05.000Z", "blockchain_submit", "resumed"],
        ["2025-03-01T10:01:06.000Z", "task_complete", "state_changed"],
        ["2025-03-01T10:01:10.000Z", "committed", "state_changed"]
      ]
    )
    // The signed transaction shows as its hash and nonce, not its raw bytes.
    assert.include(run.stdout, `signed tx 0x${"12".repeat(32)} (nonce 7)`)
    assert.notInclude(run.stdout, "f8f8f8f8")

    const rolledBack = await cli(["status", "tx-1-3-cccc0003", ...flags])
    assert.match(rolledBack.stdout, /^ {2}error\s+at ipfs_upload: \[network\] IPFS: connection refused$/m)
    assert.match(rolledBack.stdout, /^ {2}unpin\s+QmcAfz6ph7Zz8b5RS8NgzCnYR5FYH8xVbGg45FMd4MpgfB\s+done\s+2025-03-01 10:00:24Z$/m)
  })

  it("status TX_ID --json is the record; --events adds the history", async () => {
    const [plain, withEvents] = await Promise.all([
      cli(["status", "tx-1-2-bbbb0002", "--json", ...flags]),
      cli(["status", "tx-1-2-bbbb0002", "--json", "--events", ...flags])
    ])
    assert.strictEqual(plain.status, 0, plain.stderr)
    const record = JSON.parse(plain.stdout)
    assert.deepStrictEqual({ ...record, age_seconds: 0 }, restartedB.record)
    assert.isAbove(record.age_seconds, 0)

    const { events, ...rest } = JSON.parse(withEvents.stdout)
    assert.deepStrictEqual({ ...rest, age_seconds: 0 }, restartedB.record)
    assert.deepStrictEqual(
      events,
      restartedB.events.map((e) => ({ transaction_id: "tx-1-2-bbbb0002", ...e, at: at(e.at) }))
    )
  })

  it("an unknown TX_ID is one line, a hint and exit 1", async () => {
    const run = await cli(["status", "tx-9-9-nope", ...flags])
    assert.strictEqual(run.status, 1)
    assert.deepStrictEqual(run.stderrLines, [
      `r3mes-miner: no transaction tx-9-9-nope in the journal ${join(dataDir, "journal.sqlite")}`,
      "hint: check the id (tx-<round>-<chunk>-<suffix>) against the latest, listed by `r3mes-miner status`; " +
      "a transaction of another miner is in that miner's --data-dir"
    ])
    assert.strictEqual(run.stdout, "")
  })

  it("stats --json computes the statistics from the records", async () => {
    const run = await cli(["stats", "--json", ...flags])
    assert.strictEqual(run.status, 0, run.stderr)
    const body = JSON.parse(run.stdout)
    assert.strictEqual(body.source, "journal")
    assert.strictEqual(body.journal, join(dataDir, "journal.sqlite"))
    const s = body.atomic_coordinator
    assert.strictEqual(s.total_transactions, 5)
    assert.strictEqual(s.active_transactions, 1)
    assert.strictEqual(s.committed, 2)
    assert.strictEqual(s.failed, 1)
    assert.strictEqual(s.rolled_back, 1)
    assert.strictEqual(s.success_rate, 0.5)
    assert.strictEqual(s.failure_rate, 0.25)
    assert.strictEqual(s.rollback_rate, 0.25)
    assert.strictEqual(s.task_completion_failures, 1)
    assert.deepStrictEqual(s.state_distribution, {
      pending: 0,
      training: 1,
      ipfs_upload: 0,
      blockchain_submit: 0,
      task_complete: 0,
      committed: 2,
      failed: 1,
      rolled_back: 1
    })
    assert.deepStrictEqual(s.error_breakdown, {
      network: 1,
      retryable: 0,
      timeout: 0,
      authentication: 0,
      resource: 0,
      validation: 1,
      chain_revert: 0,
      interrupted: 0,
      chain_lost: 0,
      unknown: 0
    })
    assert.deepStrictEqual(s.latency_ms.training, { count: 3, mean_ms: 1033.3333333333333, p50_ms: 1000, p95_ms: 1200, p99_ms: 1200, max_ms: 1200 })
    assert.deepStrictEqual(s.latency_ms.blockchain_submit, { count: 2, mean_ms: 2250, p50_ms: 2000, p95_ms: 2500, p99_ms: 2500, max_ms: 2500 })
    assert.strictEqual(s.latency_ms.task_complete.count, 1)
    assert.deepStrictEqual([s.latency_ms.total.count, s.latency_ms.total.p50_ms, s.latency_ms.total.max_ms], [4, 4000, 60_000])
    assert.deepStrictEqual(s.retries, { training: 0, ipfs_upload: 4, blockchain_submit: 0, task_complete: 2, total: 6 })
    assert.deepStrictEqual(s.rollbacks, { transactions: 1, compensations_done: 1, compensations_failed: 0 })
    // The minute ending at the last update (10:01:21): B, C and D finished in it, B committed.
    assert.strictEqual(s.window_seconds, 60)
    assert.strictEqual(s.window_ends_at, at(81_000))
    assert.strictEqual(s.transactions_per_minute, 3)
    assert.strictEqual(s.committed_per_minute, 1)
  })

  it("stats prints a readable summary", async () => {
    const run = await cli(["stats", ...flags])
    assert.strictEqual(run.status, 0, run.stderr)
    assert.include(run.stdout.split("\n")[0], "source: the journal")
    assert.match(run.stdout, /^ {2}committed\s+2 \(50\.0%\)$/m)
    assert.match(run.stdout, /^ {2}errors\s+network 1, validation 1$/m)
    assert.match(run.stdout, /^ {2}STEP\s+COUNT\s+MEAN\s+P50\s+P95\s+P99\s+MAX$/m)
    assert.match(run.stdout, /^ {2}training\s+3\s+1033\s+1000\s+1200\s+1200\s+1200$/m)
  })

  it("no journal in the data dir: one line and a hint, exit 1, and no journal created", async () => {
    const empty = mkdtempSync(join(tmpdir(), "r3mes-status-empty-"))
    const port = String(await freePort())
    for (const args of [["status"], ["status", "tx-1-1-aaaa0001"], ["stats", "--json"]]) {
      const run = await cli([...args, "--data-dir", empty, "--stats-port", port])
      assert.strictEqual(run.status, 1)
      assert.strictEqual(run.stderrLines[0], `r3mes-miner: no journal in ${empty}`)
      assert.isTrue(run.stderrLines[1]?.startsWith("hint: no miner answered at http://127.0.0.1:"), run.stderr)
      assert.strictEqual(run.stderrLines.length, 2, run.stderr)
      assert.strictEqual(run.stdout, "")
    }
    assert.isFalse(existsSync(join(empty, "journal.sqlite")))
  })

  it("--limit out of range is a usage error", async () => {
    const run = await cli(["status", "--limit", "0", ...flags])
    assert.strictEqual(run.status, 2)
    assert.strictEqual(run.stderrLines[0], "--limit 0 is invalid: expected an integer from 1 to 1000")
  })
})

// ---------------------------------------------------------------------------------------------------------------
// A running miner: the monitoring API on the in-memory ports, in this process.

const task = (chunkId: number) =>
  new Task({
    roundId: 1n,
    chunkId,
    modelCid: "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
    spec: "{}",
    difficulty: 16,
    leaseExpiry: 4_000_000_000,
    deadline: 4_000_000_000
  })

const runningMiner = MonitoringApi.layer({ miner: { chain: { chain_id: 31337 } } }).pipe(
  Layer.provideMerge(harness()),
  Layer.provideMerge(Layer.sync(Metric.MetricRegistry, () => new Map())),
  Layer.provideMerge(Logger.layer([]))
)

const getJson = (url: string) => Effect.promise((): Promise<unknown> => fetch(url).then((response) => response.json()))

describe("r3mes-miner status / stats with a miner running", () => {
  it.live("--json prints what the monitoring API answers; the text shows the API's history", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      const first = yield* coordinator.mine(task(1))
      yield* coordinator.mine(task(2))
      const { port, url } = yield* MonitoringApi
      // A data dir without a journal: every answer below can only have come from the API.
      const flags = ["--stats-port", String(port), "--data-dir", mkdtempSync(join(tmpdir(), "r3mes-status-api-"))]
      const id = first.transaction_id

      const [status, list, stats, text, statsText, unknown, limited] = yield* Effect.promise(() =>
        Promise.all([
          cli(["status", id, "--json", ...flags]),
          cli(["status", "--json", "--limit", "5", ...flags]),
          cli(["stats", "--json", ...flags]),
          cli(["status", id, ...flags]),
          cli(["stats", ...flags]),
          cli(["status", "tx-9-9-nope", ...flags]),
          cli(["status", "--limit", "1", ...flags])
        ])
      )

      assert.strictEqual(status.status, 0, status.stderr)
      assert.strictEqual(status.stderr, "")
      assert.deepStrictEqual(stable(JSON.parse(status.stdout)), stable(yield* getJson(`${url}/transaction/${id}`)))

      assert.strictEqual(list.status, 0, list.stderr)
      const listed = JSON.parse(list.stdout)
      assert.strictEqual(listed.count, 2)
      assert.deepStrictEqual(stable(listed), stable(yield* getJson(`${url}/transactions?limit=5`)))

      assert.strictEqual(stats.status, 0, stats.stderr)
      const { source, ...statsBody } = JSON.parse(stats.stdout)
      assert.strictEqual(source, "api")
      const apiStats = yield* getJson(`${url}/stats`)
      assert.deepStrictEqual(stable(statsBody), stable(apiStats))
      assert.strictEqual(statsBody.atomic_coordinator.committed, 2)
      assert.deepStrictEqual(statsBody.miner.chain, { chain_id: 31337 })

      assert.strictEqual(text.status, 0, text.stderr)
      assert.include(text.stdout, `source: the miner at ${url}`)
      assert.match(text.stdout, new RegExp(`^${id} {2}committed$`, "m"))
      const withEvents = (yield* getJson(`${url}/transaction/${id}?events=true`)) as { events: ReadonlyArray<{ at: string }> }
      const events = withEvents.events
      assert.include(text.stdout, `History (${events.length} events, oldest first)`)
      for (const event of events) assert.include(text.stdout, event.at)

      assert.strictEqual(statsText.status, 0, statsText.stderr)
      assert.include(statsText.stdout, `source: the miner at ${url}`)
      assert.match(statsText.stdout, /^ {2}committed\s+2 \(100\.0%\)$/m)
      assert.match(statsText.stdout, /^ {2}circuit breakers\s+chain closed, ipfs closed$/m)

      assert.strictEqual(unknown.status, 1)
      assert.deepStrictEqual(unknown.stderrLines, [
        `r3mes-miner: no transaction tx-9-9-nope at ${url}`,
        "hint: check the id (tx-<round>-<chunk>-<suffix>) against the latest, listed by `r3mes-miner status`"
      ])

      assert.strictEqual(limited.status, 0, limited.stderr)
      assert.include(limited.stdout, "the newest 1 of 2 transactions (--limit N for more, up to 1000)")
    }).pipe(Effect.provide(runningMiner)), 60_000)
})

// ---------------------------------------------------------------------------------------------------------------
// fetch refuses the ports of the Fetch standard's "bad ports" list; a miner may listen on one, and is reached there.

const fetchBadPorts = [10080, 6665, 6666, 6667, 6668, 6669, 6000, 6566, 6697]

/** The first of `ports` free on 127.0.0.1 now, if any. */
const firstFree = async (ports: ReadonlyArray<number>): Promise<number | undefined> => {
  for (const port of ports) {
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer()
      server.once("error", () => resolve(false))
      server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
    })
    if (free) return port
  }
  return undefined
}

describe("r3mes-miner stats with a miner on a port fetch refuses", () => {
  it.live("reads the miner there (node:http, not fetch)", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(() => firstFree(fetchBadPorts))
      if (port === undefined) return // every one of them is taken on this machine: nothing to show here
      yield* Effect.gen(function*() {
        const { url } = yield* MonitoringApi
        // The premise: fetch will not even try.
        const refused = yield* Effect.promise(() => fetch(`${url}/stats`).then(() => false, () => true))
        assert.isTrue(refused)
        const run = yield* Effect.promise(() =>
          cli(["stats", "--json", "--stats-port", String(port), "--data-dir", mkdtempSync(join(tmpdir(), "r3mes-status-badport-"))])
        )
        assert.strictEqual(run.status, 0, run.stderr)
        assert.strictEqual(JSON.parse(run.stdout).source, "api")
      }).pipe(
        Effect.provide(
          MonitoringApi.layer({ port }).pipe(
            Layer.provideMerge(harness()),
            Layer.provideMerge(Layer.sync(Metric.MetricRegistry, () => new Map())),
            Layer.provideMerge(Logger.layer([]))
          )
        )
      )
    }), 60_000)
})
