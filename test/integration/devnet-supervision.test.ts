import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Logger, Scope } from "effect"
import { createPublicClient, createWalletClient, http, parseEventLogs } from "viem"
import { privateKeyToAccount } from "viem/accounts"
import { foundry } from "viem/chains"
import { resolveAnvilBinary } from "../../src/layers/chain/devnet/Anvil.ts"
import type { DevnetHealth, RunningDevnet } from "../../src/layers/chain/devnet/Devnet.ts"
import { miningRegistryAbi } from "../../src/layers/chain/MiningRegistryArtifact.ts"
import { freshDevnet, isRunning } from "../support/anvil.ts"

/**
 * A devnet whose anvil dies on its own (issue 11, item 7: nothing restarted it, and the miner never stopped): it is
 * restarted on the same port from its state, or it is down and says so, on a real anvil.
 */

const clientOf = (devnet: RunningDevnet) =>
  createPublicClient({ chain: { ...foundry, id: devnet.chainId }, transport: http(devnet.rpcUrl, { retryCount: 0 }) })

const claim = (devnet: RunningDevnet, account: number, roundId: bigint) =>
  Effect.promise(() =>
    createWalletClient({
      chain: { ...foundry, id: devnet.chainId },
      transport: http(devnet.rpcUrl, { retryCount: 0 }),
      account: privateKeyToAccount(devnet.accounts[account]!.privateKey)
    }).writeContractSync({
      address: devnet.registry,
      abi: miningRegistryAbi,
      functionName: "claimChunk",
      args: [roundId],
      throwOnReceiptRevert: true
    })
  ).pipe(
    Effect.map((receipt) => ({
      block: receipt.blockNumber,
      chunkId: parseEventLogs({ abi: miningRegistryAbi, logs: receipt.logs, eventName: "ChunkClaimed", strict: true })[0]!
        .args.chunkId
    }))
  )

const blockNumber = (devnet: RunningDevnet) => Effect.promise(() => clientOf(devnet).getBlockNumber())

/** Polls the devnet's health until `check` holds (at most `ms`), and returns it. */
const healthWhen = (devnet: RunningDevnet, check: (h: DevnetHealth) => boolean, ms = 15_000) =>
  Effect.gen(function*() {
    const until = Date.now() + ms
    for (;;) {
      const health = yield* devnet.health
      if (check(health)) return health
      if (Date.now() > until) return yield* Effect.die(new Error(`health not reached within ${ms} ms: ${JSON.stringify(health)}`))
      yield* Effect.sleep("25 millis")
    }
  })

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "r3mes-devnet-sup-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/**
 * Listens on the port as soon as the dying anvil lets go of it (a few ms after its SIGKILL). It hangs up on whoever
 * connects (a keeper request in flight), else closing it would wait for that connection.
 */
const occupy = (port: number) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      for (let attempt = 0;; attempt++) {
        const server = createServer((socket) => socket.destroy())
        const ok = await new Promise<boolean>((resolve) => {
          server.once("error", () => resolve(false))
          server.listen({ port, host: "127.0.0.1", exclusive: true }, () => resolve(true))
        })
        if (ok) return server
        if (attempt > 400) throw new Error(`port ${port} never came free`)
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    }),
    (server: Server) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
  )

describe.skipIf(process.platform === "win32")("devnet supervision", () => {
  it.live("SIGKILL of a persistent devnet's anvil: restarted on the same port with its state, the keeper goes on", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir
      const stateFile = join(dataDir, "anvil-state.json")
      const scope = yield* Scope.make()
      const devnet = yield* freshDevnet({ dataDir, stateIntervalSeconds: 1 }).pipe(Scope.provide(scope))
      assert.deepStrictEqual(yield* devnet.health, { state: "running", restarts: 0, last_exit: null, last_error: null })
      const first = yield* claim(devnet, 1, 1n)

      // The defect's trigger: anvil dies under the miner. Kill it right after a complete periodic dump that holds
      // the claim, so the next dump (a second later) cannot be cut in half.
      const claimedAt = Date.now()
      const until = Date.now() + 10_000
      for (;;) {
        const dumped = statSync(stateFile, { throwIfNoEntry: false })
        if (dumped !== undefined && dumped.mtimeMs > claimedAt + 50) {
          const complete = yield* Effect.try(() => JSON.parse(readFileSync(stateFile, "utf8")) as unknown).pipe(
            Effect.orElseSucceed(() => undefined)
          )
          if (complete !== undefined) break
        }
        assert.isBelow(Date.now(), until, "anvil wrote its state within 10 s")
        yield* Effect.sleep("10 millis")
      }
      const oldPid = devnet.pid
      const killedAt = Date.now()
      process.kill(oldPid, "SIGKILL")

      const health = yield* healthWhen(devnet, (h) => h.restarts === 1 && h.state === "running")
      const restartMs = Date.now() - killedAt
      assert.match(health.last_exit!, new RegExp(`pid ${oldPid} was killed by SIGKILL`))
      assert.isNull(health.last_error)
      assert.notStrictEqual(devnet.pid, oldPid)
      assert.isFalse(isRunning(oldPid))
      assert.isTrue(isRunning(devnet.pid))

      // Same RPC URL, the chain as of its last dump: the claim's block and its chunk are still there.
      assert.isTrue((yield* blockNumber(devnet)) >= first.block, "blocks up to the last dump are there")
      const next = yield* claim(devnet, 2, 1n)
      assert.strictEqual(next.chunkId, first.chunkId + 1, "the claim made before the kill is still on chain")
      assert.strictEqual(yield* devnet.keepRound, 1n)
      console.log(`restarted ${restartMs} ms after the SIGKILL`)

      // A normal stop is not a death: nothing comes back on the port afterwards.
      const pid = devnet.pid
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(isRunning(pid))
      yield* Effect.sleep("700 millis")
      const answer = yield* Effect.tryPromise(() => clientOf(devnet).getChainId()).pipe(Effect.option)
      assert.strictEqual(answer._tag, "None", "no anvil was restarted after the scope closed")
    }).pipe(Effect.scoped), 40_000)

  it.live("without a data dir it restarts as a new chain: the registry is deployed again at the same address", () =>
    Effect.gen(function*() {
      const logs: Array<string> = []
      const devnet = yield* freshDevnet().pipe(
        Effect.provide(Logger.layer([Logger.make((o) => logs.push((o.message as ReadonlyArray<unknown>).map(String).join(" ")))]))
      )
      yield* claim(devnet, 1, 1n)
      process.kill(devnet.pid, "SIGKILL")
      yield* healthWhen(devnet, (h) => h.restarts === 1 && h.state === "running")
      const code = yield* Effect.promise(() => clientOf(devnet).getCode({ address: devnet.registry }))
      assert.isAbove(code?.length ?? 0, 2)
      assert.strictEqual(yield* devnet.keepRound, 1n)
      assert.strictEqual((yield* claim(devnet, 1, 1n)).chunkId, 0, "a new chain: chunk 0 is free again")
      assert.isTrue(logs.some((l) => /no registry at .* this is a new chain/.test(l)), logs.join("\n"))
    }).pipe(Effect.scoped), 30_000)

  it.live("an anvil that cannot come back (its port taken): health down, failure is a ResourceError with a hint", () =>
    Effect.gen(function*() {
      const devnet = yield* freshDevnet({ dataDir: yield* tempDir })
      const port = Number(new URL(devnet.rpcUrl).port)
      process.kill(devnet.pid, "SIGKILL")
      yield* occupy(port)
      const error = yield* Effect.flip(devnet.failure).pipe(Effect.timeout("20 seconds"))
      assert.strictEqual(error._tag, "ResourceError")
      assert.match(error.message, /anvil .* was killed by SIGKILL, and 3 restarts within 1m did not keep it up/)
      assert.match(error.message, new RegExp(`port ${port} on 127.0.0.1 is in use`))
      assert.match(error.hint ?? "", /stop whatever listens there/)
      const health = yield* devnet.health
      assert.strictEqual(health.state, "down")
      assert.strictEqual(health.restarts, 0)
      assert.strictEqual(health.last_error, error.message)
    }).pipe(Effect.scoped), 40_000)

  it.live("a binary that fails on restart, past the policy's budget: down, with anvil's own words", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const wrapper = join(dir, "anvil-once")
      // Runs the real anvil the first time only, like a binary removed or broken while the devnet ran.
      writeFileSync(
        wrapper,
        `#!/bin/sh\nif [ -e "${dir}/started" ]; then echo "anvil: boom" >&2; exit 3; fi\n` +
          `touch "${dir}/started"\nexec "${yield* resolveAnvilBinary}" "$@"\n`
      )
      chmodSync(wrapper, 0o755)
      const devnet = yield* freshDevnet({ anvilBinary: wrapper, restartPolicy: { maxRestarts: 2, backoff: "20 millis" } })
      process.kill(devnet.pid, "SIGKILL")
      const error = yield* Effect.flip(devnet.failure).pipe(Effect.timeout("20 seconds"))
      assert.strictEqual(error._tag, "ResourceError")
      assert.match(error.message, /2 restarts within 1m did not keep it up: anvil exited with code 3 before it was ready .*boom/)
      assert.match(error.hint ?? "", /run the anvil binary by hand/)
      assert.strictEqual((yield* devnet.health).state, "down")
    }).pipe(Effect.scoped), 30_000)

  it.live("each death counts: with maxRestarts 1, a second death within the window takes it down", () =>
    Effect.gen(function*() {
      const devnet = yield* freshDevnet({ restartPolicy: { maxRestarts: 1, backoff: "10 millis" } })
      process.kill(devnet.pid, "SIGKILL")
      yield* healthWhen(devnet, (h) => h.restarts === 1 && h.state === "running")
      process.kill(devnet.pid, "SIGKILL")
      const health = yield* healthWhen(devnet, (h) => h.state === "down")
      assert.strictEqual(health.restarts, 1)
      assert.match(health.last_error!, /was killed by SIGKILL, and 1 restart within 1m did not keep it up/)
      assert.strictEqual((yield* Effect.flip(devnet.failure))._tag, "ResourceError")
    }).pipe(Effect.scoped), 30_000)

  it.live("the round keeper logs a failure once, not at every tick", () =>
    Effect.gen(function*() {
      const logs: Array<string> = []
      const collector = Logger.make((o) => logs.push((o.message as ReadonlyArray<unknown>).map(String).join(" ")))
      yield* Effect.gen(function*() {
        const devnet = yield* freshDevnet({
          keeperInterval: "20 millis",
          roundPlan: (roundId) => {
            if (roundId > 1n) throw new Error("no plan past round 1")
            return { modelCid: "Qm", spec: "{}", chunkCount: 1, difficulty: 16, durationSeconds: 3600 }
          }
        })
        yield* claim(devnet, 1, 1n)
        yield* Effect.sleep("600 millis")
      }).pipe(Effect.scoped, Effect.provide(Layer.fresh(Logger.layer([collector]))))
      const keeperLines = logs.filter((l) => l.startsWith("devnet round keeper"))
      assert.strictEqual(keeperLines.length, 1, keeperLines.join("\n"))
      assert.match(keeperLines[0]!, /no plan past round 1/)
    }), 30_000)
})
