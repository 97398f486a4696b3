import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { type Hex, parseEther } from "viem"
import { privateKeyToAccount } from "viem/accounts"
import { type AnvilInstance, startAnvil } from "../../src/layers/chain/devnet/Anvil.ts"
import { type FaultProxy, type FaultProxyOptions, formatFaults, startFaultProxy } from "../support/faultProxy.ts"

/**
 * Self-test of the fault-injecting JSON-RPC proxy (test/support/faultProxy.ts) against a real anvil: faults at about
 * the configured rates, a "lost" eth_sendRawTransaction is mined although its client got no answer, a "reset" one
 * never reaches the node, batches are one request, pause and exempt work, and a seed replays the same sequence.
 */

interface Outcome {
  readonly ok: boolean
  readonly result?: unknown
  readonly error?: string
  readonly ms: number
}

const rpc = async (url: string, method: string, params: ReadonlyArray<unknown> = []): Promise<Outcome> => {
  const started = performance.now()
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params })
    })
    const json = (await response.json()) as { result?: unknown; error?: unknown }
    if (json.error !== undefined) return { ok: false, error: JSON.stringify(json.error), ms: performance.now() - started }
    return { ok: true, result: json.result, ms: performance.now() - started }
  } catch (e) {
    return { ok: false, error: String((e as Error).cause ?? e), ms: performance.now() - started }
  }
}

/** Runs `count` calls of `f`, `concurrency` at a time, results in call order. */
const pool = async <A>(count: number, concurrency: number, f: (i: number) => Promise<A>): Promise<Array<A>> => {
  const results: Array<A> = new Array(count)
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      const i = next++
      results[i] = await f(i)
    }
  }))
  return results
}

const withProxy = (options: FaultProxyOptions) =>
  Effect.acquireRelease(Effect.promise(() => startFaultProxy(options)), (p: FaultProxy) => Effect.promise(() => p.close()))

const anvil = startAnvil()

const signTransfer = async (node: AnvilInstance, nonce: number): Promise<Hex> => {
  const account = privateKeyToAccount(node.accounts[3]!.privateKey)
  return account.signTransaction({
    chainId: node.chainId,
    type: "eip1559",
    to: node.accounts[4]!.address,
    value: parseEther("0.001"),
    nonce,
    gas: 21_000n,
    maxFeePerGas: 20_000_000_000n,
    maxPriorityFeePerGas: 1_000_000_000n
  })
}

describe("fault proxy (test/support/faultProxy.ts) on a real anvil", () => {
  it.live("faults at about the configured rates; the client sees exactly the reset and lost ones fail", () =>
    Effect.gen(function*() {
      const node = yield* anvil
      const proxy = yield* withProxy({ upstream: node.rpcUrl, seed: 1234, reset: 0.1, lost: 0.1, maxDelayMs: 50 })
      const n = 1000
      const outcomes = yield* Effect.promise(() => pool(n, 25, () => rpc(proxy.url, "eth_blockNumber")))
      const stats = proxy.stats()
      const failed = outcomes.filter((o) => !o.ok).length
      const okMs = outcomes.filter((o) => o.ok).map((o) => o.ms)
      const meanOk = okMs.reduce((a, b) => a + b, 0) / okMs.length
      console.log(
        `${n} requests, seed ${stats.seed}: reset ${stats.totals.reset}, lost ${stats.totals.lost}, ok ${stats.totals.ok}; ` +
          `client saw ${failed} failures; mean latency of answered ${meanOk.toFixed(1)} ms, max ${Math.max(...okMs).toFixed(1)} ms`
      )
      assert.strictEqual(stats.requests, n)
      assert.strictEqual(stats.totals.reset + stats.totals.lost + stats.totals.ok, n)
      // Binomial(1000, 0.1): mean 100, sd 9.5; 60..140 is beyond 4 sd.
      assert.isAtLeast(stats.totals.reset, 60)
      assert.isAtMost(stats.totals.reset, 140)
      assert.isAtLeast(stats.totals.lost, 60)
      assert.isAtMost(stats.totals.lost, 140)
      assert.strictEqual(failed, stats.totals.reset + stats.totals.lost, "every fault reaches the client as a failure")
      assert.deepStrictEqual(stats.byMethod["eth_blockNumber"], {
        requests: n,
        reset: stats.totals.reset,
        lost: stats.totals.lost,
        ok: stats.totals.ok,
        upstreamErrors: 0
      })
      // Uniform 0..50 ms: the draws average ≈ 25 ms, and the answered requests really waited (no upper bound on the
      // client's latency: the machine is shared, and a request after a reset pays a new connection).
      const delays = proxy.decisions().filter((d) => d.fault === "ok").map((d) => d.delayMs)
      const meanDelay = delays.reduce((a, b) => a + b, 0) / delays.length
      assert.strictEqual(Math.min(...delays), 0)
      assert.strictEqual(Math.max(...delays), 50)
      assert.isAtLeast(meanDelay, 22)
      assert.isAtMost(meanDelay, 28)
      assert.isAtLeast(meanOk, 20)
      for (const o of outcomes.filter((o) => !o.ok)) assert.match(o.error!, /socket|reset|closed|terminated/i)
    }), 60_000)

  it.live("a lost eth_sendRawTransaction is mined although the client got no answer; a reset one never reaches the node", () =>
    Effect.gen(function*() {
      const node = yield* anvil
      const proxy = yield* withProxy({ upstream: node.rpcUrl, seed: 7, reset: 0, lost: 1, maxDelayMs: 0 })
      const raw = yield* Effect.promise(() => signTransfer(node, 0))
      const sent = yield* Effect.promise(() => rpc(proxy.url, "eth_sendRawTransaction", [raw]))
      assert.isFalse(sent.ok, "the client got no answer")
      const [hash] = proxy.stats().lostRawTransactions
      assert.isDefined(hash)
      // The node acted on the request; its answer was dropped. Anvil mines it at once, but the proxy may report the
      // loss a moment before the block is sealed: ask until the receipt is there (a few ms; 5 s at most).
      let receipt = yield* Effect.promise(() => rpc(node.rpcUrl, "eth_getTransactionReceipt", [hash]))
      for (let i = 0; i < 100 && receipt.ok && receipt.result === null; i++) {
        yield* Effect.sleep("50 millis")
        receipt = yield* Effect.promise(() => rpc(node.rpcUrl, "eth_getTransactionReceipt", [hash]))
      }
      console.log(`lost eth_sendRawTransaction ${hash}: client saw "${sent.error}", node has receipt status ${(receipt.result as { status?: string } | null)?.status}`)
      assert.isTrue(receipt.ok)
      assert.strictEqual((receipt.result as { status: string }).status, "0x1", "mined on the node")

      // The Sync variant (one round trip per transaction on anvil) is faulted the same way.
      const rawSync = yield* Effect.promise(() => signTransfer(node, 1))
      const sentSync = yield* Effect.promise(() => rpc(proxy.url, "eth_sendRawTransactionSync", [rawSync]))
      assert.isFalse(sentSync.ok)
      assert.strictEqual(proxy.stats().lostRawTransactions.length, 2)
      const receiptSync = yield* Effect.promise(() => rpc(node.rpcUrl, "eth_getTransactionReceipt", [proxy.stats().lostRawTransactions[1]]))
      assert.strictEqual((receiptSync.result as { status: string }).status, "0x1")

      proxy.setFaults({ reset: 1, lost: 0 })
      const rawReset = yield* Effect.promise(() => signTransfer(node, 2))
      const reset = yield* Effect.promise(() => rpc(proxy.url, "eth_sendRawTransaction", [rawReset]))
      assert.isFalse(reset.ok)
      const [resetHash] = proxy.stats().resetRawTransactions
      const seen = yield* Effect.promise(() => rpc(node.rpcUrl, "eth_getTransactionByHash", [resetHash]))
      assert.isNull(seen.result, "the node never saw it")
      const nonce = yield* Effect.promise(() => rpc(node.rpcUrl, "eth_getTransactionCount", [node.accounts[3]!.address, "latest"]))
      assert.strictEqual(nonce.result, "0x2")
      const counters = proxy.stats().byMethod
      assert.strictEqual(counters["eth_sendRawTransaction"]!.lost, 1)
      assert.strictEqual(counters["eth_sendRawTransaction"]!.reset, 1)
      assert.strictEqual(counters["eth_sendRawTransactionSync"]!.lost, 1)
      console.log(`faults: ${formatFaults(proxy.stats())}`)
    }), 30_000)

  it.live("the same seed gives the same fault sequence; another seed another", () =>
    Effect.gen(function*() {
      const node = yield* anvil
      const sequence = (seed: number) =>
        Effect.gen(function*() {
          const proxy = yield* withProxy({ upstream: node.rpcUrl, seed, reset: 0.1, lost: 0.1, maxDelayMs: 3, quiet: true })
          const outcomes = yield* Effect.promise(() => pool(300, 1, () => rpc(proxy.url, "eth_chainId")))
          return {
            decisions: proxy.decisions().map((d) => `${d.fault}:${d.delayMs}`),
            client: outcomes.map((o) => (o.ok ? "ok" : "failed"))
          }
        }).pipe(Effect.scoped)
      const a = yield* sequence(99)
      const b = yield* sequence(99)
      const c = yield* sequence(100)
      assert.deepStrictEqual(a.decisions, b.decisions)
      assert.deepStrictEqual(a.client, b.client, "the client sees the same failures, request by request")
      assert.notDeepEqual(a.decisions, c.decisions)
      console.log(`seed 99: first faults at ${a.decisions.flatMap((d, i) => (d.startsWith("ok") ? [] : [`${i}:${d.split(":")[0]}`])).slice(0, 8).join(" ")}`)
    }), 30_000)

  it.live("a batch is one request counted under each method; pause and exempt turn faults off", () =>
    Effect.gen(function*() {
      const node = yield* anvil
      const proxy = yield* withProxy({ upstream: node.rpcUrl, seed: 3, reset: 1, lost: 0, maxDelayMs: 0, quiet: true })
      const batch = yield* Effect.promise(() =>
        fetch(proxy.url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify([
            { jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] },
            { jsonrpc: "2.0", id: 2, method: "eth_blockNumber", params: [] }
          ])
        }).then(() => "answered", (e: unknown) => `failed: ${String(e)}`)
      )
      assert.match(batch, /^failed/)
      let stats = proxy.stats()
      assert.strictEqual(stats.requests, 1)
      assert.strictEqual(stats.totals.reset, 1)
      assert.strictEqual(stats.byMethod["eth_chainId"]!.reset, 1)
      assert.strictEqual(stats.byMethod["eth_blockNumber"]!.reset, 1)

      proxy.setFaults({ exempt: ["eth_chainId"] })
      assert.isTrue((yield* Effect.promise(() => rpc(proxy.url, "eth_chainId"))).ok)
      assert.isFalse((yield* Effect.promise(() => rpc(proxy.url, "eth_blockNumber"))).ok)

      proxy.setFaults({ paused: true })
      const paused = yield* Effect.promise(() => pool(50, 5, () => rpc(proxy.url, "eth_blockNumber")))
      assert.isTrue(paused.every((o) => o.ok))
      proxy.setFaults({ paused: false })
      assert.isFalse((yield* Effect.promise(() => rpc(proxy.url, "eth_blockNumber"))).ok)
      stats = proxy.stats()
      assert.strictEqual(stats.byMethod["eth_blockNumber"]!.ok, 50)
      assert.strictEqual(stats.byMethod["eth_blockNumber"]!.reset, 3)
    }), 30_000)
})
