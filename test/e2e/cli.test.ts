import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { settingsTable } from "../../src/domain/MinerConfigSchema.ts"
import { cliSync } from "../support/cli.ts"

const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) => cliSync(args, { env, timeoutMs: 20_000 })

const validKey = `0x${"5e".repeat(32)}`

describe("r3mes-miner mine: invalid configuration", () => {
  it("R3MES_POW_DIFFICULTY=12 stops with exit 2 and one line naming the variable and 16..32", () => {
    const run = cli(["mine"], { R3MES_POW_DIFFICULTY: "12" })
    assert.strictEqual(run.status, 2)
    assert.strictEqual(
      run.stderrLines[0],
      "R3MES_POW_DIFFICULTY=12 is invalid: expected an integer from 16 to 32 (flag --difficulty)"
    )
    assert.strictEqual(run.stderrLines.length, 2, run.stderr)
    assert.isTrue(run.stderrLines[1]!.startsWith("hint: "), run.stderr)
    assert.strictEqual(run.stdout, "")
  })

  it("--difficulty 40 stops with exit 2 and one line naming the flag, the variable and 16..32", () => {
    const run = cli(["mine", "--difficulty", "40"])
    assert.strictEqual(run.status, 2)
    assert.strictEqual(
      run.stderrLines[0],
      "--difficulty 40 is invalid: expected an integer from 16 to 32 (env R3MES_POW_DIFFICULTY)"
    )
    assert.strictEqual(run.stderrLines.length, 2, run.stderr)
  })

  it("a flag overrides a bad env var, and is itself checked", () => {
    assert.strictEqual(cli(["mine", "--print-config", "--difficulty", "20"], { R3MES_POW_DIFFICULTY: "12" }).status, 0)
    assert.strictEqual(cli(["mine", "--difficulty", "15"], { R3MES_POW_DIFFICULTY: "20" }).status, 2)
  })

  it("R3MES_MAX_RETRIES=-1 stops with exit 2", () => {
    const run = cli(["mine"], { R3MES_MAX_RETRIES: "-1" })
    assert.strictEqual(run.status, 2)
    assert.strictEqual(
      run.stderrLines[0],
      "R3MES_MAX_RETRIES=-1 is invalid: expected an integer from 0 to 100 (flag --max-retries)"
    )
  })

  it("a malformed private key is rejected without being shown", () => {
    const badKey = `0x${"c0ffee".repeat(10)}`
    for (const run of [cli(["mine"], { R3MES_PRIVATE_KEY: badKey }), cli(["mine", "--private-key", badKey])]) {
      assert.strictEqual(run.status, 2)
      assert.include(run.stderrLines[0], "R3MES_PRIVATE_KEY")
      assert.include(run.stderrLines[0], "0x followed by 64 hex digits")
      assert.notInclude(run.stderr + run.stdout, "c0ffee")
    }
  })

  it("an unknown flag is a usage error (exit 2)", () => {
    const run = cli(["mine", "--no-such-flag"])
    assert.strictEqual(run.status, 2)
    assert.include(run.stderr, "--no-such-flag")
  })

  it("--iterations must be at least 1", () => {
    const run = cli(["mine", "--iterations", "0"])
    assert.strictEqual(run.status, 2)
    assert.include(run.stderrLines[0], "--iterations 0 is invalid")
  })
})

describe("r3mes-miner mine --print-config", () => {
  it("prints the resolved configuration with secrets redacted and its sources, and mines nothing", () => {
    const run = cli(["mine", "--print-config", "--iterations", "2", "--stats-port", "9000"], {
      R3MES_PRIVATE_KEY: validKey,
      R3MES_ADMIN_TOKEN: "admin-token-value"
    })
    assert.strictEqual(run.status, 0, run.stderr)
    assert.match(run.stdout, /R3MES_STATS_PORT\s+9000\s+flag\s+--stats-port/)
    assert.match(run.stdout, /R3MES_PRIVATE_KEY\s+<redacted>\s+env/)
    assert.match(run.stdout, /R3MES_POW_DIFFICULTY\s+20\s+default/)
    assert.notInclude(run.stdout + run.stderr, validKey.slice(2))
    assert.notInclude(run.stdout + run.stderr, "admin-token-value")
  })

  it("--json prints the configuration as JSON on stdout", () => {
    const run = cli(["mine", "--print-config", "--json", "--private-key", validKey])
    assert.strictEqual(run.status, 0, run.stderr)
    const printed = JSON.parse(run.stdout) as { config: Record<string, unknown>; sources: Record<string, string> }
    assert.strictEqual(printed.config["R3MES_PRIVATE_KEY"], "<redacted>")
    assert.strictEqual(printed.config["R3MES_POW_DIFFICULTY"], 20)
    assert.strictEqual(printed.sources["R3MES_PRIVATE_KEY"], "flag")
    assert.notInclude(run.stdout, validKey.slice(2))
  })

  it("R3MES_RPC_URL without a registry stops with one clear line and exit 1", () => {
    const dataDir = mkdtempSync(join(tmpdir(), "r3mes-cli-"))
    const run = cli(["mine", "--iterations", "1", "--data-dir", dataDir, "--log-file", join(dataDir, "miner.log")], {
      R3MES_RPC_URL: "http://127.0.0.1:1",
      R3MES_PRIVATE_KEY: validKey
    })
    assert.strictEqual(run.status, 1, run.stderr)
    assert.include(run.stderrLines.join("\n"), "R3MES_RPC_URL is set but R3MES_REGISTRY_ADDRESS is not")
    assert.include(run.stderrLines.join("\n"), "hint: ")
  })
})

describe("r3mes-miner --help", () => {
  it("mine --help exits 0 and lists every flag with its env var", () => {
    const run = cli(["mine", "--help"])
    assert.strictEqual(run.status, 0, run.stderr)
    for (const setting of settingsTable) {
      assert.match(run.stdout, new RegExp(`--${setting.flag} ${setting.metavar}\\s`), `--${setting.flag}`)
      assert.include(run.stdout, setting.env)
    }
    assert.include(run.stdout, "--iterations N")
    assert.include(run.stdout, "--json")
  })

  it("--help exits 0 and lists the mine subcommand", () => {
    const run = cli(["--help"])
    assert.strictEqual(run.status, 0, run.stderr)
    assert.match(run.stdout, /SUBCOMMANDS\s+mine\s/)
  })
})
