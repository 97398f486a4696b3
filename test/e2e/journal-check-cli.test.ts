import { createHash } from "node:crypto"
import { mkdtempSync, readdirSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { overwriteMiddlePage, writeJournal } from "../support/journalFiles.ts"
import { spawnHolder } from "../support/journalHolderProcess.ts"
import { cli as runCli } from "../support/cli.ts"



const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) => runCli(args, { env, timeoutMs: 25_000 })

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex")

interface CheckJson {
  readonly path: string
  readonly status: string
  readonly problems: ReadonlyArray<string>
  readonly hint: string | null
  readonly schema_version: number | null
  readonly records: { readonly total: number; readonly by_state: Record<string, number> } | null
  readonly meta: Record<string, string> | null
  readonly lock: { readonly held: boolean; readonly pid?: number }
}

const rebuildHint = "`r3mes-miner journal rebuild` reconstructs this miner's records from the chain and the IPFS store"

describe("r3mes-miner journal check", () => {
  let sound = ""
  let corrupted = ""

  beforeAll(async () => {
    sound = mkdtempSync(join(tmpdir(), "r3mes-check-"))
    corrupted = mkdtempSync(join(tmpdir(), "r3mes-check-bad-"))
    await Effect.runPromise(Effect.all([writeJournal(join(sound, "journal.sqlite"), 50), writeJournal(join(corrupted, "journal.sqlite"), 300)]))
    overwriteMiddlePage(join(corrupted, "journal.sqlite"))
  }, 60_000)

  it("a sound journal: ok, its records per state, its meta, the lock free; exit 0; the file untouched", async () => {
    const path = join(sound, "journal.sqlite")
    const before = sha256(path)
    const run = await cli(["journal", "check", "--data-dir", sound])
    assert.strictEqual(run.status, 0, run.stderr)
    assert.match(run.stdout, new RegExp(`^journal\\s+${path.replaceAll(".", "\\.")}$`, "m"))
    assert.match(run.stdout, /^status\s+ok \(SQLite integrity check, \d+ ms\)$/m)
    assert.match(run.stdout, /^records\s+50: committed 50$/m)
    assert.match(run.stdout, /^meta\s+chain\.genesis_hash = 0xfeed$/m)
    assert.match(run.stdout, /^lock\s+free: no miner runs on this data dir$/m)
    assert.strictEqual(sha256(path), before)
  })

  it("--json, and the data dir from R3MES_DATA_DIR", async () => {
    const run = await cli(["journal", "check", "--json"], { R3MES_DATA_DIR: sound })
    assert.strictEqual(run.status, 0, run.stderr)
    const check = JSON.parse(run.stdout) as CheckJson
    assert.strictEqual(check.path, join(sound, "journal.sqlite"))
    assert.strictEqual(check.status, "ok")
    assert.deepStrictEqual(check.problems, [])
    assert.isNull(check.hint)
    assert.strictEqual(check.records?.total, 50)
    assert.strictEqual(check.records?.by_state["committed"], 50)
    assert.strictEqual(check.records?.by_state["rolled_back"], 0)
    assert.deepStrictEqual(check.meta, { "chain.genesis_hash": "0xfeed" })
    assert.deepStrictEqual(check.lock, { held: false })
  })

  it("a corrupted journal: reported with the hint that loses nothing; exit 1; the file untouched", async () => {
    const path = join(corrupted, "journal.sqlite")
    const before = sha256(path)
    const run = await cli(["journal", "check", "--data-dir", corrupted])
    assert.strictEqual(run.status, 1)
    assert.match(run.stdout, /^status\s+corrupted: \d+ problems? found$/m)
    assert.include(run.stdout, "problems:")
    assert.include(run.stderr, `r3mes-miner: the journal ${path} is corrupted`)
    assert.include(run.stderr, rebuildHint)
    assert.notMatch(run.stderr, /move (the file|it) aside/)
    const json = await cli(["journal", "check", "--data-dir", corrupted, "--json"])
    assert.strictEqual(json.status, 1)
    const check = JSON.parse(json.stdout) as CheckJson
    assert.strictEqual(check.status, "corrupted")
    assert.isAbove(check.problems.length, 0)
    assert.include(check.hint, rebuildHint)
    assert.strictEqual(sha256(path), before)
  })

  it("no journal: exit 1, and none is created", async () => {
    const empty = mkdtempSync(join(tmpdir(), "r3mes-check-none-"))
    const run = await cli(["journal", "check", "--data-dir", empty])
    assert.strictEqual(run.status, 1)
    assert.include(run.stderr, `no journal at ${join(empty, "journal.sqlite")}`)
    assert.include(run.stderr, "hint: pass the miner's --data-dir")
    assert.deepStrictEqual(readdirSync(empty), [])
  })

  it("usage errors exit 2: an unknown flag, a blank data dir", async () => {
    const unknown = await cli(["journal", "check", "--data-dri", sound])
    assert.strictEqual(unknown.status, 2)
    const blank = await cli(["journal", "check"], { R3MES_DATA_DIR: "   " })
    assert.strictEqual(blank.status, 2, blank.stderr)
    assert.include(blank.stderr, "R3MES_DATA_DIR")
  })

  it.live("while a miner holds the data dir: check names its pid, status and stats read its journal", () =>
    Effect.gen(function*() {
      const dataDir = mkdtempSync(join(tmpdir(), "r3mes-check-live-"))
      const holder = yield* spawnHolder(join(dataDir, "journal.sqlite"))
      assert.isTrue(holder.answer.held)
      const [check, status, stats] = yield* Effect.promise(() =>
        Promise.all([
          cli(["journal", "check", "--data-dir", dataDir, "--json"]),
          // Port 1: nothing answers there, so both read the journal.
          cli(["status", "--data-dir", dataDir, "--stats-port", "1"]),
          cli(["stats", "--data-dir", dataDir, "--stats-port", "1", "--json"])
        ])
      )
      assert.strictEqual(check.status, 0, check.stderr)
      const report = JSON.parse(check.stdout) as CheckJson
      assert.strictEqual(report.status, "ok")
      assert.deepInclude(report.lock, { held: true, pid: holder.child.pid })
      assert.strictEqual(status.status, 0, status.stderr)
      assert.include(status.stdout, holder.answer.transaction_id!)
      assert.strictEqual(stats.status, 0, stats.stderr)
      assert.strictEqual((JSON.parse(stats.stdout) as { atomic_coordinator: { total_transactions: number } }).atomic_coordinator.total_transactions, 1)
      // The miner is still the holder: the readers took nothing from it.
      assert.isNull(holder.child.exitCode)
      const human = yield* Effect.promise(() => cli(["journal", "check", "--data-dir", dataDir]))
      assert.match(human.stdout, new RegExp(`^lock\\s+held by a running miner \\(pid ${holder.child.pid}, since .+\\)$`, "m"))
    }).pipe(Effect.scoped), 60_000)
})
