import { spawnSync } from "node:child_process"
import { mkdtempSync, renameSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { HeliaStore } from "../../src/layers/ipfs/HeliaStore.ts"
import { SqliteJournal } from "../../src/layers/journal/SqliteJournal.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { Journal } from "../../src/services/Journal.ts"
import { overwriteMiddlePage } from "../support/journalFiles.ts"
import { minerEnv, program } from "../support/cli.ts"

/**
 * Issue 11, defect 6, end to end on the real miner: a corrupted journal is refused at start with a hint that loses
 * nothing; `journal rebuild` reconstructs the committed records from the chain; and whatever happens to the journal
 * (rebuilt, or moved aside by hand), no start ever unpins a gradient the chain records as this miner's.
 */

const cli = (dataDir: string, args: ReadonlyArray<string>) => {
  const run = spawnSync(process.execPath, [program, ...args, "--data-dir", dataDir], {
    // These tests count the miner's pins: the embedded verifier (which pins a report per submission in the same
    // store) judges nothing here.
    env: minerEnv({ R3MES_VERIFY_SAMPLE: "0" }),
    encoding: "utf8",
    timeout: 150_000
  })
  if (run.error !== undefined) throw run.error
  return run
}

const mine = (dataDir: string, iterations: number) =>
  cli(dataDir, ["mine", "--json", "--iterations", String(iterations), "--stats-port", "0", "--log-file", join(dataDir, "miner.log")])

const pinsOf = (dataDir: string) =>
  Effect.scoped(Effect.gen(function*() {
    return yield* (yield* GradientStore).pins
  }).pipe(Effect.provide(HeliaStore.layer({ dataDir }))))

const committedIn = (dataDir: string) =>
  Effect.scoped(Effect.gen(function*() {
    return yield* (yield* Journal).list({ state: "committed" })
  }).pipe(Effect.provide(SqliteJournal.layer({ path: join(dataDir, "journal.sqlite"), readOnly: true }))))

describe("a corrupted or lost journal loses nothing (real miner, embedded devnet and IPFS)", () => {
  it.live("corrupted: refused with the rebuild hint; rebuilt from the chain; the next start keeps every pin", () =>
    Effect.gen(function*() {
      const dataDir = mkdtempSync(join(tmpdir(), "r3mes-e2e-journal-"))
      const first = mine(dataDir, 8)
      assert.strictEqual(first.status, 0, first.stderr)
      const committed = JSON.parse(first.stdout).committed as number
      assert.strictEqual(committed, 8)
      // The gradients are pinned (beside them, the round coordinator's weights of the round those 8 chunks filled).
      const pinned = (yield* committedIn(dataDir)).map((r) => r.ipfs_hash!)
      assert.strictEqual(new Set(pinned).size, 8)
      const pinnedBefore = yield* pinsOf(dataDir)
      for (const cid of pinned) assert.include(pinnedBefore, cid)

      overwriteMiddlePage(join(dataDir, "journal.sqlite"))
      const refused = mine(dataDir, 1)
      assert.strictEqual(refused.status, 1, refused.stderr)
      assert.include(refused.stderr, "journal rebuild")

      const rebuilt = cli(dataDir, ["journal", "rebuild", "--json"])
      assert.strictEqual(rebuilt.status, 0, rebuilt.stderr)
      const report = JSON.parse(rebuilt.stdout) as { rebuilt: number; pinned: number; unavailable: Array<string>; previous_journal: string }
      assert.strictEqual(report.rebuilt, 8)
      assert.strictEqual(report.pinned, 8)
      assert.deepStrictEqual(report.unavailable, [])
      assert.include(report.previous_journal, "journal.sqlite.replaced-")
      assert.strictEqual((yield* committedIn(dataDir)).length, 8)

      const next = mine(dataDir, 1)
      assert.strictEqual(next.status, 0, next.stderr)
      const after = yield* pinsOf(dataDir)
      for (const cid of pinned) assert.include(after, cid, "a committed gradient stays pinned")
      const gradients = (yield* committedIn(dataDir)).map((r) => r.ipfs_hash!)
      assert.strictEqual(new Set(gradients).size, 9)
      for (const cid of gradients) assert.include(after, cid)
      // Nothing else was released: what was pinned before is pinned still.
      for (const cid of pinnedBefore) assert.include(after, cid)
      rmSync(dataDir, { recursive: true, force: true })
    }), 300_000)

  it.live("moved aside by hand: the next start on an empty journal unpins nothing the chain records as ours", () =>
    Effect.gen(function*() {
      const dataDir = mkdtempSync(join(tmpdir(), "r3mes-e2e-journal-lost-"))
      const first = mine(dataDir, 4)
      assert.strictEqual(first.status, 0, first.stderr)
      const pinned = yield* pinsOf(dataDir)
      assert.strictEqual(pinned.length, 4)
      for (const suffix of ["", "-wal", "-shm"]) {
        try {
          renameSync(join(dataDir, `journal.sqlite${suffix}`), join(dataDir, `journal.sqlite${suffix}.aside`))
        } catch {
          // no such sidecar
        }
      }
      const next = mine(dataDir, 1)
      assert.strictEqual(next.status, 0, next.stderr)
      const after = yield* pinsOf(dataDir)
      for (const cid of pinned) assert.include(after, cid, "the chain records it as ours: never an orphan")
      rmSync(dataDir, { recursive: true, force: true })
    }), 300_000)
})
