import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { cli, spawnCli } from "../support/cli.ts"
import { devnetProcessWith, finalizedRounds, minerAccount, verdictEvents } from "../support/devnetProcess.ts"

/**
 * Learning rounds end to end (DESIGN.md "Learning rounds"): the devnet's round coordinator aggregates each round's
 * accepted gradients into the next round's model, and anyone recomputes every finalized round bit for bit.
 */

interface RoundLine {
  readonly round_id: string
  readonly finalized: boolean
  readonly accepted: number | null
  readonly test_accuracy: number | null
  readonly test_loss: number | null
  readonly weights_cid: string | null
}

describe("learning rounds on the embedded devnet", () => {
  it.live("mine 16 transactions: two rounds finalized, each reproduced by aggregate --check, listed by rounds", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "r3mes-learning-"))
      const common = ["--data-dir", dir, "--log-file", join(dir, "miner.log")]
      const mined = yield* Effect.promise(() =>
        cli(["mine", "--iterations", "16", "--json", "--stats-port", "0", ...common], { timeoutMs: 240_000 })
      )
      assert.strictEqual(mined.status, 0, mined.stderr.slice(-3000))
      const summary = JSON.parse(mined.stdout) as { committed: number; latest_round: { round_id: string; accepted: number; test_accuracy: number } | null }
      assert.strictEqual(summary.committed, 16)
      // 16 transactions fill rounds 1 and 2 (8 chunks each); the run ends once the second one is aggregated.
      assert.strictEqual(summary.latest_round?.round_id, "2")
      assert.strictEqual(summary.latest_round?.accepted, 8)

      const listed = yield* Effect.promise(() => cli(["rounds", "--json", ...common], { timeoutMs: 120_000 }))
      assert.strictEqual(listed.status, 0, listed.stderr)
      const rounds = JSON.parse(listed.stdout) as ReadonlyArray<RoundLine>
      const finalized = rounds.filter((r) => r.finalized)
      assert.deepStrictEqual(finalized.map((r) => r.round_id), ["1", "2"])
      for (const r of finalized) {
        assert.strictEqual(r.accepted, 8)
        assert.isNotNull(r.test_loss, "the loss is recomputed from the weights in the store")
      }
      // The model learns: the second aggregate scores better on the held-out digits than the first.
      assert.isAbove(finalized[1]!.test_accuracy!, finalized[0]!.test_accuracy!)
      assert.isBelow(finalized[1]!.test_loss!, finalized[0]!.test_loss!)
      assert.strictEqual(summary.latest_round?.test_accuracy, finalized[1]!.test_accuracy)

      for (const round of ["1", "2"]) {
        const checked = yield* Effect.promise(() => cli(["aggregate", round, "--check", "--json", ...common], { timeoutMs: 120_000 }))
        assert.strictEqual(checked.status, 0, checked.stderr)
        const report = JSON.parse(checked.stdout) as {
          weights_hash: string
          weights_cid: string
          accepted: number
          finalization: { weights_hash: string; weights_cid: string }
          check: { reproduces: boolean; mismatches: ReadonlyArray<string> }
        }
        assert.isTrue(report.check.reproduces, report.check.mismatches.join("; "))
        assert.strictEqual(report.weights_hash, report.finalization.weights_hash)
        assert.strictEqual(report.weights_cid, finalized.find((r) => r.round_id === round)!.weights_cid)
        assert.strictEqual(report.accepted, 8)
      }

      // Round 3 is open (if the keeper opened it before the run ended) or not there: nothing to check, said with a hint.
      const open = yield* Effect.promise(() => cli(["aggregate", "3", "--check", ...common], { timeoutMs: 120_000 }))
      assert.strictEqual(open.status, 1)
      assert.match(open.stderr, /round 3 (is not finalized yet|does not exist on this chain)\nhint: /)
      const bad = yield* Effect.promise(() => cli(["aggregate", "three", ...common]))
      assert.strictEqual(bad.status, 2)
      assert.match(bad.stderr, /hint: give a whole number/)
    }), 600_000)
})

describe("learning rounds across processes", () => {
  it.live("devnet --verify aggregates; a miner in another process trains round 2 from weights it fetches by CID", () =>
    Effect.gen(function*() {
      const { info } = yield* devnetProcessWith(["--verify"])
      const peer = info.ipfs!.find((a) => a.startsWith("/ip4/127.0.0.1/"))!
      const minerDir = mkdtempSync(join(tmpdir(), "r3mes-learning-peer-"))
      const miner = spawnCli([
        "mine", "--rpc-url", info.rpc_url, "--registry", info.registry, "--ipfs-peers", peer,
        "--data-dir", minerDir, "--stats-port", "0", "--log-file", join(minerDir, "miner.log")
      ], { env: { R3MES_PRIVATE_KEY: info.accounts[minerAccount]!.private_key }, timeoutMs: 300_000 })
      yield* Effect.addFinalizer(() => Effect.promise(() => (miner.signal("SIGKILL"), miner.exited)))

      // Round 2 starts from round 1's aggregate, pinned on the devnet's node only: the miner must fetch it (and
      // check its sha256) before training, and the verifier, recomputing from the same weights, accepts exactly.
      const deadline = Date.now() + 200_000
      let round2 = (yield* verdictEvents(info)).filter((v) => v.roundId === 2n)
      while (round2.length < 3 && Date.now() < deadline && miner.running()) {
        yield* Effect.sleep("1 second")
        round2 = (yield* verdictEvents(info)).filter((v) => v.roundId === 2n)
      }
      assert.isAtLeast(round2.length, 3, `round 2 verdicts; miner stderr: ${miner.stderr().slice(-3000)}`)
      for (const v of round2) assert.strictEqual(v.verdict, 1, `round 2 chunk ${v.chunkId}: accepted_exact`)
      const first = (yield* finalizedRounds(info)).find((f) => f.roundId === 1n)
      assert.isDefined(first, "round 1 finalized by the devnet's coordinator")
      assert.strictEqual(first!.acceptedCount, 8)
      assert.isAbove(first!.testAccuracyPpm, 200_000)
      miner.signal("SIGTERM")
      const exited = yield* Effect.promise(() => miner.exited)
      assert.strictEqual(exited.code, 0, exited.stderr.slice(-2000))
    }).pipe(Effect.scoped), 300_000)
})
