import { spawn } from "node:child_process"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { cli, minerEnv, program } from "../support/cli.ts"
import { startJsIpfs } from "../support/jsipfs.ts"

interface DevnetJson {
  readonly rpc_url: string
  readonly registry: string
  readonly verifier: { readonly address: string; readonly private_key: string }
  readonly accounts: ReadonlyArray<{ readonly address: string; readonly private_key: string }>
}

/** `r3mes-miner devnet` in its own process, for the scope: its JSON once it is up. */
const devnetProcess = Effect.acquireRelease(
  Effect.promise(() => {
    const dataDir = mkdtempSync(join(tmpdir(), "r3mes-verify-devnet-"))
    const child = spawn(process.execPath, [program, "devnet", "--port", "0", "--data-dir", dataDir], {
      env: minerEnv(),
      stdio: ["ignore", "pipe", "pipe"]
    })
    return new Promise<{ readonly info: DevnetJson; readonly child: typeof child }>((resolve, reject) => {
      let out = ""
      child.stdout.on("data", (d) => {
        out += d
        if (out.includes("\n")) resolve({ info: JSON.parse(out.split("\n")[0]!) as DevnetJson, child })
      })
      child.on("exit", (code) => reject(new Error(`devnet exited with ${code}`)))
    })
  }),
  ({ child }) =>
    Effect.promise(() =>
      new Promise<void>((resolve) => {
        child.on("exit", () => resolve())
        child.kill("SIGTERM")
      })
    )
)

interface VerifySummary {
  readonly submissions: number
  readonly verdicts: Readonly<Record<string, number>>
  readonly already_on_chain: number
  readonly cursor: string
}

describe("r3mes-miner verify against a standalone devnet", () => {
  it.live("a miner's submissions in another process each get one verdict; a second pass sends none", () =>
    Effect.gen(function*() {
      const ipfs = yield* startJsIpfs
      const { info } = yield* devnetProcess
      const chainFlags = ["--rpc-url", info.rpc_url, "--registry", info.registry, "--ipfs", ipfs.url, "--stats-port", "0"]
      const minerDir = mkdtempSync(join(tmpdir(), "r3mes-verify-miner-"))
      const mined = yield* Effect.promise(() =>
        cli(["mine", "--json", "--iterations", "3", ...chainFlags, "--data-dir", minerDir, "--log-file", join(minerDir, "miner.log")], {
          env: { R3MES_PRIVATE_KEY: info.accounts[3]!.private_key },
          timeoutMs: 120_000
        })
      )
      assert.strictEqual(mined.status, 0, mined.stderr)
      assert.strictEqual((JSON.parse(mined.stdout) as { committed: number }).committed, 3)

      const verifierDir = mkdtempSync(join(tmpdir(), "r3mes-verifier-"))
      const verify = () =>
        Effect.promise(() =>
          cli(["verify", "--once", "--json", ...chainFlags, "--data-dir", verifierDir, "--log-file", join(verifierDir, "verifier.log")], {
            env: { R3MES_PRIVATE_KEY: info.verifier.private_key },
            timeoutMs: 120_000
          })
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
      const notVerifier = yield* Effect.promise(() =>
        cli(["verify", "--once", ...chainFlags, "--data-dir", mkdtempSync(join(tmpdir(), "r3mes-verifier-")), "--log-file", join(verifierDir, "other.log")], {
          env: { R3MES_PRIVATE_KEY: info.accounts[3]!.private_key },
          timeoutMs: 60_000
        })
      )
      assert.strictEqual(notVerifier.status, 1, notVerifier.stderr)
      assert.match(notVerifier.stderr, /hint: .*setVerifier/)
    }).pipe(Effect.scoped), 300_000)
})
