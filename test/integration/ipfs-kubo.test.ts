import { readdirSync } from "node:fs"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import { testTask } from "../../src/testing/TestTaskSource.ts"
import { assert, describe, it, layer } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, type Scope } from "effect"
import { ChainRevertError } from "../../src/domain/errors.ts"
import type { MinerConfig } from "../../src/domain/MinerConfig.ts"
import { KuboStore } from "../../src/layers/ipfs/KuboStore.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { MiningCoordinator } from "../../src/services/MiningCoordinator.ts"
import { MiningStats } from "../../src/services/MiningStats.ts"
import { InMemoryJournal } from "../../src/testing/InMemoryJournal.ts"
import { TestChain, type TestChainOptions } from "../../src/testing/TestChain.ts"
import { testSettingsLayer } from "../../src/testing/testConfig.ts"
import { TestPowSolver } from "../../src/testing/TestPowSolver.ts"
import { TestTaskSource } from "../../src/testing/TestTaskSource.ts"
import { TestTrainer } from "../../src/testing/TestTrainer.ts"
import { JsIpfs } from "../support/jsipfs.ts"
import { deterministicBytes, storeContract } from "../support/storeContract.ts"

/** Block files the daemon has written so far: they appear one by one while an add is being imported. */
const blockFiles = (repo: string): number => {
  try {
    return readdirSync(join(repo, "blocks"), { recursive: true }).filter((f) => String(f).endsWith(".data")).length
  } catch {
    return 0
  }
}

/** Waits (polling) until the daemon has written `more` blocks beyond `from`: an upload is under way. */
const untilBlocksWritten = (repo: string, from: number, more: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 2_000; i++) {
      if (blockFiles(repo) >= from + more) return
      yield* Effect.sleep("5 millis")
    }
    return yield* Effect.die(new Error("the upload never started"))
  })

const task = (chunkId: number) => testTask(chunkId)

/** The MiningCoordinator on the in-memory test ports, except that gradients go to the Kubo daemon. */
const coordinatorOnKubo = (
  url: string,
  options: { readonly config?: Partial<MinerConfig>; readonly envelopeBytes: number; readonly chain?: TestChainOptions }
) =>
  MiningCoordinator.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(
      TestTrainer.layer({ envelopeBytes: options.envelopeBytes }),
      KuboStore.layer({ url, timeout: "20 seconds" }),
      TestChain.layer(options.chain),
      TestTaskSource.layer(),
      InMemoryJournal.layer(),
      TestPowSolver.layer(),
      MiningStats.layer,
      testSettingsLayer(options.config)
    ))
  )

layer(JsIpfs.layer, { excludeTestServices: true, timeout: "60 seconds" })("KuboStore on a js-ipfs daemon", (it) => {
  describe("the GradientStore contract", () => {
    storeContract(
      it.effect,
      Effect.map(JsIpfs, (daemon) => ({
        layer: KuboStore.layer({ url: daemon.url, timeout: "20 seconds" }),
        restart: daemon.stop.pipe(Effect.andThen(daemon.start))
      }))
    )
  })

  describe("daemon failures", () => {
    it.effect("daemon stopped mid-upload: the add fails with a NetworkError; while down, so do calls and the layer", () =>
      Effect.gen(function*() {
        const daemon = yield* JsIpfs
        const bytes = deterministicBytes(64 * 1024 * 1024, 41)
        yield* GradientStore.use((store) =>
          Effect.gen(function*() {
            const before = blockFiles(daemon.repo)
            const upload = yield* Effect.forkChild(store.add(bytes))
            yield* untilBlocksWritten(daemon.repo, before, 8)
            yield* daemon.stop
            const error = yield* Effect.flip(Fiber.join(upload))
            assert.strictEqual(error._tag, "NetworkError", error.message)

            // Down: every call is a NetworkError (connection refused, retryable), and a new layer does not build.
            const down = yield* Effect.flip(store.pins)
            assert.strictEqual(down._tag, "NetworkError")
            assert.include(down.message, "ECONNREFUSED")
            const unbuilt = yield* Effect.flip(Effect.scoped(Layer.build(KuboStore.layer({ url: daemon.url }))))
            assert.strictEqual(unbuilt._tag, "NetworkError")
            assert.include(unbuilt.message, daemon.url)
            assert.include(unbuilt.hint ?? "", "--ipfs")

            yield* daemon.start
            assert.notInclude(yield* store.pins, yield* store.computeCid(bytes))
          })
        ).pipe(Effect.provide(KuboStore.layer({ url: daemon.url, timeout: "20 seconds" })))
      }), 60_000)
  })

  describe("with the MiningCoordinator", () => {
    it.effect("a gradient over the size limit is a ResourceError before anything reaches the daemon", () =>
      Effect.gen(function*() {
        const daemon = yield* JsIpfs
        const blocksBefore = blockFiles(daemon.repo)
        const pinsBefore = yield* GradientStore.use((store) => store.pins)
        const record = yield* (yield* MiningCoordinator).mine(task(2))
        assert.strictEqual(record.state, "rolled_back")
        assert.strictEqual(record.error_category, "resource")
        assert.isNull(record.ipfs_hash)
        assert.strictEqual(blockFiles(daemon.repo), blocksBefore)
        assert.deepStrictEqual(yield* GradientStore.use((store) => store.pins), pinsBefore)
      }).pipe(Effect.provide(Layer.unwrap(Effect.map(JsIpfs, (daemon) =>
        coordinatorOnKubo(daemon.url, { envelopeBytes: 1024 * 1024 + 1, config: { maxGradientSizeMb: 1 } })
      )))))

    it.effect("daemon stopped mid-upload and down through the retries: rolled back with a NetworkError, no pin once it is back", () =>
      Effect.gen(function*() {
        const daemon = yield* JsIpfs
        const before = blockFiles(daemon.repo)
        const coordinator = yield* MiningCoordinator
        const mining = yield* Effect.forkChild(coordinator.mine(task(0)))
        yield* untilBlocksWritten(daemon.repo, before, 8)
        yield* daemon.stop
        const record = yield* Fiber.join(mining)

        assert.strictEqual(record.state, "rolled_back")
        assert.strictEqual(record.failed_step, "ipfs_upload")
        assert.strictEqual(record.error_category, "network")
        // The CID was computed locally and journaled before the upload started.
        const cid = record.ipfs_hash ?? assert.fail("no CID in the record")
        // The unpin compensation ran while the daemon was down: it is recorded as failed, with its cause.
        assert.strictEqual(record.rollback_actions[0]?.action, "unpin")
        assert.strictEqual(record.rollback_actions[0]?.target, cid)

        yield* daemon.start
        const pins = yield* GradientStore.use((store) => store.pins)
        assert.notInclude(pins, cid)
      }).pipe(Effect.provide(Layer.unwrap(Effect.map(JsIpfs, (daemon) =>
        coordinatorOnKubo(daemon.url, {
          envelopeBytes: 24 * 1024 * 1024,
          config: { maxRetries: 2, retryInitialDelay: Duration.millis(100), circuitBreakerThreshold: 100 }
        })
      )))), 60_000)

    it.effect("daemon killed mid-upload and back during the retries: the retry pins, the chain refuses, the rollback unpins", () =>
      Effect.gen(function*() {
        const daemon = yield* JsIpfs
        const before = blockFiles(daemon.repo)
        const coordinator = yield* MiningCoordinator
        const mining = yield* Effect.forkChild(coordinator.mine(task(1)))
        yield* untilBlocksWritten(daemon.repo, before, 8)
        yield* daemon.kill
        yield* daemon.start
        const record = yield* Fiber.join(mining)

        assert.strictEqual(record.state, "rolled_back")
        assert.strictEqual(record.failed_step, "blockchain_submit")
        assert.strictEqual(record.error_category, "chain_revert")
        assert.isAtLeast(record.attempts.ipfs_upload, 2)
        const cid = record.ipfs_hash ?? assert.fail("no CID in the record")
        assert.deepStrictEqual(
          record.rollback_actions.map((a) => [a.action, a.target, a.status]),
          [["unpin", cid, "done"]]
        )
        assert.notInclude(yield* GradientStore.use((store) => store.pins), cid)
      }).pipe(Effect.provide(Layer.unwrap(Effect.map(JsIpfs, (daemon) =>
        coordinatorOnKubo(daemon.url, {
          envelopeBytes: 24 * 1024 * 1024,
          // Retries span the daemon's restart (~3 s).
          config: {
            maxRetries: 20,
            retryInitialDelay: Duration.millis(200),
            retryMaxDelay: Duration.seconds(1),
            circuitBreakerThreshold: 100
          },
          chain: {
            faults: {
              submitGradient: {
                alwaysFail: new ChainRevertError({ message: "round 1 expired", errorName: "RoundExpired", args: ["1"] })
              }
            }
          }
        })
      )))), 60_000)
  })
})

/** A fake RPC server answering every request with `status` (and a Kubo-style JSON error body). */
const fakeDaemon = (status: number, message = "boom"): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<ReturnType<typeof createServer>>((resolve) => {
        const server = createServer((request: IncomingMessage, response: ServerResponse) => {
          request.resume()
          request.on("end", () => {
            if (request.url?.startsWith("/api/v0/version")) {
              response.writeHead(200, { "content-type": "application/json" })
              response.end(JSON.stringify({ Version: "0.0.0-fake" }))
              return
            }
            response.writeHead(status, { "content-type": "application/json" })
            response.end(JSON.stringify({ Message: message, Code: 0, Type: "error" }))
          })
        })
        server.listen(0, "127.0.0.1", () => resolve(server))
      })
    ),
    (server) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
  ).pipe(Effect.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`))

describe("KuboStore: error classification", () => {
  const failureOf = (status: number, message?: string) =>
    Effect.gen(function*() {
      const url = yield* fakeDaemon(status, message)
      return yield* GradientStore.use((store) => Effect.flip(store.add(new Uint8Array([1])))).pipe(
        Effect.provide(KuboStore.layer({ url, timeout: "5 seconds" }))
      )
    })

  it.live.each([
    [500, "NetworkError"],
    [502, "NetworkError"],
    [503, "NetworkError"],
    [400, "ValidationError"],
    [404, "ValidationError"],
    [401, "AuthenticationError"],
    [403, "AuthenticationError"]
  ] as const)("HTTP %s → %s", ([status, tag]) =>
    Effect.gen(function*() {
      const error = yield* failureOf(status)
      assert.strictEqual(error._tag, tag)
      assert.include(error.message, "Kubo RPC http://127.0.0.1:")
    }))

  it.live("a 500 that says the request was wrong (invalid path / CID) is a ValidationError, not retried", () =>
    Effect.gen(function*() {
      assert.strictEqual((yield* failureOf(500, "invalid path \"/ipfs/x\": invalid cid")).
        _tag, "ValidationError")
    }))

  it.live("a 500 'not pinned' on unpin is success: unpin is idempotent", () =>
    Effect.gen(function*() {
      const url = yield* fakeDaemon(500, "not pinned or pinned indirectly")
      yield* GradientStore.use((store) => store.unpin("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")).pipe(
        Effect.provide(KuboStore.layer({ url, timeout: "5 seconds" }))
      )
    }))

  it.live("connection refused → NetworkError; a daemon that never answers → TimeoutError after the call's timeout", () =>
    Effect.gen(function*() {
      const refused = yield* Effect.flip(Effect.scoped(Layer.build(KuboStore.layer({ url: "http://127.0.0.1:9", timeout: "5 seconds" }))))
      assert.strictEqual(refused._tag, "NetworkError")

      const url = yield* Effect.acquireRelease(
        Effect.promise(() =>
          new Promise<ReturnType<typeof createServer>>((resolve) => {
            // Answers `version`, then accepts every other request and never responds.
            const server = createServer((request, response) => {
              if (request.url?.startsWith("/api/v0/version")) response.end(JSON.stringify({ Version: "hang" }))
            })
            server.listen(0, "127.0.0.1", () => resolve(server))
          })
        ),
        (server) => Effect.sync(() => server.closeAllConnections()).pipe(Effect.andThen(Effect.promise(() => new Promise<void>((r) => server.close(() => r())))))
      ).pipe(Effect.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`))
      const error = yield* GradientStore.use((store) => Effect.flip(store.pins)).pipe(
        Effect.provide(KuboStore.layer({ url, timeout: "300 millis" }))
      )
      // A server that never answers: only the configured timeout can have ended the request.
      assert.strictEqual(error._tag, "TimeoutError")
      assert.strictEqual(error._tag === "TimeoutError" ? error.timeoutMs : undefined, 300)
    }))

  it.live("credentials in the URL become a Basic Authorization header, never part of the request URL", () =>
    Effect.gen(function*() {
      const seen: Array<{ url: string | undefined; authorization: string | undefined }> = []
      const url = yield* Effect.acquireRelease(
        Effect.promise(() =>
          new Promise<ReturnType<typeof createServer>>((resolve) => {
            const server = createServer((request, response) => {
              seen.push({ url: request.url, authorization: request.headers.authorization })
              response.end(JSON.stringify({ Version: "auth" }))
            })
            server.listen(0, "127.0.0.1", () => resolve(server))
          })
        ),
        (server) => Effect.promise(() => new Promise<void>((r) => server.close(() => r())))
      ).pipe(Effect.map((server) => `http://miner:s3cret@127.0.0.1:${(server.address() as AddressInfo).port}`))
      yield* Effect.scoped(Layer.build(KuboStore.layer({ url })))
      assert.strictEqual(seen[0]?.authorization, `Basic ${Buffer.from("miner:s3cret").toString("base64")}`)
      assert.notInclude(seen[0]?.url ?? "", "s3cret")
    }))

  it.live("a URL that is not http(s) is a ValidationError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(Layer.build(KuboStore.layer({ url: "ftp://127.0.0.1:5001" }))))
      assert.strictEqual(error._tag, "ValidationError")
    }))
})
