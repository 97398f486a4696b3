import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Schedule, Schema } from "effect"
import { classify } from "../../src/domain/classify.ts"
import {
  AuthenticationError,
  ChainRevertError,
  errorCategory,
  isRetryable,
  NetworkError,
  ResourceError,
  RetryableError,
  TimeoutError,
  ValidationError
} from "../../src/domain/errors.ts"
import { nominalDelay, retryDelays } from "../../src/domain/retryPolicy.ts"
import { latencyFromSummary, percentile, pruneWindow, ratePerMinute, rateWindowMs } from "../../src/domain/statistics.ts"
import { newRecord, TransactionRecord, transition } from "../../src/domain/TransactionRecord.ts"
import { canTransition, TransactionState } from "../../src/domain/TransactionState.ts"

const sysError = (code: string, message = code) => Object.assign(new Error(message), { code })

describe("classify", () => {
  it.each([
    ["ECONNREFUSED", "NetworkError"],
    ["ECONNRESET", "NetworkError"],
    ["ETIMEDOUT", "NetworkError"],
    ["EAI_AGAIN", "NetworkError"],
    ["ENOTFOUND", "NetworkError"],
    ["ENOSPC", "ResourceError"],
    ["ENOMEM", "ResourceError"]
  ])("system error %s → %s", (code, tag) => {
    assert.strictEqual(classify(sysError(code))._tag, tag)
  })

  it("finds the system error deep in a cause chain (fetch → undici)", () => {
    const error = new TypeError("fetch failed", { cause: sysError("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:8545") })
    const classified = classify(error)
    assert.strictEqual(classified._tag, "NetworkError")
    assert.include(classified.message, "fetch failed")
  })

  it.each([
    [500, "NetworkError"],
    [502, "NetworkError"],
    [503, "NetworkError"],
    [401, "AuthenticationError"],
    [403, "AuthenticationError"],
    [400, "ValidationError"],
    [404, "ValidationError"],
    [429, "RetryableError"],
    [413, "ResourceError"]
  ])("HTTP status %i → %s", (status, tag) => {
    assert.strictEqual(classify({ message: `HTTP ${status}`, status })._tag, tag)
    assert.strictEqual(classify({ message: "x", response: { status } })._tag, tag)
  })

  it.each([
    ["insufficient funds for gas * price + value", "AuthenticationError"],
    ["invalid signature", "AuthenticationError"],
    ["nonce too low: next nonce 5, tx nonce 4", "RetryableError"],
    ["replacement transaction underpriced", "RetryableError"],
    ["the request timed out", "TimeoutError"],
    ["gradient too large", "ResourceError"],
    ["something nobody has seen", "ValidationError"]
  ])("message %j → %s", (message, tag) => {
    assert.strictEqual(classify(new Error(message))._tag, tag)
  })

  it("keeps the miner's own errors as they are, and never invents success", () => {
    const own = new ChainRevertError({ message: "reverted", errorName: "RoundExpired", args: ["1"] })
    assert.strictEqual(classify(own), own)
    assert.strictEqual(classify(undefined)._tag, "ValidationError")
    assert.strictEqual(classify("boom").message, "boom")
  })
})

describe("error hierarchy", () => {
  it("retryable: network, retryable, timeout; not: authentication, resource, validation, chain revert", () => {
    assert.isTrue(isRetryable(new NetworkError({ message: "" })))
    assert.isTrue(isRetryable(new RetryableError({ message: "" })))
    assert.isTrue(isRetryable(new TimeoutError({ message: "" })))
    assert.isFalse(isRetryable(new AuthenticationError({ message: "" })))
    assert.isFalse(isRetryable(new ResourceError({ message: "" })))
    assert.isFalse(isRetryable(new ValidationError({ message: "" })))
    assert.isFalse(isRetryable(new ChainRevertError({ message: "", errorName: "AlreadySubmitted", args: [] })))
    assert.strictEqual(errorCategory(new ChainRevertError({ message: "", errorName: "X", args: [] })), "chain_revert")
  })
})

describe("transaction state machine", () => {
  it("allows exactly the transitions of a mining transaction", () => {
    const allowed = TransactionState.literals.flatMap((from) =>
      TransactionState.literals.filter((to) => canTransition(from, to)).map((to) => `${from}→${to}`)
    )
    assert.deepStrictEqual(allowed, [
      "pending→training",
      "pending→failed",
      "training→ipfs_upload",
      "training→failed",
      "ipfs_upload→blockchain_submit",
      "ipfs_upload→rolled_back",
      "blockchain_submit→task_complete",
      "blockchain_submit→rolled_back",
      "task_complete→committed",
      // The chain is the judge: a submission the chain lost (reset, reorg) is rolled back (chain_lost).
      "task_complete→rolled_back",
      "committed→rolled_back"
    ])
  })

  it.effect("transition refuses an illegal move with a ValidationError", () =>
    Effect.gen(function*() {
      const record = newRecord({ transactionId: "tx-1", key: "k", roundId: 1n, chunkId: 0, nowMs: 0 })
      const error = yield* Effect.flip(transition(record, "committed", 1000))
      assert.strictEqual(error._tag, "ValidationError")
      const moved = yield* transition(record, "training", 1000)
      assert.strictEqual(moved.state, "training")
      assert.strictEqual(moved.updated_at, "1970-01-01T00:00:01.000Z")
    }))

  it("a new record matches the record schema (the status API's JSON)", () => {
    const record = newRecord({ transactionId: "tx-1", key: "k", roundId: 2n ** 200n, chunkId: 4294967295, nowMs: 0 })
    const decoded = Schema.decodeUnknownSync(TransactionRecord)(JSON.parse(JSON.stringify(record)))
    assert.strictEqual(decoded.round_id, (2n ** 200n).toString())
    assert.throws(() => Schema.decodeUnknownSync(TransactionRecord)({ ...record, state: "exploded" }))
  })
})

describe("statistics helpers", () => {
  it("nearest-rank percentiles", () => {
    const samples = Array.from({ length: 100 }, (_, i) => i + 1)
    assert.strictEqual(percentile(samples, 50), 50)
    assert.strictEqual(percentile(samples, 95), 95)
    assert.strictEqual(percentile(samples, 99), 99)
    assert.strictEqual(percentile([7], 99), 7)
    assert.isNull(percentile([], 50))
  })

  it("a latency summary reads totals for count, mean and max, the recent window for percentiles", () => {
    const summary = { count: 4, sum: 100, max: 70, quantiles: [[0.5, 10], [0.95, 20], [0.99, 20]] as const }
    assert.deepStrictEqual(latencyFromSummary(summary), {
      count: 4,
      mean_ms: 25,
      p50_ms: 10,
      p95_ms: 20,
      p99_ms: 20,
      max_ms: 70
    })
    // Samples long ago, none recent: totals stay, percentiles say "none in the window".
    const old = { count: 2, sum: 30, max: 20, quantiles: [[0.5, undefined], [0.95, undefined], [0.99, undefined]] as const }
    assert.deepStrictEqual(latencyFromSummary(old), { count: 2, mean_ms: 15, p50_ms: null, p95_ms: null, p99_ms: null, max_ms: 20 })
    const none = { count: 0, sum: 0, max: -Number.MAX_VALUE, quantiles: [] }
    assert.deepStrictEqual(latencyFromSummary(none), { count: 0, mean_ms: null, p50_ms: null, p95_ms: null, p99_ms: null, max_ms: null })
  })

  it("rate per minute counts the window, not the epoch", () => {
    assert.strictEqual(rateWindowMs, 60_000)
    const now = 1_800_000_000_000
    const started = now - 3_600_000
    assert.strictEqual(ratePerMinute([now - 70_000, now - 50_000, now - 10_000], now, started), 2)
    // Up for 30 s with 3 events: 6 per minute, not 3 and not 3 / (minutes since 1970).
    assert.strictEqual(ratePerMinute([now - 20_000, now - 10_000, now], now, now - 30_000), 6)
  })

  it("pruning drops what left the window and keeps the rest", () => {
    const now = 1_800_000_000_000
    const times = [now - 90_000, now - 60_000, now - 59_999, now]
    pruneWindow(times, now)
    assert.deepStrictEqual(times, [now - 59_999, now])
  })
})

describe("retry policy", () => {
  const config = {
    retryInitialDelay: Duration.seconds(1),
    retryBackoffFactor: 2,
    retryMaxDelay: Duration.seconds(5)
  }
  it("nominal delays grow by the factor and stop at the max delay", () => {
    assert.deepStrictEqual([1, 2, 3, 4, 5].map((n) => Duration.toMillis(nominalDelay(config, n))), [
      1000,
      2000,
      4000,
      5000,
      5000
    ])
  })

  it.effect("jittered delays stay within 0.8..1.2 of nominal and never exceed the cap", () =>
    Effect.gen(function*() {
      const step = yield* Schedule.toStep(retryDelays(config))
      for (let n = 1; n <= 8; n++) {
        const [, delay] = yield* step(0, undefined)
        const ms = Duration.toMillis(delay)
        const nominal = Duration.toMillis(nominalDelay(config, n))
        assert.isAtMost(ms, 5000)
        assert.isAtLeast(ms, Math.min(nominal * 0.8, 5000))
        assert.isAtMost(ms, nominal * 1.2)
      }
    }))
})
