import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawnCli } from "../support/cli.ts"
import { devnetProcessWith, minerAccount, submittedChunks, verdictEvents } from "../support/devnetProcess.ts"

/**
 * Content reachability (DESIGN.md "Verification"): a devnet process with its verifier, a miner in another process,
 * each with its own embedded IPFS node and nothing shared but the chain; the miner peers with the verifier's node
 * (R3MES_IPFS_PEERS = an address from the devnet's JSON), and its submissions get their verdicts while it runs.
 */
describe("devnet --verify and a miner in another process, both on embedded IPFS nodes", () => {
  it.live("submissions get accepted_exact verdicts, their content fetched over bitswap from the miner", () =>
    Effect.gen(function*() {
      const { info } = yield* devnetProcessWith(["--verify"])
      assert.isAbove(info.ipfs?.length ?? 0, 0, "the devnet's JSON names its verifier's IPFS addresses")
      const peer = info.ipfs!.find((a) => a.startsWith("/ip4/127.0.0.1/"))!
      assert.match(peer, /\/p2p\/\w+$/)

      // A miner that keeps mining while the verifier fetches from it (its node is the only holder of its gradients).
      const minerDir = mkdtempSync(join(tmpdir(), "r3mes-peering-miner-"))
      const miner = spawnCli([
        "mine", "--rpc-url", info.rpc_url, "--registry", info.registry, "--ipfs-peers", peer,
        "--data-dir", minerDir, "--stats-port", "0", "--log-file", join(minerDir, "miner.log")
      ], { env: { R3MES_PRIVATE_KEY: info.accounts[minerAccount]!.private_key }, timeoutMs: 240_000 })
      yield* Effect.addFinalizer(() => Effect.promise(() => (miner.signal("SIGKILL"), miner.exited)))

      const deadline = Date.now() + 150_000
      let verdicts = yield* verdictEvents(info)
      while (verdicts.length < 3 && Date.now() < deadline && miner.running()) {
        yield* Effect.sleep("1 second")
        verdicts = yield* verdictEvents(info)
      }
      assert.isAtLeast(verdicts.length, 3, `verdicts while the miner ran; miner stderr: ${miner.stderr().slice(-2000)}`)
      const submitted = new Set((yield* submittedChunks(info)).map((s) => `${s.roundId}:${s.chunkId}`))
      for (const v of verdicts) {
        assert.isTrue(submitted.has(`${v.roundId}:${v.chunkId}`))
        assert.strictEqual(v.verifier.toLowerCase(), info.verifier.address.toLowerCase())
        assert.strictEqual(v.verdict, 1, `round ${v.roundId} chunk ${v.chunkId}: accepted_exact`)
      }
      miner.signal("SIGTERM")
      const exited = yield* Effect.promise(() => miner.exited)
      assert.strictEqual(exited.code, 0, exited.stderr.slice(-2000))
    }).pipe(Effect.scoped), 300_000)
})
