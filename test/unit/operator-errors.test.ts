import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { BaseError, encodeErrorResult, HttpRequestError, InsufficientFundsError, TransactionExecutionError } from "viem"
import { privateKeyToAccount } from "viem/accounts"
import { bar, clearLine, makeProgress } from "../../src/cli/progress.ts"
import { listFooter } from "../../src/cli/statusRender.ts"
import { classify } from "../../src/domain/classify.ts"
import { exposedApiWarning, isLoopbackHost, resolveLogFile } from "../../src/domain/minerSettings.ts"
import type { ChainRevertError } from "../../src/domain/errors.ts"
import { miningRegistryAbi } from "../../src/layers/chain/MiningRegistryArtifact.ts"
import { fromViemError, htmlPageExcerpt } from "../../src/layers/chain/viemErrors.ts"
import { explainPathError, pathProblem } from "../../src/layers/pathAccess.ts"
import { FileLogger } from "../../src/layers/telemetry/FileLogger.ts"

/** Issue 15's operator annoyances: every error path one line plus a `hint:` that names the fix. */

const fileInTheWay = () => {
  const dir = mkdtempSync(join(tmpdir(), "r3mes-operator-"))
  const file = join(dir, "file")
  writeFileSync(file, "")
  return file
}

describe("file-system errors name the path to fix", () => {
  it("a data dir under a file: ENOTDIR naming the file, with the setting in the hint", () => {
    const file = fileInTheWay()
    // What mkdirSync(recursive) says for a path under a file: the code and path of a different problem.
    const raw = Object.assign(new Error(`EEXIST: file already exists, mkdir '${file}'`), { code: "EEXIST", path: file })
    const error = classify(explainPathError(raw, join(file, "data")), "journal: locking the data dir", {
      setting: "--data-dir (R3MES_DATA_DIR)"
    })
    assert.strictEqual(error._tag, "ValidationError")
    assert.include(error.message, `${file} is a file, not a directory`)
    assert.strictEqual(
      error.hint,
      `${file} is a file where a directory is needed: move that file away, or set --data-dir (R3MES_DATA_DIR) to another path`
    )
  })

  it("a read-only mount reported as ENOENT by mkdir is reported as EROFS", () => {
    const raw = Object.assign(new Error("ENOENT: no such file or directory, mkdir '/ro/data'"), { code: "ENOENT", path: "/ro/data" })
    const error = classify(Object.assign(new Error("EROFS: /ro is on a read-only file system"), { code: "EROFS", path: "/ro" }))
    assert.strictEqual(error._tag, "ResourceError")
    assert.include(error.hint ?? "", "/ro is on a read-only file system: remount it read-write")
    // The probe itself finds nothing wrong with a writable directory, and leaves the error as it was.
    const writable = mkdtempSync(join(tmpdir(), "r3mes-operator-"))
    assert.isUndefined(pathProblem(join(writable, "data")))
    assert.strictEqual(explainPathError(raw, join(writable, "data")), raw)
  })

  it("EACCES with a path: not writable, fix named", () => {
    const error = classify(Object.assign(new Error("EACCES: permission denied, open '/d/x'"), { code: "EACCES", path: "/d/x" }), "", {
      setting: "--log-file (R3MES_LOG_FILE)"
    })
    assert.strictEqual(error._tag, "AuthenticationError")
    assert.strictEqual(
      error.hint,
      "this user may not access /d/x as needed: fix its owner or mode (chown/chmod), or set --log-file (R3MES_LOG_FILE) to another path"
    )
  })

  it("SQLite's 'unable to open database file' gets a hint", () => {
    const error = classify(new Error("unable to open database file"), "journal: opening /d/journal.sqlite")
    assert.strictEqual(error._tag, "ResourceError")
    assert.include(error.hint ?? "", "must be writable")
  })

  it.effect("the log file under a file: the hint names the file and --log-file", () =>
    Effect.gen(function*() {
      const file = fileInTheWay()
      const exit = yield* Effect.flip(Effect.scoped(Layer.build(FileLogger.layer({ path: join(file, "miner.log") }))))
      assert.strictEqual(exit._tag, "ResourceError")
      assert.strictEqual(
        exit.hint,
        `${file} is a file where a directory is needed: move that file away, or set --log-file (R3MES_LOG_FILE) to another path`
      )
    }))
})

describe("an RPC endpoint that answers a web page", () => {
  const page = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>" +
    "x".repeat(5000) + "</body></html>"

  it("quotes the page's title, never the page", () => {
    assert.strictEqual(htmlPageExcerpt(page), "502 Bad Gateway")
    assert.strictEqual(htmlPageExcerpt(`<html><body><p>${"word ".repeat(40)}</p></body></html>`)?.length, 80)
    assert.isUndefined(htmlPageExcerpt("{\"jsonrpc\":\"2.0\"}"))
  })

  it("a 5xx HTML page: one line with the status and the title, the hint on --rpc-url", () => {
    // As viem's http transport builds it: the non-JSON body quoted as a JSON string.
    const error = fromViemError(
      new HttpRequestError({ url: "https://rpc.example/v3/secretkey", status: 502, details: JSON.stringify(page) }),
      "reaching the chain"
    )
    assert.strictEqual(error._tag, "NetworkError")
    assert.strictEqual(error.message, "reaching the chain: https://rpc.example<redacted> answered HTTP 502 with an HTML page (502 Bad Gateway)")
    assert.notInclude(`${error.message} ${error.cause ?? ""}`, "xxxx")
    assert.include(error.hint ?? "", "--rpc-url (R3MES_RPC_URL) must be the chain's JSON-RPC endpoint")
  })

  it("a 200 web page (a web server at the URL) is the wrong URL, not a network failure", () => {
    const error = fromViemError(
      new HttpRequestError({ url: "http://127.0.0.1:1", cause: new SyntaxError("Unexpected token '<', \"<!DOCTYPE \"... is not valid JSON") }),
      "reaching the chain"
    )
    assert.strictEqual(error._tag, "ValidationError")
    assert.include(error.message, "answered with an HTML page")
  })
})

describe("insufficient funds names the account", () => {
  const account = privateKeyToAccount("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
  const insufficient = () => new InsufficientFundsError({ cause: new Error("insufficient funds for gas * price + value") } as never)

  it("from viem's error (the transaction's `from:`)", () => {
    const error = fromViemError(new TransactionExecutionError(insufficient(), { account } as never), "submitting")
    assert.strictEqual(error._tag, "AuthenticationError")
    assert.include(error.hint ?? "", `fund the miner account ${account.address}`)
  })

  it("from the caller, when viem's error does not say (a raw transaction's broadcast)", () => {
    const error = fromViemError(insufficient(), "broadcasting", { account: account.address })
    assert.include(error.hint ?? "", `fund the miner account ${account.address}`)
  })
})

describe("the progress bar and log lines", () => {
  it("a log line clears the bar, is written on its own line, and the bar comes back", () =>
    Effect.gen(function*() {
      const written: Array<string> = []
      const progress = makeProgress({ tty: true, json: false, iterations: 10, stream: { write: (t: string) => written.push(t) } })
      yield* progress.started("http://127.0.0.1:8080", { recovered: 0, committed: 0, rolled_back: 0, failed: 0, orphan_pins_released: [] } as never, "x", "cpu")
      assert.deepStrictEqual(written, [bar(0, 10)])
      progress.writeLog("2026-01-01T00:00:00.000Z WARN  [r3mes_miner] something\n")
      assert.deepStrictEqual(written, [bar(0, 10), clearLine, "2026-01-01T00:00:00.000Z WARN  [r3mes_miner] something\n", bar(0, 10)])
      yield* progress.done
      progress.writeLog("after\n")
      // Once the bar is gone (the summary follows), lines are written as they are.
      assert.deepStrictEqual(written.slice(-2), [clearLine, "after\n"])
    }).pipe(Effect.runSync))

  it("not a TTY: log lines as they are, no control sequences", () => {
    const written: Array<string> = []
    const progress = makeProgress({ tty: false, json: false, iterations: 3, stream: { write: (t: string) => written.push(t) } })
    progress.writeLog("a line\n")
    assert.deepStrictEqual(written, ["a line\n"])
  })

  it.effect("the FileLogger's console lines go through consoleWrite", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const path = join(mkdtempSync(join(tmpdir(), "r3mes-operator-")), "miner.log")
      yield* Effect.logWarning("to the console").pipe(
        Effect.provide(FileLogger.layer({ path, console: "stderr", consoleLevel: "Warn", consoleWrite: (t) => lines.push(t) }))
      )
      assert.strictEqual(lines.length, 1)
      assert.match(lines[0]!, /WARN .*to the console\n$/)
      assert.include(readFileSync(path, "utf8"), "to the console")
    }))
})

describe("status's list footer", () => {
  it("says how many exist when --limit cuts the list", () => {
    assert.strictEqual(
      listFooter(20, { limit: 20, filter: "", total: 40, maxLimit: 1000 }),
      "the newest 20 of 40 transactions (--limit N for more, up to 1000)"
    )
    assert.strictEqual(
      listFooter(20, { limit: 20, filter: " in state committed", total: 1000, maxLimit: 1000 }),
      "the newest 20 of 1000 or more transactions in state committed (--limit N for more, up to 1000)"
    )
    assert.strictEqual(listFooter(7, { limit: 20, filter: "", total: 7, maxLimit: 1000 }), "7 transactions, newest first")
    assert.strictEqual(listFooter(20, { limit: 20, filter: "", total: 20, maxLimit: 1000 }), "20 transactions, newest first")
  })
})

describe("settings", () => {
  it("the log file defaults into the data dir", () => {
    assert.strictEqual(resolveLogFile("<data dir>/logs/miner.log", "./.r3mes"), "./.r3mes/logs/miner.log")
    assert.strictEqual(resolveLogFile("<data dir>/logs/miner.log", "/"), "/logs/miner.log")
    assert.strictEqual(resolveLogFile("logs/miner.log", "/srv/a"), "logs/miner.log")
  })

  it("a non-loopback --stats-host is warned about, with a hint; loopback is not", () => {
    for (const host of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"]) {
      assert.isTrue(isLoopbackHost(host), host)
      assert.isUndefined(exposedApiWarning(host, "http://x"))
    }
    for (const host of ["0.0.0.0", "::", "192.168.1.5", "miner.example.com"]) assert.isFalse(isLoopbackHost(host), host)
    const warning = exposedApiWarning("0.0.0.0", "http://0.0.0.0:8080")!
    const [line, hint, ...rest] = warning.split("\n")
    assert.deepStrictEqual(rest, [])
    assert.include(line, "reachable from the network")
    assert.include(line, "admin routes still need R3MES_ADMIN_TOKEN")
    assert.match(hint!, /^hint: keep --stats-host 127\.0\.0\.1/)
  })
})

describe("a registry revert met while preparing a transaction (a gas estimate)", () => {
  it("is decoded with the registry's ABI: NoFreeChunk reads as such (another runner took the last chunk)", () => {
    // What viem raises when estimating the gas of a claim reverts: the custom error's raw data in the cause chain.
    const data = encodeErrorResult({ abi: miningRegistryAbi, errorName: "NoFreeChunk", args: [3n] })
    const rpcError = Object.assign(new Error("execution reverted"), { data })
    const error = new BaseError("Execution reverted with reason: custom error 0x79028b7f", { cause: rpcError })
    const translated = fromViemError(error, "preparing claimChunk")
    assert.strictEqual(translated._tag, "ChainRevertError")
    assert.strictEqual((translated as ChainRevertError).errorName, "NoFreeChunk")
    assert.deepStrictEqual((translated as ChainRevertError).args, ["3"])
    // Data that is no registry error stays what it was.
    const other = new BaseError("Execution reverted", { cause: Object.assign(new Error("x"), { data: "0xdeadbeef00" }) })
    assert.notStrictEqual(fromViemError(other, "preparing claimChunk")._tag, "ChainRevertError")
  })
})

