import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs"
import { createServer, type Server } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { isRunning, spawnMiner, waitFor } from "../support/anvil.ts"

/**
 * Issue 11, item 7, through the CLI: the embedded anvil of a running `mine` dies (SIGKILL from outside). It used to
 * stay dead while the miner went on, a warning a second, /health ok. Now it comes back on the same port and the miner
 * keeps mining; one that cannot come back stops the miner with exit 1 and the cause.
 */

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "r3mes-devnet-e2e-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const commits = (log: string): number => log.split("\n").filter((line) => line.includes("→ committed")).length

/** Whether the file is whole JSON (a dump is not being written). */
const parses = (path: string): boolean => {
  try {
    JSON.parse(readFileSync(path, "utf8"))
    return true
  } catch {
    return false
  }
}

const getJson = (url: string) =>
  Effect.promise(() =>
    fetch(url, { signal: AbortSignal.timeout(10_000) }).then(async (r) => ({
      status: r.status,
      body: (await r.json()) as Record<string, any>
    }))
  )

/** Binds the port as soon as it is free, and hangs up on whoever connects (the miner's RPC calls). */
const occupy = (port: number) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      for (let attempt = 0; attempt < 2_000; attempt++) {
        const server = createServer((socket) => socket.destroy())
        const ok = await new Promise<boolean>((resolve) => {
          server.once("error", () => resolve(false))
          server.listen({ port, host: "127.0.0.1", exclusive: true }, () => resolve(true))
        })
        if (ok) return server
        await new Promise((resolve) => setTimeout(resolve, 2))
      }
      throw new Error(`port ${port} never came free`)
    }),
    (server: Server) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
  )

describe.skipIf(process.platform !== "linux")("the embedded devnet under a running miner", () => {
  it.live("anvil SIGKILLed: restarted on the same port, /health says so, the miner keeps committing", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const miner = yield* spawnMiner(dataDir, [])
      yield* waitFor(() => commits(miner.log()) >= 1, 90_000, "a first commit")
      const statsUrl = /monitoring API listening on (http:\/\/\S+?)"/.exec(miner.log())?.[1]
      assert.isDefined(statsUrl, "the log names the monitoring API")
      const before = yield* getJson(`${statsUrl}/health`)
      assert.strictEqual(before.body["components"]?.devnet?.state, "running")

      // The miner paused (SIGSTOP) until anvil has dumped a state that holds all of its work, then anvil killed: the
      // chain comes back whole, and this test sees the restart alone. (A chain that comes back without its last
      // blocks is a chain reset for the miner: the journal audit's business, not the devnet's.)
      const stateFile = join(dataDir, "devnet", "anvil-state.json")
      const dumpedAt = () => statSync(stateFile, { throwIfNoEntry: false })?.mtimeMs ?? 0
      miner.child.kill("SIGSTOP")
      const pausedAt = Date.now()
      yield* waitFor(() => dumpedAt() > pausedAt + 200 && parses(stateFile), 15_000, "a state dump after the pause")
      const killed = miner.anvilPid()
      process.kill(killed, "SIGKILL")
      miner.child.kill("SIGCONT")
      yield* waitFor(() => /anvil restarted: pid \d+/.test(miner.log()), 20_000, "the restart")
      const restartedAt = miner.log().length
      assert.notStrictEqual(miner.anvilPid(), killed)
      const health = yield* getJson(`${statsUrl}/health`)
      assert.strictEqual(health.status, 200)
      assert.include(health.body["components"].devnet, { state: "running", restarts: 1 })
      assert.match(health.body["components"].devnet.last_exit, new RegExp(`pid ${killed} was killed by SIGKILL`))

      // Mining goes on against the restarted chain.
      yield* waitFor(() => commits(miner.log().slice(restartedAt)) >= 2, 90_000, "two commits after the restart")
      const keeperWarnings = miner.log().split("\n").filter((l) => l.includes("devnet round keeper")).length
      assert.isAtMost(keeperWarnings, 2, "the keeper speaks per state change, not every second")

      const restarted = miner.anvilPid()
      miner.child.kill("SIGTERM")
      const { code } = yield* miner.exited.pipe(
        Effect.timeoutOrElse({
          duration: "60 seconds",
          orElse: () => Effect.die(new Error(`no exit within 60 s of SIGTERM; log tail:\n${miner.log().slice(-4000)}`))
        })
      )
      assert.strictEqual(code, 0, `${miner.stderr()}\n${miner.stdout().slice(0, 600)}`)
      assert.isFalse(isRunning(restarted), "the restarted anvil is stopped with the miner")
    }).pipe(Effect.scoped), 240_000)

  it.live("anvil SIGKILLed and its port taken: the miner stops with exit 1 and the cause", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const miner = yield* spawnMiner(dataDir, [])
      yield* waitFor(() => commits(miner.log()) >= 1, 90_000, "a first commit")
      const rpcUrl = /embedded devnet at (http:\/\/[0-9.:]+)/.exec(miner.log())![1]!
      const anvilPid = miner.anvilPid()
      process.kill(anvilPid, "SIGKILL")
      yield* occupy(Number(new URL(rpcUrl).port))

      const { code } = yield* miner.exited.pipe(Effect.timeout("60 seconds"))
      const stderr = miner.stderr()
      assert.strictEqual(code, 1, stderr)
      assert.match(stderr, /restarts within 1m did not keep it up: port \d+ on 127\.0\.0\.1 is in use/)
      assert.match(stderr, /stop whatever listens there/)
      assert.isFalse(isRunning(anvilPid))
    }).pipe(Effect.scoped), 240_000)
})
