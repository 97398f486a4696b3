import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { Submission } from "../../src/domain/mining.ts"
import { solveReference } from "../../src/domain/pow.ts"
import type { RunningDevnet } from "../../src/layers/chain/devnet/Devnet.ts"
import { make as makeViemChain } from "../../src/layers/chain/ViemChain.ts"
import type { Chain } from "../../src/services/Chain.ts"
import { freshDevnet } from "../support/anvil.ts"

const CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"

/** A JSON-RPC proxy in front of the devnet that counts the calls going through it, by method. */
const countingProxy = (target: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const counts = new Map<string, number>()
      const server = createServer((request, response) => {
        const parts: Array<Buffer> = []
        request.on("data", (part: Buffer) => parts.push(part))
        request.on("end", async () => {
          const body = Buffer.concat(parts).toString("utf8")
          const parsed = JSON.parse(body) as { method: string } | ReadonlyArray<{ method: string }>
          for (const call of Array.isArray(parsed) ? parsed : [parsed]) {
            counts.set(call.method, (counts.get(call.method) ?? 0) + 1)
          }
          const answer = await fetch(target, { method: "POST", headers: { "content-type": "application/json" }, body })
          response.writeHead(answer.status, { "content-type": "application/json" })
          response.end(await answer.text())
        })
      })
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
      return { server, counts, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
    }),
    ({ server }) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
  )

const chainAt = (rpcUrl: string, devnet: RunningDevnet) =>
  makeViemChain({
    rpcUrl,
    registry: devnet.registry,
    privateKey: Redacted.make(devnet.accounts[1]!.privateKey),
    pollingInterval: "20 millis"
  })

const rpc = (devnet: RunningDevnet, method: string, params: ReadonlyArray<unknown>) =>
  Effect.promise(() =>
    fetch(devnet.rpcUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params })
    }).then((r) => r.json())
  )

/** Waits (real time) until the devnet's keeper has opened `count` rounds. */
const roundsOpened = (chain: Chain["Service"], count: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200; i++) {
      const rounds = yield* chain.rounds
      if (rounds.length >= count) return rounds
      yield* Effect.sleep("20 millis")
    }
    return assert.fail(`the keeper did not open ${count} rounds`)
  })

/** Claims the round's only chunk and submits it: the round is then fully submitted. */
const fill = (chain: Chain["Service"], roundId: bigint) =>
  Effect.gen(function*() {
    const id = yield* chain.identity
    const claim = yield* chain.claimChunk(roundId)
    const gradientHash = `0x${"ab".repeat(32)}`
    const solution = yield* solveReference({ ...id, roundId, chunkId: claim.chunkId, gradientHash, cid: CID, difficulty: 16 })
    yield* chain.submitGradient(
      new Submission({ roundId, chunkId: claim.chunkId, cid: CID, gradientHash, powNonce: solution.nonce })
    )
  })

describe("ViemChain rounds", () => {
  it.live("settled rounds (all submitted, or past their deadline) are read once; the answer stays the chain's", () =>
    Effect.gen(function*() {
      // One chunk a round: the keeper opens the next round as soon as the newest one is claimed.
      const devnet = yield* freshDevnet({
        roundPlan: (roundId) => ({
          modelCid: CID,
          spec: `{"round":${roundId}}`,
          chunkCount: 1,
          difficulty: 16,
          durationSeconds: 3600
        })
      })
      const proxy = yield* countingProxy(devnet.rpcUrl)
      const chain = yield* chainAt(proxy.url, devnet)
      const fresh = () => chainAt(devnet.rpcUrl, devnet).pipe(Effect.flatMap((c) => c.rounds))
      const reads = Effect.gen(function*() {
        proxy.counts.clear()
        const rounds = yield* chain.rounds
        return { rounds, calls: proxy.counts.get("eth_call") ?? 0 }
      })

      yield* fill(chain, 1n)
      yield* roundsOpened(chain, 2)
      yield* fill(chain, 2n)
      yield* roundsOpened(chain, 3)
      // Rounds 1 and 2 are fully submitted: read once more (they were open when last read), then never again.
      yield* chain.rounds
      const afterFill = yield* reads
      assert.strictEqual(afterFill.calls, 3, "roundCount, then roundIdAt and getRound of round 3 only")
      assert.deepStrictEqual(afterFill.rounds, yield* fresh())
      assert.deepStrictEqual(afterFill.rounds.map((r) => [r.roundId, r.submittedCount]), [[1n, 1], [2n, 1], [3n, 0]])

      // Round 3 passes its deadline; the keeper opens round 4. Once `now` has seen a block past the deadline,
      // round 3 is settled too.
      yield* rpc(devnet, "evm_increaseTime", [7200])
      yield* rpc(devnet, "evm_mine", [])
      yield* roundsOpened(chain, 4)
      yield* chain.now
      yield* chain.rounds
      const afterExpiry = yield* reads
      assert.strictEqual(afterExpiry.calls, 3, "roundCount, then round 4 only")
      assert.deepStrictEqual(afterExpiry.rounds, yield* fresh())
      assert.deepStrictEqual(afterExpiry.rounds.map((r) => r.roundId), [1n, 2n, 3n, 4n])
    }).pipe(Effect.scoped))

  it.live("an open round is read every time: its counts change", () =>
    Effect.gen(function*() {
      const devnet = yield* freshDevnet()
      const proxy = yield* countingProxy(devnet.rpcUrl)
      const chain = yield* chainAt(proxy.url, devnet)
      const [round] = yield* chain.rounds
      yield* chain.claimChunk(round!.roundId)
      const [again] = yield* chain.rounds
      assert.strictEqual(again!.nextChunk, round!.nextChunk + 1)
    }).pipe(Effect.scoped))
})
