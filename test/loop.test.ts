import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { AuthenticationError, NetworkError } from "../src/domain/errors.ts"
import { MiningCoordinator } from "../src/services/MiningCoordinator.ts"
import { MiningLoop } from "../src/services/MiningLoop.ts"
import { TestChain } from "../src/testing/TestChain.ts"
import { TestTaskSource } from "../src/testing/TestTaskSource.ts"
import { harness } from "./support/harness.ts"

describe("MiningLoop", () => {
  it.effect("runs N iterations with never more than R3MES_MAX_ACTIVE_TRANSACTIONS in flight (100 transactions)", () =>
    Effect.gen(function*() {
      const loop = yield* MiningLoop
      const coordinator = yield* MiningCoordinator
      const fiber = yield* Effect.forkChild(loop.run({ iterations: 100 }))
      // Each training takes 1 s of virtual time, so transactions overlap as much as the limit lets them.
      let peakSeen = 0
      for (let i = 0; i < 30; i++) {
        yield* TestClock.adjust("500 millis")
        peakSeen = Math.max(peakSeen, yield* coordinator.activeCount)
      }
      const summary = yield* Fiber.join(fiber)
      assert.strictEqual(summary.transactions, 100)
      assert.strictEqual(summary.committed, 100)
      assert.strictEqual(summary.task_completed, 100)
      assert.strictEqual(peakSeen, 10)
      const stats = yield* coordinator.getStatistics
      assert.strictEqual(stats.peak_active, 10)
      assert.strictEqual(stats.committed, 100)
      const chunks = new Set((yield* (yield* TestChain).submissions).map((s) => s.chunkId))
      assert.strictEqual(chunks.size, 100)
    }).pipe(Effect.provide(harness({ trainer: { faults: { train: { latency: "1 second" } } } }))))

  it.effect("claims a chunk only when a slot is free", () =>
    Effect.gen(function*() {
      const loop = yield* MiningLoop
      const tasks = yield* TestTaskSource
      const fiber = yield* Effect.forkChild(loop.run({ iterations: 5 }))
      yield* TestClock.adjust("100 millis")
      assert.strictEqual((yield* tasks.claimed).length, 2)
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* tasks.claimed).length, 4)
      yield* TestClock.adjust("5 seconds")
      const summary = yield* Fiber.join(fiber)
      assert.strictEqual(summary.committed, 5)
    }).pipe(Effect.provide(harness({
      config: { maxActiveTransactions: 2 },
      trainer: { faults: { train: { latency: "1 second" } } }
    }))))

  it.effect("backs off and keeps going when claiming fails transiently; stops on a non-retryable claim error", () =>
    Effect.gen(function*() {
      const loop = yield* MiningLoop
      const tasks = yield* TestTaskSource
      yield* tasks.setFaults({ next: { failFirst: { times: 6, error: new NetworkError({ message: "rpc down" }) } } })
      const fiber = yield* Effect.forkChild(loop.run({ iterations: 2 }))
      yield* TestClock.adjust("5 minutes")
      const summary = yield* Fiber.join(fiber)
      assert.strictEqual(summary.committed, 2)
      yield* tasks.setFaults({ next: { alwaysFail: new AuthenticationError({ message: "bad key" }) } })
      const failed = yield* Effect.flip(loop.run({ iterations: 1 }))
      assert.strictEqual(failed._tag, "AuthenticationError")
    }).pipe(Effect.provide(harness({ config: { retryMaxDelay: Duration.seconds(2) } }))))

  it.effect("reports every final record to onFinished and counts failures in the summary", () =>
    Effect.gen(function*() {
      const loop = yield* MiningLoop
      const seen: Array<string> = []
      const fiber = yield* Effect.forkChild(
        loop.run({ iterations: 3, onFinished: (r) => Effect.sync(() => seen.push(r.state)) })
      )
      yield* TestClock.adjust("1 minute")
      const summary = yield* Fiber.join(fiber)
      assert.strictEqual(seen.length, 3)
      assert.strictEqual(summary.rolled_back, 3)
      assert.strictEqual(summary.committed, 0)
    }).pipe(Effect.provide(harness({
      chain: { faults: { submitGradient: { alwaysFail: new AuthenticationError({ message: "bad key" }) } } }
    }))))

  it.effect("stop: no more claims, the transactions in flight finish, run returns their summary", () =>
    Effect.gen(function*() {
      const loop = yield* MiningLoop
      const tasks = yield* TestTaskSource
      const stop = yield* Deferred.make<void>()
      const fiber = yield* Effect.forkChild(loop.run({ stop: Deferred.await(stop) }))
      yield* TestClock.adjust("100 millis")
      assert.strictEqual((yield* tasks.claimed).length, 3)
      yield* Deferred.succeed(stop, undefined)
      yield* TestClock.adjust("2 seconds")
      const summary = yield* Fiber.join(fiber)
      assert.strictEqual(summary.committed, 3)
      assert.strictEqual((yield* tasks.claimed).length, 3)
      assert.strictEqual(yield* (yield* MiningCoordinator).activeCount, 0)
    }).pipe(Effect.provide(harness({
      config: { maxActiveTransactions: 3 },
      trainer: { faults: { train: { latency: "1 second" } } }
    }))))
})
