import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { isRunning, pgidOf, spawnMiner, waitFor } from "../support/anvil.ts"

/**
 * Ctrl-C on a terminal: the tty sends SIGINT to the whole foreground process group. The embedded anvil runs in its
 * own group, so it never sees that signal; the miner finishes its transactions in flight on a live chain and stops
 * anvil last (issue 11, item 4: anvil used to die first, and the "graceful" stop rolled back in-flight work).
 */

describe.skipIf(process.platform !== "linux")("Ctrl-C reaches the miner alone", () => {
  it.live("SIGINT to the miner's process group: in-flight work commits, exit 0, anvil stopped last", () =>
    Effect.gen(function*() {
      const dataDir = mkdtempSync(join(tmpdir(), "r3mes-sigint-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dataDir, { recursive: true, force: true })))
      // detached: a group of its own, as a shell makes for a job; its leader is the miner.
      const miner = yield* spawnMiner(dataDir, ["--iterations", "1000"], { detached: true })
      yield* waitFor(() => miner.log().includes("→ committed"), 90_000, "a commit")
      const anvilPid = miner.anvilPid()
      const pid = miner.child.pid!
      assert.isTrue(isRunning(anvilPid))
      assert.strictEqual(pgidOf(pid), pid, "the miner leads its own group")
      assert.notStrictEqual(pgidOf(anvilPid), pid, "anvil is not in the miner's group")
      assert.notStrictEqual(pgidOf(anvilPid), pgidOf(process.pid), "nor in the test's")

      process.kill(-pid, "SIGINT")
      const { code } = yield* miner.exited
      const stderr = miner.stderr()
      assert.strictEqual(code, 0, stderr)
      const summary = JSON.parse(miner.stdout()) as { status: string; committed: number; rolled_back: number; failed: number }
      assert.strictEqual(summary.status, "interrupted")
      assert.isAtLeast(summary.committed, 1)
      assert.strictEqual(summary.rolled_back, 0, stderr)
      assert.strictEqual(summary.failed, 0, stderr)
      assert.notInclude(stderr, "circuit breaker is open")
      assert.notMatch(miner.log(), /devnet round keeper|anvil \(port \d+\) pid \d+ (was killed|exited)/, "anvil never died")
      assert.isFalse(isRunning(anvilPid), "anvil is stopped with the miner")
      assert.isFalse(existsSync(join(dataDir, "devnet", "anvil-state.json.pid")), "after writing its state")
    }), 150_000)
})
