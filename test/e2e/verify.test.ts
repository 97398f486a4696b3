import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { cli } from "../support/cli.ts"
import { devnetProcess, mineOn, minerAccount, networkFlags, verifyArgs, type VerifySummary } from "../support/devnetProcess.ts"
import { startJsIpfs } from "../support/jsipfs.ts"

describe("r3mes-miner verify against a standalone devnet", () => {
  it.live("a miner's submissions in another process each get one verdict; a second pass sends none", () =>
    Effect.gen(function*() {
      const ipfs = yield* startJsIpfs
      const { info } = yield* devnetProcess
      const mined = yield* mineOn(info, ipfs.url, 3, mkdtempSync(join(tmpdir(), "r3mes-verify-miner-")))
      assert.strictEqual(mined.status, 0, mined.stderr)
      assert.strictEqual((JSON.parse(mined.stdout) as { committed: number }).committed, 3)

      const verifierDir = mkdtempSync(join(tmpdir(), "r3mes-verifier-"))
      const verify = () =>
        Effect.promise(() =>
          cli(verifyArgs(info, ipfs.url, verifierDir), { env: { R3MES_PRIVATE_KEY: info.verifier.private_key }, timeoutMs: 120_000 })
        )
      const first = yield* verify()
      assert.strictEqual(first.status, 0, first.stderr)
      const summary = JSON.parse(first.stdout) as VerifySummary
      assert.strictEqual(summary.submissions, 3)
      assert.deepStrictEqual(summary.verdicts, { accepted_exact: 3 })
      assert.notInclude(first.stdout + first.stderr, info.verifier.private_key.slice(2))

      const second = yield* verify()
      assert.strictEqual(second.status, 0, second.stderr)
      const again = JSON.parse(second.stdout) as VerifySummary
      assert.strictEqual(again.submissions, 0)
      assert.deepStrictEqual(again.verdicts, {})

      // A miner's key is not a verifier's: refused with a hint, nothing recorded.
      const otherDir = mkdtempSync(join(tmpdir(), "r3mes-verifier-"))
      const notVerifier = yield* Effect.promise(() =>
        cli(["verify", "--once", ...networkFlags(info, ipfs.url), "--data-dir", otherDir, "--log-file", join(otherDir, "other.log")], {
          env: { R3MES_PRIVATE_KEY: info.accounts[minerAccount]!.private_key },
          timeoutMs: 60_000
        })
      )
      assert.strictEqual(notVerifier.status, 1, notVerifier.stderr)
      assert.match(notVerifier.stderr, /hint: .*setVerifier/)
    }).pipe(Effect.scoped), 300_000)
})
