import { spawnSync } from "node:child_process"
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import { createServer as createNetServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { cli, cliSync, minerEnv, program } from "../support/cli.ts"
import { devnetProcess, minerAccount } from "../support/devnetProcess.ts"

/**
 * Issue 15, as an operator meets it: every error path prints one line plus a `hint:` naming the fix, and the
 * defaults and warnings an operator relies on. The real CLI, as a child process.
 */

const tempDir = (prefix: string) => mkdtempSync(join(tmpdir(), `r3mes-operator-${prefix}-`))

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createNetServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

/** The two lines of an error: the message, then `hint:`. */
const errorLines = (stderr: string) => stderr.split("\n").filter((line) => line.startsWith("r3mes-miner:") || line.startsWith("hint:"))

describe("file-system errors", () => {
  it("a data dir under a file: ENOTDIR, the hint names the file and --data-dir", () => {
    const dir = tempDir("enotdir")
    const file = join(dir, "file")
    writeFileSync(file, "")
    const run = cliSync(["mine", "--iterations", "1", "--data-dir", join(file, "data"), "--log-file", join(dir, "miner.log")], {
      cwd: dir,
      timeoutMs: 60_000
    })
    assert.strictEqual(run.status, 1, run.stderr)
    assert.deepStrictEqual(errorLines(run.stderr), [
      `r3mes-miner: journal: locking the data dir ${join(file, "data")}: ENOTDIR: ${file} is a file, not a directory`,
      `hint: ${file} is a file where a directory is needed: move that file away, or set --data-dir (R3MES_DATA_DIR) to another path`
    ])
  })

  it("a log file under a file: the hint names the file and --log-file, not EEXIST", () => {
    const dir = tempDir("enotdir-log")
    const file = join(dir, "file")
    writeFileSync(file, "")
    const run = cliSync(["mine", "--iterations", "1", "--data-dir", join(dir, "data"), "--log-file", join(file, "miner.log")], {
      cwd: dir,
      timeoutMs: 60_000
    })
    assert.strictEqual(run.status, 1, run.stderr)
    assert.notInclude(run.stderr, "EEXIST")
    assert.deepStrictEqual(errorLines(run.stderr), [
      `r3mes-miner: cannot open the log file ${join(file, "miner.log")} (ENOTDIR: ${file} is a file, not a directory)`,
      `hint: ${file} is a file where a directory is needed: move that file away, or set --log-file (R3MES_LOG_FILE) to another path`
    ])
  })

  const root = process.getuid?.() === 0
  /** As root a read-only mount is the only thing root cannot write; `unshare -m` gives the test its own. */
  const canMount = root && spawnSync("unshare", ["-m", "true"]).status === 0

  it.skipIf(!canMount)("a data dir on a read-only file system: EROFS (mkdir said ENOENT), remount in the hint", () => {
    const dir = tempDir("erofs")
    const ro = join(dir, "ro")
    mkdirSync(ro)
    const script = `mount -t tmpfs -o ro tmpfs '${ro}' && exec '${process.execPath}' '${program}' mine --iterations 1 ` +
      `--data-dir '${join(ro, "data")}' --log-file '${join(dir, "miner.log")}'`
    const run = spawnSync("unshare", ["-m", "sh", "-c", script], { cwd: dir, env: minerEnv(), encoding: "utf8", timeout: 60_000 })
    assert.strictEqual(run.status, 1, run.stderr)
    assert.notInclude(run.stderr, "ENOENT")
    assert.deepStrictEqual(errorLines(run.stderr), [
      `r3mes-miner: journal: locking the data dir ${join(ro, "data")}: EROFS: ${ro} is on a read-only file system`,
      `hint: ${ro} is on a read-only file system: remount it read-write, or set --data-dir (R3MES_DATA_DIR) to another path`
    ])
  })

  it("a data dir this user cannot write: not writable, chown/chmod in the hint", () => {
    const dir = tempDir("eacces")
    chmodSync(dir, 0o777)
    const data = join(dir, "data")
    mkdirSync(data)
    chmodSync(data, 0o555)
    // Root writes anywhere: the miner runs as nobody then.
    const as = root ? { uid: 65534, gid: 65534 } : {}
    const run = spawnSync(process.execPath, [program, "mine", "--iterations", "1", "--data-dir", data, "--log-file", join(dir, "miner.log")], {
      cwd: dir,
      env: minerEnv({ HOME: dir }),
      encoding: "utf8",
      timeout: 60_000,
      ...as
    })
    assert.strictEqual(run.status, 1, run.stderr)
    // SQLite said only "unable to open database file", without a hint.
    assert.deepStrictEqual(errorLines(run.stderr), [
      `r3mes-miner: journal: locking the data dir ${data}: EACCES: ${data} is not writable by this user`,
      `hint: this user may not access ${data} as needed: fix its owner or mode (chown/chmod), or set --data-dir (R3MES_DATA_DIR) to another path`
    ])
  })
})

describe("an RPC URL that answers a web page", () => {
  let server: Server
  let url = ""
  beforeAll(async () => {
    const page = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>" +
      "<p>nginx</p>" + "padding ".repeat(500) + "</body></html>"
    server = createServer((_request, response) => {
      response.writeHead(502, { "content-type": "text/html" })
      response.end(page)
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const address = server.address()
    url = `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}/v3/secretkey`
  })
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

  it("one line with the status and the page's title, never the page; the hint names --rpc-url", async () => {
    const dir = tempDir("html")
    const run = await cli([
      "mine",
      "--iterations",
      "1",
      "--rpc-url",
      url,
      "--registry",
      "0x5FbDB2315678afecb367f032d93F642f64180aa3",
      "--data-dir",
      join(dir, "data"),
      "--log-file",
      join(dir, "miner.log")
    ], {
      cwd: dir,
      env: { R3MES_PRIVATE_KEY: "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d" },
      timeoutMs: 120_000
    })
    assert.strictEqual(run.status, 1, run.stderr)
    assert.notInclude(run.stderr, "padding")
    assert.notInclude(run.stderr, "secretkey")
    const [line, hint] = errorLines(run.stderr)
    assert.match(line!, /^r3mes-miner: .*http:\/\/127\.0\.0\.1:\d+<redacted> answered HTTP 502 with an HTML page \(502 Bad Gateway\)$/)
    assert.match(hint!, /^hint: --rpc-url \(R3MES_RPC_URL\) must be the chain's JSON-RPC endpoint, not a web page/)
  }, 150_000)
})

describe("a miner's data dir: warnings, log file, status and gradient inspect", () => {
  const dir = tempDir("mined")
  const data = join(dir, "data")
  let mined: Awaited<ReturnType<typeof cli>>
  beforeAll(async () => {
    // No --log-file: the default must land in the data dir, not in the working directory.
    mined = await cli(["mine", "--iterations", "2", "--json", "--stats-host", "0.0.0.0", "--stats-port", "0", "--data-dir", data], {
      cwd: dir,
      timeoutMs: 240_000
    })
  }, 300_000)

  it("the log file defaults to <data dir>/logs/miner.log; --print-config and --help say so", () => {
    assert.strictEqual(mined.status, 0, mined.stderr)
    assert.isTrue(existsSync(join(data, "logs", "miner.log")))
    assert.isFalse(existsSync(join(dir, "logs")))
    const printed = cliSync(["mine", "--print-config", "--data-dir", data], { cwd: dir })
    assert.match(printed.stdout, new RegExp(`^R3MES_LOG_FILE\\s+${data}/logs/miner\\.log\\s+default\\s+--log-file$`, "m"))
    const help = cliSync(["mine", "--help"], { cwd: dir })
    assert.include(help.stdout, "default: <data dir>/logs/miner.log")
  })

  it("--stats-host 0.0.0.0 warns once, on stderr and in the log, with a hint", () => {
    const warnings = mined.stderr.split("\n").filter((line) => line.includes("reachable from the network"))
    assert.strictEqual(warnings.length, 1, mined.stderr)
    assert.include(mined.stderr, "\nhint: keep --stats-host 127.0.0.1 (the default)")
    assert.include(readFileSync(join(data, "logs", "miner.log"), "utf8"), "reachable from the network")
  })

  it("status with an unknown TX_ID: one line and a hint", async () => {
    const port = await freePort()
    const run = cliSync(["status", "tx-9-9-deadbeef", "--data-dir", data, "--stats-port", String(port)], { cwd: dir })
    assert.strictEqual(run.status, 1)
    assert.deepStrictEqual(errorLines(run.stderr), [
      `r3mes-miner: no transaction tx-9-9-deadbeef in the journal ${join(data, "journal.sqlite")}`,
      "hint: check the id (tx-<round>-<chunk>-<suffix>) against the latest, listed by `r3mes-miner status`; " +
      "a transaction of another miner is in that miner's --data-dir"
    ])
  })

  it("status --limit 1 says how many there are", async () => {
    const port = await freePort()
    const run = cliSync(["status", "--limit", "1", "--data-dir", data, "--stats-port", String(port)], { cwd: dir })
    assert.strictEqual(run.status, 0, run.stderr)
    assert.include(run.stdout, "the newest 1 of 2 transactions (--limit N for more, up to 1000)")
  })

  it("gradient inspect CID without --expect-hash checks the hash against the recorded submission", () => {
    const summary = JSON.parse(mined.stdout) as { records: ReadonlyArray<{ ipfs_hash: string; gradient_hash: string }> }
    const record = summary.records[0]!
    const run = cliSync(["gradient", "inspect", record.ipfs_hash, "--data-dir", data], { cwd: dir, timeoutMs: 60_000 })
    assert.strictEqual(run.status, 0, run.stderr)
    const report = JSON.parse(run.stdout) as { recorded_check: { found: boolean; matches: boolean } }
    assert.deepInclude(report.recorded_check, { found: true, matches: true })
    assert.match(run.stderr, new RegExp(`^r3mes-miner: gradient hash ${record.gradient_hash} matches the submission of round \\d+ chunk \\d+`, "m"))
  })

  it("gradient inspect of a file no submission names: says so, with a hint", () => {
    const summary = JSON.parse(mined.stdout) as { records: ReadonlyArray<{ ipfs_hash: string }> }
    const envelope = join(dir, "envelope.r3gr")
    writeFileSync(envelope, cliSync(["ipfs", "cat", summary.records[0]!.ipfs_hash, "--data-dir", data], { cwd: dir }).stdoutBytes)
    // Another data dir: no journal records it.
    const run = cliSync(["gradient", "inspect", envelope, "--data-dir", join(dir, "other")], { cwd: dir, timeoutMs: 60_000 })
    assert.strictEqual(run.status, 0, run.stderr)
    const [line, hint] = errorLines(run.stderr)
    assert.match(line!, /^r3mes-miner: no submission names \S+ in the journal of .*: the hash is not checked$/)
    assert.match(hint!, /^hint: pass --rpc-url and --registry/)
  })
})

describe("gradient inspect on a configured chain", () => {
  it.live("without --expect-hash: the hash checked against the chain's GradientSubmitted naming the CID", () =>
    Effect.gen(function*() {
      const { info } = yield* devnetProcess
      const dir = tempDir("chain")
      const data = join(dir, "data")
      const chain = ["--rpc-url", info.rpc_url, "--registry", info.registry]
      const mined = yield* Effect.promise(() =>
        cli(["mine", "--iterations", "1", "--json", ...chain, "--stats-port", "0", "--data-dir", data], {
          cwd: dir,
          env: { R3MES_PRIVATE_KEY: info.accounts[minerAccount]!.private_key },
          timeoutMs: 120_000
        })
      )
      assert.strictEqual(mined.status, 0, mined.stderr)
      const record = (JSON.parse(mined.stdout) as { records: ReadonlyArray<{ ipfs_hash: string; gradient_hash: string }> }).records[0]!
      const run = yield* Effect.promise(() =>
        cli(["gradient", "inspect", record.ipfs_hash, ...chain, "--data-dir", data], { cwd: dir, timeoutMs: 60_000 })
      )
      assert.strictEqual(run.status, 0, run.stderr)
      const report = JSON.parse(run.stdout) as {
        recorded_check: { found: boolean; matches: boolean; submission: { source: string; by: string } }
      }
      assert.deepInclude(report.recorded_check, { found: true, matches: true })
      assert.strictEqual(report.recorded_check.submission.source, "chain")
      assert.strictEqual(report.recorded_check.submission.by.toLowerCase(), info.accounts[minerAccount]!.address.toLowerCase())
      assert.include(run.stderr, `gradient hash ${record.gradient_hash} matches the submission of round`)
      assert.include(run.stderr, "in the chain's GradientSubmitted events")
    }).pipe(Effect.scoped), 240_000)
})
