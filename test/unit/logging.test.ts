import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { testTask } from "../../src/testing/TestTaskSource.ts"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Redacted } from "effect"
import { afterEach, vi } from "vitest"
import { ValidationError } from "../../src/domain/errors.ts"
import { FileLogger, type LogLine } from "../../src/layers/telemetry/FileLogger.ts"
import { makeRedactor } from "../../src/domain/redaction.ts"
import { MiningCoordinator } from "../../src/services/MiningCoordinator.ts"
import { testMinerConfig } from "../../src/testing/testConfig.ts"
import { harness } from "../support/harness.ts"

const privateKeyHex = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
const privateKey = `0x${privateKeyHex}`
const adminToken = "admin-token-7f3c9e1d"
const txHash = `0x${"9f".repeat(32)}`

const task = (chunkId: number) => testTask(chunkId)

/** A log file in a directory that does not exist yet. */
const freshLogPath = () => join(mkdtempSync(join(tmpdir(), "r3mes-log-")), "nested", "logs", "miner.log")

const readLines = (path: string): Array<LogLine> =>
  readFileSync(path, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as LogLine)

afterEach(() => {
  vi.restoreAllMocks()
})

describe("FileLogger", () => {
  it.live("writes one JSON object per log call, with transaction_id, logger and an uppercase level", () => {
    const path = freshLogPath()
    return Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      const committed = yield* coordinator.mine(task(1))
      assert.strictEqual(committed.state, "committed")
      yield* Effect.logInfo("miner started")

      const lines = readLines(path)
      const text = readFileSync(path, "utf8")
      assert.strictEqual(text.trimEnd().split("\n").length, lines.length)
      for (const line of lines) {
        assert.match(line.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
        assert.oneOf(line.level, ["INFO", "WARN", "ERROR", "DEBUG"])
        assert.isString(line.message)
      }
      const own = lines.filter((l) => l.transaction_id === committed.transaction_id)
      // created + the 5 state changes up to committed, each with its transaction id.
      assert.isAtLeast(own.length, 6)
      assert.isTrue(own.every((l) => l.logger === "atomic_coordinator"))
      assert.isTrue(own.some((l) => l.message.endsWith("task_complete → committed")))
      const started = lines.find((l) => l.message === "miner started")
      assert.strictEqual(started?.logger, "r3mes_miner")
      assert.isUndefined(started?.transaction_id)
    }).pipe(Effect.provide(Layer.mergeAll(harness(), FileLogger.layer({ path }))))
  })

  it.live("a rollback logs 'Rolling back transaction' and an ERROR line, both with the transaction id", () => {
    const path = freshLogPath()
    return Effect.gen(function*() {
      const record = yield* (yield* MiningCoordinator).mine(task(2))
      assert.strictEqual(record.state, "rolled_back")
      const lines = readLines(path)
      const rollback = lines.find((l) => l.message.startsWith("Rolling back transaction"))
      assert.isDefined(rollback)
      assert.strictEqual(rollback?.transaction_id, record.transaction_id)
      assert.strictEqual(rollback?.logger, "atomic_coordinator")
      assert.include(rollback?.message, record.ipfs_hash!)
      const error = lines.find((l) => l.level === "ERROR")
      assert.strictEqual(error?.transaction_id, record.transaction_id)
      assert.include(error?.message, "rolled_back at ipfs_upload")
      // What the old guide's recipes grep for, on the raw text.
      const text = readFileSync(path, "utf8")
      assert.include(text, "\"level\":\"ERROR\"")
      assert.include(text, "atomic_coordinator")
      assert.include(text, "Rolling back transaction")
    }).pipe(Effect.provide(Layer.mergeAll(
      harness({ store: { faults: { add: { alwaysFail: new ValidationError({ message: "malformed content" }) } } } }),
      FileLogger.layer({ path })
    )))
  })

  it.live("transaction_id and logger are found in the message or the enclosing spans when not annotated", () => {
    const path = freshLogPath()
    return Effect.gen(function*() {
      yield* Effect.logWarning("Rolling back transaction tx-3-4-0a1b2c3d: unpin Qm… done")
      yield* Effect.logInfo("step started").pipe(
        Effect.withSpan("MiningCoordinator.training", { attributes: { "r3mes.transaction_id": "tx-1-1-aaaaaaaa" } }),
        Effect.withSpan("MiningLoop.iteration")
      )
      yield* Effect.logInfo("annotated").pipe(Effect.annotateLogs({ logger: "devnet", transaction_id: "tx-7-7-77777777", round: 7 }))
      const [fromText, fromSpan, annotated] = readLines(path)
      assert.strictEqual(fromText?.transaction_id, "tx-3-4-0a1b2c3d")
      assert.strictEqual(fromText?.level, "WARN")
      assert.strictEqual(fromSpan?.transaction_id, "tx-1-1-aaaaaaaa")
      assert.strictEqual(fromSpan?.logger, "atomic_coordinator")
      assert.strictEqual(fromSpan?.span, "MiningCoordinator.training")
      assert.isString(fromSpan?.trace_id)
      assert.strictEqual(annotated?.logger, "devnet")
      assert.strictEqual(annotated?.transaction_id, "tx-7-7-77777777")
      assert.deepStrictEqual(annotated?.annotations, { round: 7 })
    }).pipe(Effect.provide(FileLogger.layer({ path })))
  })

  it.live("configured secrets never reach the file, in any case or spelling", () => {
    const path = freshLogPath()
    return Effect.gen(function*() {
      yield* Effect.logInfo(`signing with ${privateKey.toUpperCase().replace("0X", "0x")}`)
      yield* Effect.logInfo(`raw key ${privateKeyHex} and tx ${txHash}`)
      yield* Effect.logWarning("token is", adminToken, { nested: { header: `Bearer ${adminToken}` } })
      yield* Effect.logInfo("annotated").pipe(Effect.annotateLogs({ authorization: `Bearer ${adminToken}` }))
      yield* Effect.fail(new Error(`rpc rejected key ${privateKey}`)).pipe(
        Effect.catchCause((cause) => Effect.logError("call failed", cause))
      )
      const text = readFileSync(path, "utf8")
      assert.notInclude(text.toLowerCase(), privateKeyHex)
      assert.notInclude(text, adminToken)
      assert.include(text, "<redacted>")
      // Hashes that are not secrets stay readable.
      assert.include(text, txHash)
      const lines = readLines(path)
      assert.strictEqual(lines.length, 5)
      assert.strictEqual(lines[0]?.message, "signing with <redacted>")
      assert.include(lines[4]?.cause, "<redacted>")
    }).pipe(Effect.provide(FileLogger.layer({
      path,
      secrets: [Option.some(Redacted.make(privateKey)), Redacted.make(adminToken), Option.none(), ""]
    })))
  })

  it.live("layerFromConfig writes R3MES_LOG_FILE and redacts the configured private key and admin token", () => {
    const config = testMinerConfig({
      logFile: freshLogPath(),
      privateKey: Option.some(Redacted.make(privateKey)),
      adminToken: Option.some(Redacted.make(adminToken))
    })
    return Effect.gen(function*() {
      yield* Effect.logInfo(`key ${privateKey} token ${adminToken}`)
      assert.strictEqual(readLines(config.logFile)[0]?.message, "key <redacted> token <redacted>")
    }).pipe(Effect.provide(FileLogger.layerFromConfig(config)))
  })

  it.live("layerFromConfig shows the RPC URL without its key, and hides the key wherever it appears", () => {
    const key = "0123456789abcdef0123456789abcdef"
    const config = testMinerConfig({ logFile: freshLogPath(), rpcUrl: Option.some(`wss://rpc.example.com/ws/v3/${key}`) })
    return Effect.gen(function*() {
      yield* Effect.logWarning(`cannot reach wss://rpc.example.com/ws/v3/${key}; key ${key}`)
      assert.strictEqual(
        readLines(config.logFile)[0]?.message,
        "cannot reach wss://rpc.example.com/<redacted>; key <redacted>"
      )
    }).pipe(Effect.provide(FileLogger.layerFromConfig(config)))
  })

  it.live("the file is rotated before it passes maxBytes, keeping `keep` old files", () => {
    const path = freshLogPath()
    const maxBytes = 4096
    return Effect.gen(function*() {
      for (let i = 0; i < 400; i++) yield* Effect.logInfo(`line ${i} ${"x".repeat(40)}`)
      assert.isTrue(existsSync(`${path}.1`))
      assert.isTrue(existsSync(`${path}.2`))
      assert.isFalse(existsSync(`${path}.3`))
      for (const file of [path, `${path}.1`, `${path}.2`]) assert.isAtMost(statSync(file).size, maxBytes)
      const newest = readLines(path)
      assert.strictEqual(newest.at(-1)?.message, `line 399 ${"x".repeat(40)}`)
      // The files hold consecutive lines, oldest in .2, with nothing lost in between.
      const numbers = [...readLines(`${path}.2`), ...readLines(`${path}.1`), ...newest].map((l) =>
        Number(l.message.split(" ")[1])
      )
      assert.deepStrictEqual(numbers, numbers.map((_, i) => numbers[0]! + i))
    }).pipe(Effect.provide(FileLogger.layer({ path, maxBytes, keep: 2 })))
  })

  it.live("appends to an existing file and counts its size towards rotation", () => {
    const path = freshLogPath()
    return Effect.gen(function*() {
      yield* Effect.scoped(Layer.build(FileLogger.layer({ path })))
      writeFileSync(path, "x".repeat(900) + "\n")
      yield* Effect.logInfo("after restart").pipe(Effect.provide(FileLogger.layer({ path, maxBytes: 1000 })))
      assert.isTrue(existsSync(`${path}.1`))
      assert.strictEqual(readLines(path)[0]?.message, "after restart")
    })
  })

  it.live("console output goes to stderr only when asked, at the console level, redacted", () => {
    const path = freshLogPath()
    const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true)
    const stdout = vi.spyOn(process.stdout, "write")
    return Effect.gen(function*() {
      yield* Effect.logInfo("quiet")
      yield* Effect.logWarning(`loud ${adminToken}`)
      const written = stderr.mock.calls.map((c) => String(c[0])).join("")
      assert.notInclude(written, "quiet")
      assert.include(written, "loud <redacted>")
      assert.include(written, "WARN")
      assert.isFalse(stdout.mock.calls.some((c) => String(c[0]).includes("loud")))
      assert.strictEqual(readLines(path).length, 2)
    }).pipe(Effect.provide(FileLogger.layer({ path, console: "stderr", consoleLevel: "Warn", secrets: [adminToken] })))
  })

  it.effect("an unwritable path fails with a ResourceError that names the setting", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Effect.scoped(Layer.build(FileLogger.layer({ path: "/dev/null/miner.log" }))))
      assert.isTrue(Exit.isFailure(exit))
      const reason = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
      assert.strictEqual(reason?._tag === "Fail" ? reason.error._tag : undefined, "ResourceError")
      assert.include(reason?._tag === "Fail" ? reason.error.hint : "", "R3MES_LOG_FILE")
    }))
})

describe("makeRedactor", () => {
  it("replaces hex keys in any case, with or without 0x, and exact secrets raw or JSON-escaped", () => {
    const redact = makeRedactor([privateKey, "p\"ss\\word", undefined, Option.none()])
    assert.strictEqual(redact(`a ${privateKey.toUpperCase()} b`), "a <redacted> b")
    assert.strictEqual(redact(`a ${privateKeyHex} b`), "a <redacted> b")
    assert.strictEqual(redact(`0x00${privateKeyHex}00`), "0x00<redacted>00")
    assert.strictEqual(redact(JSON.stringify({ password: "p\"ss\\word" })), "{\"password\":\"<redacted>\"}")
    assert.strictEqual(redact(`tx ${txHash}`), `tx ${txHash}`)
    assert.strictEqual(makeRedactor(["", Option.none()])("unchanged"), "unchanged")
  })
})
