import { createConnection, createServer, type Socket } from "node:net"
import { inspect } from "node:util"
import { assert, describe, it } from "@effect/vitest"
import { type Duration, Effect, Exit, Scope } from "effect"
import { vi } from "vitest"
import { createPublicClient, type PublicClient, webSocket } from "viem"
import { isRetryable, type MiningError } from "../../src/domain/errors.ts"
import { startAnvil } from "../../src/layers/chain/devnet/Anvil.ts"
import { rpcTransport, rpcTransportKind } from "../../src/layers/chain/rpcTransport.ts"
import { fromViemError } from "../../src/layers/chain/viemErrors.ts"

/** A public client on `url`, its failures as the miner sees them (fromViemError). */
const clientOn = (url: string, timeout: Duration.Input = "2 seconds") =>
  rpcTransport(url, { timeout }).pipe(Effect.map((transport) => createPublicClient({ transport, pollingInterval: 50 })))

const call = <A>(context: string, f: () => Promise<A>): Effect.Effect<A, MiningError> =>
  Effect.tryPromise({ try: f, catch: (e) => fromViemError(e, context) })

const wsUrl = (rpcUrl: string) => rpcUrl.replace(/^http:/, "ws:")

/** Every printed form of an error: none may hold a secret. */
const printed = (error: MiningError): string =>
  [error.message, error.hint ?? "", error.cause ?? "", String(error), JSON.stringify(error), inspect(error, { depth: 10 })]
    .join("\n")

const assertNoSecret = (text: string) => {
  for (const secret of ["s3cret", "key/abc", "apikey", "zzz"]) assert.notInclude(text, secret)
}

/**
 * A TCP relay to `port` whose `blackhole()` makes the connections open so far swallow everything while staying
 * open: a half-open connection, as after a NAT or load balancer forgot it. New connections relay normally.
 */
const relay = (port: number) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly port: number; readonly blackhole: () => void; readonly close: () => void }>((resume) => {
      const open = new Set<Socket>()
      const server = createServer((inbound) => {
        const outbound = createConnection({ port, host: "127.0.0.1" })
        for (const socket of [inbound, outbound]) {
          open.add(socket)
          socket.on("error", () => {})
          socket.on("close", () => open.delete(socket))
        }
        inbound.pipe(outbound)
        outbound.pipe(inbound)
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        resume(Effect.succeed({
          port: typeof address === "object" && address !== null ? address.port : 0,
          blackhole: () => {
            for (const socket of open) {
              socket.unpipe()
              socket.removeAllListeners("data")
              socket.pause()
            }
          },
          close: () => {
            for (const socket of open) socket.destroy()
            server.close()
          }
        }))
      })
    }),
    (r) => Effect.sync(() => r.close())
  )

describe("rpcTransportKind", () => {
  it.effect("takes http(s) to HTTP and ws(s) to WebSocket", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* rpcTransportKind("http://127.0.0.1:8545"), "http")
      assert.strictEqual(yield* rpcTransportKind("https://user:pw@rpc.example/v3/key"), "http")
      assert.strictEqual(yield* rpcTransportKind("ws://127.0.0.1:8545"), "webSocket")
      assert.strictEqual(yield* rpcTransportKind("WSS://rpc.example/ws/v3/key"), "webSocket")
    }))

  it.effect("refuses other schemes, non-URLs and ws credentials with a ValidationError, a hint and no secret", () =>
    Effect.gen(function*() {
      for (const url of ["ftp://user:s3cret@rpc.example/key/abc?apikey=zzz", "rpc.example/key/abc", "wss://user:s3cret@rpc.example/x"]) {
        const error = yield* Effect.flip(rpcTransportKind(url))
        assert.strictEqual(error._tag, "ValidationError")
        assert.strictEqual(error.field, "R3MES_RPC_URL")
        assert.isString(error.hint)
        assertNoSecret(printed(error))
      }
      const ftp = yield* Effect.flip(rpcTransportKind("ftp://rpc.example/key/abc"))
      assert.strictEqual(ftp.message, "R3MES_RPC_URL ftp://rpc.example/<redacted> has the unsupported scheme ftp:")
    }))
})

describe("WebSocket RPC against anvil", () => {
  it.live("a public client over ws reads the chain id and a block", () =>
    Effect.gen(function*() {
      const anvil = yield* startAnvil({ chainId: 4242 })
      const client = yield* clientOn(wsUrl(anvil.rpcUrl))
      assert.strictEqual(client.transport.key, "webSocket")
      assert.strictEqual(yield* call("chain id", () => client.getChainId()), 4242)
      const block = yield* call("block 0", () => client.getBlock({ blockNumber: 0n }))
      assert.strictEqual(block.number, 0n)
      // Concurrent requests share the one socket.
      const numbers = yield* Effect.all(
        Array.from({ length: 8 }, () => call("block number", () => client.getBlockNumber({ cacheTime: 0 }))),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(numbers, numbers.map(() => 0n))
    }).pipe(Effect.scoped))

  it.live("a closed socket is a retryable NetworkError, and the next request after a restart reconnects", () => {
    const consoleError = vi.spyOn(console, "error")
    return Effect.gen(function*() {
      const first = yield* Scope.make()
      const anvil = yield* startAnvil().pipe(Scope.provide(first))
      const client = yield* clientOn(wsUrl(anvil.rpcUrl))
      assert.strictEqual(yield* call("chain id", () => client.getChainId()), 31337)

      yield* Scope.close(first, Exit.void)
      const lost = yield* Effect.flip(call("reading the block number", () => client.getBlockNumber({ cacheTime: 0 })))
      assert.strictEqual(lost._tag, "NetworkError", printed(lost))
      assert.isTrue(isRetryable(lost))
      assert.include(lost.message, "reading the block number")
      // Nobody listening: still the network's fault.
      const refused = yield* Effect.flip(call("reading the block number", () => client.getBlockNumber({ cacheTime: 0 })))
      assert.strictEqual(refused._tag, "NetworkError", printed(refused))

      yield* startAnvil({ port: anvil.port, chainId: 777 })
      assert.strictEqual(yield* call("chain id", () => client.getChainId()), 777)
      // viem's background reconnection printed its failures on the console; there is none here.
      assert.strictEqual(consoleError.mock.calls.length, 0)
    }).pipe(
      Effect.scoped,
      Effect.ensuring(Effect.sync(() => consoleError.mockRestore()))
    )
  })

  it.live("a half-open socket (requests unanswered) is replaced after two timeouts", () =>
    Effect.gen(function*() {
      const anvil = yield* startAnvil()
      const proxy = yield* relay(anvil.port)
      const client = yield* clientOn(`ws://127.0.0.1:${proxy.port}`, "300 millis")
      assert.strictEqual(yield* call("block number", () => client.getBlockNumber({ cacheTime: 0 })), 0n)
      proxy.blackhole()
      for (let i = 0; i < 2; i++) {
        const silent = yield* Effect.flip(call("block number", () => client.getBlockNumber({ cacheTime: 0 })))
        assert.strictEqual(silent._tag, "TimeoutError", printed(silent))
        assert.isTrue(isRetryable(silent))
      }
      assert.strictEqual(yield* call("block number", () => client.getBlockNumber({ cacheTime: 0 })), 0n)
    }).pipe(Effect.scoped))

  it.live("viem's own webSocket transport failing to connect is a NetworkError too (its ErrorEvent is no Error)", () =>
    Effect.gen(function*() {
      const client: PublicClient = createPublicClient({ transport: webSocket("ws://127.0.0.1:1", { retryCount: 0, reconnect: false }) })
      const error = yield* Effect.flip(call("chain id", () => client.getChainId()))
      assert.strictEqual(error._tag, "NetworkError", printed(error))
    }))

  it.live("after its scope closes the transport refuses requests instead of opening a socket nobody closes", () =>
    Effect.gen(function*() {
      const anvil = yield* startAnvil()
      const scope = yield* Scope.make()
      const client = yield* clientOn(wsUrl(anvil.rpcUrl)).pipe(Scope.provide(scope))
      yield* call("chain id", () => client.getChainId())
      yield* Scope.close(scope, Exit.void)
      const error = yield* Effect.flip(call("chain id", () => client.getChainId()))
      assert.strictEqual(error._tag, "NetworkError")
      assert.include(error.cause ?? "", "closed")
    }).pipe(Effect.scoped))
})

describe("fromViemError never lets the RPC URL's secrets through", () => {
  for (const url of ["http://user:s3cret@127.0.0.1:1/key/abc?apikey=zzz", "ws://127.0.0.1:1/key/abc?apikey=zzz"]) {
    it.live(`a real failing request to ${url.split(":")[0]}://…`, () =>
      Effect.gen(function*() {
        const client = yield* clientOn(url)
        const error = yield* Effect.flip(call(`cannot reach the chain at ${url}`, () => client.getChainId()))
        assert.strictEqual(error._tag, "NetworkError", printed(error))
        assertNoSecret(printed(error))
        assert.include(error.message, `cannot reach the chain at ${url.split(":")[0]}://127.0.0.1:1/<redacted>`)
      }).pipe(Effect.scoped))
  }
})
