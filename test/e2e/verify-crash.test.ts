import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { verdictCodes } from "../../src/domain/verification.ts"
import { cli, spawnCli } from "../support/cli.ts"
import {
  type DevnetJson,
  devnetProcess,
  mineOn,
  submittedChunks,
  verdictEvents,
  verifyArgs,
  type VerifySummary
} from "../support/devnetProcess.ts"
import { startJsIpfs } from "../support/jsipfs.ts"

/**
 * Issue 13: a verifier killed with SIGKILL mid-run and restarted records every remaining verdict exactly once. The
 * verifier kills itself at a crash point (R3MES_CRASH_AT, src/testing/CrashPoints.ts) on its 2nd verdict, either
 * once the verdict is on chain (`after_verdict`: the journal does not know) or once its signed transaction is
 * journaled and not broadcast (`before_verdict_broadcast`: only the journal knows); a restart without the crash
 * point finishes. The chain, read by the test itself, is the judge.
 */

const perPhase = 4

const key = (c: { readonly roundId: bigint; readonly chunkId: number }) => `${c.roundId}:${c.chunkId}`

/** The verifier on `dataDir` killing itself at `crashAt`: it must die by SIGKILL, with nothing on stdout. */
const crashedVerify = (info: DevnetJson, ipfsUrl: string, dataDir: string, crashAt: string) =>
  Effect.promise(() =>
    spawnCli(verifyArgs(info, ipfsUrl, dataDir), {
      env: { R3MES_PRIVATE_KEY: info.verifier.private_key, R3MES_CRASH_AT: crashAt },
      timeoutMs: 300_000
    }).exited
  )

const verify = (info: DevnetJson, ipfsUrl: string, dataDir: string) =>
  Effect.promise(() =>
    cli(verifyArgs(info, ipfsUrl, dataDir), { env: { R3MES_PRIVATE_KEY: info.verifier.private_key }, timeoutMs: 300_000 })
  )

/** Every submission on chain has exactly one verdict of the devnet's verifier, accepted_exact; none of anyone else. */
const assertOneVerdictEach = Effect.fnUntraced(function*(info: DevnetJson, expectedSubmissions: number) {
  const submitted = yield* submittedChunks(info)
  assert.strictEqual(submitted.length, expectedSubmissions)
  const verdicts = yield* verdictEvents(info)
  for (const v of verdicts) assert.strictEqual(v.verifier.toLowerCase(), info.verifier.address.toLowerCase())
  assert.deepStrictEqual(verdicts.map(key).sort(), submitted.map(key).sort(), "one verdict per submission, none twice")
  for (const v of verdicts) assert.strictEqual(v.verdict, verdictCodes.accepted_exact, `verdict of ${key(v)}`)
})

describe("r3mes-miner verify killed by SIGKILL mid-run", () => {
  it.live("after_verdict and before_verdict_broadcast on the 2nd verdict: a restart records every remaining verdict exactly once", () =>
    Effect.gen(function*() {
      const ipfs = yield* startJsIpfs
      const { info } = yield* devnetProcess
      const minerDir = mkdtempSync(join(tmpdir(), "r3mes-verify-crash-miner-"))
      const verifierDir = mkdtempSync(join(tmpdir(), "r3mes-verify-crash-verifier-"))

      // Each phase: N new submissions, a verifier that dies on the 2nd verdict, a restart that finishes. The second
      // phase resumes the first one's verifier (its cursor is past the first N): a data dir survives several crashes.
      const phases = [
        { phase: 1, crashAt: "after_verdict:2", onChainAtCrash: 2 },
        { phase: 2, crashAt: "before_verdict_broadcast:2", onChainAtCrash: 1 }
      ] as const
      for (const { crashAt, onChainAtCrash, phase } of phases) {
        const mined = yield* mineOn(info, ipfs.url, perPhase, minerDir)
        assert.strictEqual(mined.status, 0, mined.stderr)
        assert.strictEqual((JSON.parse(mined.stdout) as { committed: number }).committed, perPhase)

        const crashed = yield* crashedVerify(info, ipfs.url, verifierDir, crashAt)
        assert.strictEqual(crashed.signal, "SIGKILL", `${crashAt}: ${crashed.stderr}`)
        assert.isFalse(crashed.timedOut)
        assert.strictEqual(crashed.stdout, "", "killed before its summary")
        assert.match(crashed.stderr, /R3MES_CRASH_AT: crash point reached/)
        // Where it died: after the 2nd verdict's receipt, or with the 2nd verdict journaled and never sent.
        assert.strictEqual((yield* verdictEvents(info)).length, (phase - 1) * perPhase + onChainAtCrash, crashAt)

        const restarted = yield* verify(info, ipfs.url, verifierDir)
        assert.strictEqual(restarted.status, 0, restarted.stderr)
        const summary = JSON.parse(restarted.stdout) as VerifySummary
        // The crashed run settled the 1st verdict; the 2nd was journaled (and, after_verdict, on chain): the restart
        // settles it from the journal, finds it on chain, and judges the remaining two.
        assert.strictEqual(summary.recovered, "recorded", `phase ${phase}: ${restarted.stdout}`)
        assert.strictEqual(summary.submissions, perPhase - 1, `phase ${phase}: ${restarted.stdout}`)
        assert.strictEqual(summary.already_on_chain, 1, `phase ${phase}: ${restarted.stdout}`)
        assert.deepStrictEqual(summary.verdicts, { accepted_exact: perPhase - 2 }, `phase ${phase}: ${restarted.stdout}`)
        assert.strictEqual(summary.no_verdict, 0)
        yield* assertOneVerdictEach(info, phase * perPhase)
      }

      // A pass after both: nothing new, nothing sent.
      const last = yield* verify(info, ipfs.url, verifierDir)
      assert.strictEqual(last.status, 0, last.stderr)
      const idle = JSON.parse(last.stdout) as VerifySummary
      assert.deepStrictEqual([idle.submissions, idle.verdicts, idle.recovered], [0, {}, null])
      yield* assertOneVerdictEach(info, 2 * perPhase)

      // A mining transaction's crash point is refused at start, before anything runs.
      const refused = yield* crashedVerify(info, ipfs.url, verifierDir, "after_pin:1")
      assert.strictEqual(refused.code, 1, refused.stderr)
      assert.match(refused.stderr, /R3MES_CRASH_AT=after_pin:1 is not a crash plan/)
    }).pipe(Effect.scoped), 900_000)
})
