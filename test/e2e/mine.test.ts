import { spawn, spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { startDevnet } from "../../src/layers/chain/devnet/Devnet.ts"
import { SqliteJournal } from "../../src/layers/journal/SqliteJournal.ts"
import { Journal } from "../../src/services/Journal.ts"
import { minerEnv, program } from "../support/cli.ts"

interface Summary {
  readonly status: string
  readonly transactions: number
  readonly committed: number
  readonly failed: number
  readonly rolled_back: number
  readonly task_completed: number
  readonly records: ReadonlyArray<{
    readonly transaction_id: string
    readonly state: string
    readonly round_id: string
    readonly chunk_id: number
    readonly ipfs_hash: string | null
    readonly gradient_hash: string | null
    readonly blockchain_tx_hash: string | null
    readonly loss_before: number | null
    readonly loss_after: number | null
  }>
}

const mine = (dataDir: string, args: ReadonlyArray<string>) => {
  const run = spawnSync(
    process.execPath,
    [program, "mine", "--json", "--data-dir", dataDir, "--stats-port", "0", "--log-file", join(dataDir, "miner.log"), ...args],
    { env: minerEnv(), encoding: "utf8", timeout: 120_000 }
  )
  if (run.error !== undefined) throw run.error
  return run
}

/** The chain the miner left in its data dir, brought back up to read what is on it. */
const onChain = (dataDir: string, records: Summary["records"]) =>
  Effect.gen(function*() {
    const devnet = yield* startDevnet({ dataDir: join(dataDir, "devnet") })
    const { make } = yield* Effect.promise(() => import("../../src/layers/chain/ViemChain.ts"))
    const { Redacted } = yield* Effect.promise(() => import("effect"))
    const chain = yield* make({
      rpcUrl: devnet.rpcUrl,
      registry: devnet.registry,
      privateKey: Redacted.make(devnet.accounts[1]!.privateKey)
    })
    return yield* Effect.forEach(records, (r) => chain.getSubmission(BigInt(r.round_id), r.chunk_id))
  }).pipe(Effect.scoped)

describe("r3mes-miner mine, end to end on the embedded devnet, IPFS node and ONNX trainer", () => {
  it.live("mine --iterations 5 --json: exits 0, the counts add up, the chain and the journal agree", () =>
    Effect.gen(function*() {
      const dataDir = mkdtempSync(join(tmpdir(), "r3mes-e2e-"))
      const run = mine(dataDir, ["--iterations", "5"])
      assert.strictEqual(run.status, 0, run.stderr)
      const summary = JSON.parse(run.stdout) as Summary
      assert.strictEqual(summary.status, "ok")
      assert.strictEqual(summary.transactions, 5)
      assert.strictEqual(summary.committed + summary.failed + summary.rolled_back, summary.transactions)
      assert.strictEqual(summary.committed, 5)
      assert.strictEqual(summary.task_completed, 5)
      // The devnet's verifier ran beside the miner and recomputed every one of them.
      assert.deepStrictEqual((summary as Summary & { verdicts?: unknown }).verdicts, { accepted_exact: 5 })
      for (const r of summary.records) {
        assert.isTrue(r.loss_after! < r.loss_before!, `${r.transaction_id} trained`)
      }
      const submissions = yield* onChain(dataDir, summary.records)
      for (const [i, submission] of submissions.entries()) {
        const record = summary.records[i]!
        const s = Option.getOrThrow(submission)
        assert.strictEqual(s.cid, record.ipfs_hash)
        assert.strictEqual(s.gradientHash, record.gradient_hash)
        assert.isTrue(s.completed)
      }
      const journaled = yield* Effect.gen(function*() {
        const journal = yield* Journal
        return yield* journal.list({})
      }).pipe(Effect.provide(SqliteJournal.layer({ path: join(dataDir, "journal.sqlite") })), Effect.scoped)
      assert.strictEqual(journaled.filter((r) => r.state === "committed").length, 5)
      const log = readFileSync(join(dataDir, "miner.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
      assert.isTrue(log.some((l) => l["logger"] === "atomic_coordinator" && typeof l["transaction_id"] === "string"))

      // A second run on the same data dir goes on: recovery finds nothing to do, the next chunks are mined.
      const again = mine(dataDir, ["--iterations", "2"])
      assert.strictEqual(again.status, 0, again.stderr)
      const second = JSON.parse(again.stdout) as Summary & { recovery: { orphan_pins_released: ReadonlyArray<string> } }
      assert.strictEqual(second.committed, 2)
      // The verifier's reports share the store: they are not the miner's orphans.
      assert.deepStrictEqual(second.recovery.orphan_pins_released, [])
      const firstChunks = new Set(summary.records.map((r) => `${r.round_id}:${r.chunk_id}`))
      for (const r of second.records) assert.isFalse(firstChunks.has(`${r.round_id}:${r.chunk_id}`))
    }), 180_000)

  it.live("SIGTERM mid-run: clean exit, nothing left non-terminal after the next start", () =>
    Effect.gen(function*() {
      const dataDir = mkdtempSync(join(tmpdir(), "r3mes-e2e-"))
      const child = spawn(
        process.execPath,
        [program, "mine", "--json", "--data-dir", dataDir, "--stats-port", "0", "--log-file", join(dataDir, "miner.log")],
        { env: minerEnv(), stdio: ["ignore", "pipe", "pipe"] }
      )
      let stdout = ""
      child.stdout.on("data", (d) => (stdout += d))
      // Let it mine for a while, then ask it to stop.
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 6000)))
      child.kill("SIGTERM")
      const code = yield* Effect.promise(() => new Promise<number | null>((resolve) => child.on("exit", resolve)))
      assert.strictEqual(code, 0)
      const summary = JSON.parse(stdout) as Summary
      assert.strictEqual(summary.status, "interrupted")
      assert.strictEqual(summary.committed + summary.failed + summary.rolled_back, summary.transactions)
      const records = yield* Effect.gen(function*() {
        return yield* (yield* Journal).list({})
      }).pipe(Effect.provide(SqliteJournal.layer({ path: join(dataDir, "journal.sqlite") })), Effect.scoped)
      assert.deepStrictEqual(records.filter((r) => !["committed", "failed", "rolled_back"].includes(r.state)), [])
      const next = mine(dataDir, ["--iterations", "1"])
      assert.strictEqual(next.status, 0, next.stderr)
      assert.strictEqual((JSON.parse(next.stdout) as Summary & { recovery: { recovered: number } }).recovery.recovered, 0)
    }), 180_000)

  it.live("r3mes-miner devnet serves another process: mine --rpc-url --registry with a devnet key commits", () =>
    Effect.gen(function*() {
      const devnetDir = mkdtempSync(join(tmpdir(), "r3mes-devnet-cli-"))
      const devnet = spawn(process.execPath, [program, "devnet", "--port", "0", "--data-dir", devnetDir], {
        env: minerEnv(),
        stdio: ["ignore", "pipe", "pipe"]
      })
      const info = yield* Effect.promise(() =>
        new Promise<{ rpc_url: string; registry: string; accounts: Array<{ address: string; private_key: string }> }>(
          (resolve, reject) => {
            let out = ""
            devnet.stdout.on("data", (d) => {
              out += d
              if (out.includes("\n")) resolve(JSON.parse(out.split("\n")[0]!))
            })
            devnet.on("exit", (code) => reject(new Error(`devnet exited with ${code}`)))
          }
        )
      )
      yield* Effect.addFinalizer(() =>
        Effect.promise(() => new Promise<void>((resolve) => {
          devnet.on("exit", () => resolve())
          devnet.kill("SIGTERM")
        }))
      )
      assert.strictEqual(info.accounts.length, 10)
      const minerDir = mkdtempSync(join(tmpdir(), "r3mes-miner-"))
      const run = spawnSync(
        process.execPath,
        [program, "mine", "--json", "--iterations", "2", "--rpc-url", info.rpc_url, "--registry", info.registry,
          "--data-dir", minerDir, "--stats-port", "0", "--log-file", join(minerDir, "miner.log")],
        { env: { ...minerEnv(), R3MES_PRIVATE_KEY: info.accounts[3]!.private_key }, encoding: "utf8", timeout: 120_000 }
      )
      assert.strictEqual(run.status, 0, run.stderr)
      const summary = JSON.parse(run.stdout) as Summary
      assert.strictEqual(summary.committed, 2)
      assert.notInclude(run.stdout + run.stderr, info.accounts[3]!.private_key.slice(2))
    }).pipe(Effect.scoped), 120_000)
})
