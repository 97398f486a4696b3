import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { AuthenticationError, ChainRevertError, NetworkError } from "../../src/domain/errors.ts"
import { TestGradientStore } from "../../src/testing/TestGradientStore.ts"
import { MiningCoordinator } from "../../src/services/MiningCoordinator.ts"
import { MiningLoop } from "../../src/services/MiningLoop.ts"
import { TestChain } from "../../src/testing/TestChain.ts"
import { TestTaskSource } from "../../src/testing/TestTaskSource.ts"
import { harness } from "../support/harness.ts"

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

  it.effect("defect 5: failures retrying cannot fix back off and, past the limit, stop the loop with the cause", () =>
    Effect.gen(function*() {
      const loop = yield* MiningLoop
      const tasks = yield* TestTaskSource
      const fiber = yield* Effect.forkChild(Effect.flip(loop.run({})))
      yield* TestClock.adjust("10 minutes")
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error._tag, "ResourceError")
      assert.include(error.message, "4 transactions in a row")
      assert.include(error.message, "over the 1 MB limit")
      assert.include(error.hint ?? "", "R3MES_MAX_CONSECUTIVE_FAILURES")
      // Claims stop at the limit (plus what was in flight), instead of one paid claim after another.
      assert.isAtMost((yield* tasks.claimed).length, 4 + 2)
    }).pipe(Effect.provide(harness({
      config: { maxConsecutiveFailures: 4, maxActiveTransactions: 2, maxGradientSizeMb: 1 },
      trainer: { envelopeBytes: 1024 * 1024 + 1 }
    }))))

  it.effect("a chunk whose transaction failed before submitting is worked on again, before any new claim", () =>
    Effect.gen(function*() {
      const loop = yield* MiningLoop
      const tasks = yield* TestTaskSource
      const fiber = yield* Effect.forkChild(loop.run({ iterations: 4 }))
      yield* TestClock.adjust("1 minute")
      const summary = yield* Fiber.join(fiber)
      // Chunk 0 fails at its first upload and is handed back; the next transaction is chunk 0 again, and commits.
      assert.deepStrictEqual((yield* tasks.retried).map((t) => t.chunkId), [0])
      assert.deepStrictEqual(summary.records.map((r) => [r.chunk_id, r.state]), [
        [0, "rolled_back"],
        [0, "committed"],
        [1, "committed"],
        [2, "committed"]
      ])
      assert.strictEqual((yield* tasks.claimed).length, 3, "the retry is no new claim")
    }).pipe(Effect.provide(harness({
      config: { maxActiveTransactions: 1 },
      store: { faults: { add: { failFirst: { times: 1, error: new AuthenticationError({ message: "pinning refused" }) } } } }
    }))))

  it.effect("a submission the chain refused is not tried again: its claim is the chain's call", () =>
    Effect.gen(function*() {
      const loop = yield* MiningLoop
      const tasks = yield* TestTaskSource
      const fiber = yield* Effect.forkChild(loop.run({ iterations: 2 }))
      yield* TestClock.adjust("1 minute")
      const summary = yield* Fiber.join(fiber)
      assert.strictEqual(summary.rolled_back, 2)
      assert.deepStrictEqual(yield* tasks.retried, [])
      assert.strictEqual((yield* tasks.claimed).length, 2)
    }).pipe(Effect.provide(harness({
      config: { maxActiveTransactions: 1 },
      chain: {
        faults: {
          submitGradient: {
            alwaysFail: new ChainRevertError({ message: "ChunkNotClaimed(1, 0)", errorName: "ChunkNotClaimed", args: ["1", "0"] })
          }
        }
      }
    }))))

  it.effect("a chunk that keeps failing is tried again, with no new claim meanwhile, until the limit stops the miner", () =>
    Effect.gen(function*() {
      const loop = yield* MiningLoop
      const tasks = yield* TestTaskSource
      const fiber = yield* Effect.forkChild(Effect.flip(loop.run({})))
      yield* TestClock.adjust("10 minutes")
      const error = yield* Fiber.join(fiber)
      assert.include(error.message, "5 transactions in a row")
      // One paid claim, not five: its lease is used until the limit.
      assert.strictEqual((yield* tasks.claimed).length, 1)
      assert.deepStrictEqual((yield* tasks.retried).map((t) => t.chunkId), [0, 0, 0, 0, 0])
    }).pipe(Effect.provide(harness({
      config: { maxConsecutiveFailures: 5, maxActiveTransactions: 1, maxGradientSizeMb: 1 },
      trainer: { envelopeBytes: 1024 * 1024 + 1 },
      tasks: { chunks: 3 }
    }))))

  it.effect("a commit resets the streak; transient failures do not count towards it", () =>
    Effect.gen(function*() {
      const loop = yield* MiningLoop
      const fiber = yield* Effect.forkChild(loop.run({ iterations: 12 }))
      yield* TestClock.adjust("10 minutes")
      const summary = yield* Fiber.join(fiber)
      assert.strictEqual(summary.transactions, 12)
      assert.strictEqual(summary.rolled_back, 12)
    }).pipe(Effect.provide(harness({
      config: { maxConsecutiveFailures: 2, maxActiveTransactions: 1 },
      store: { faults: { add: { alwaysFail: new NetworkError({ message: "ipfs down", service: "ipfs" }) } } }
    }))))

  it.effect("a claimed chunk whose transaction cannot be created for now is handed back and worked on later", () =>
    Effect.gen(function*() {
      // A local chaos run: anvil restarted, the chain's breaker open, and a re-claimed chunk's first look at the chain
      // (does it still hold the chunk's committed record?) failed: the whole miner stopped with "breaker is open".
      const loop = yield* MiningLoop
      const tasks = yield* TestTaskSource
      const chain = yield* TestChain
      yield* chain.setFaults({ identity: { failFirst: { times: 3, error: new NetworkError({ message: "rpc down" }) } } })
      const fiber = yield* Effect.forkChild(loop.run({ iterations: 2 }))
      yield* TestClock.adjust("5 minutes")
      const summary = yield* Fiber.join(fiber)
      assert.strictEqual(summary.committed, 2)
      assert.strictEqual(summary.transactions, 2)
      assert.strictEqual((yield* tasks.claimed).length, 2, "the chunk handed back is worked on, not claimed anew")
      assert.strictEqual((yield* tasks.retried).length, 3)
    }).pipe(Effect.provide(harness({ config: { retryMaxDelay: Duration.seconds(2) } }))))

  it.effect("no chunk is claimed while a circuit breaker is open; claiming resumes after its reset", () =>
    Effect.gen(function*() {
      const loop = yield* MiningLoop
      const tasks = yield* TestTaskSource
      const store = yield* TestGradientStore
      yield* store.setFaults({ add: { failFirst: { times: 4, error: new NetworkError({ message: "ipfs down", service: "ipfs" }) } } })
      const fiber = yield* Effect.forkChild(loop.run({ iterations: 3 }))
      // The first transaction's four failed attempts open the IPFS breaker (threshold 4): the loop waits.
      yield* TestClock.adjust("5 seconds")
      const claimedWhileOpen = (yield* tasks.claimed).length
      assert.strictEqual(claimedWhileOpen, 1)
      yield* TestClock.adjust("1 minute")
      const summary = yield* Fiber.join(fiber)
      assert.strictEqual(summary.transactions, 3)
      assert.strictEqual(summary.committed, 2)
    }).pipe(Effect.provide(harness({
      config: { circuitBreakerThreshold: 4, circuitBreakerReset: Duration.seconds(30), maxActiveTransactions: 1 }
    }))))

  it.effect("defect 8: an abort interrupts what is in flight and the summary still counts what committed", () =>
    Effect.gen(function*() {
      const loop = yield* MiningLoop
      const abort = yield* Deferred.make<void>()
      const fiber = yield* Effect.forkChild(loop.run({ abort: Deferred.await(abort) }))
      yield* TestClock.adjust("2500 millis")
      yield* Deferred.succeed(abort, undefined)
      yield* TestClock.adjust("1 second")
      const summary = yield* Fiber.join(fiber)
      assert.isTrue(summary.interrupted)
      assert.strictEqual(summary.committed, 4)
      assert.strictEqual(summary.transactions, summary.committed + summary.rolled_back + summary.failed + summary.suspended)
      assert.isAtLeast(summary.failed + summary.rolled_back, 1)
      assert.strictEqual(yield* (yield* MiningCoordinator).activeCount, 0)
    }).pipe(Effect.provide(harness({
      config: { maxActiveTransactions: 2 },
      trainer: { faults: { train: { latency: "1 second" } } }
    }))))

  it.effect("memory: an endless run keeps the newest 100 records, a bounded one at most 1,000", () =>
    Effect.gen(function*() {
      const loop = yield* MiningLoop
      const stop = yield* Deferred.make<void>()
      const fiber = yield* Effect.forkChild(loop.run({ stop: Deferred.await(stop) }))
      yield* TestClock.adjust("1 second")
      yield* Deferred.succeed(stop, undefined)
      const summary = yield* Fiber.join(fiber)
      assert.strictEqual(summary.committed, 250)
      assert.strictEqual(summary.records.length, 100)
      assert.strictEqual(summary.records.at(-1)!.state, "committed")
    }).pipe(Effect.provide(harness({ tasks: { chunks: 250 } }))))

  it.effect("a transaction of the run that the chain loses afterwards is not reported as committed", () =>
    Effect.gen(function*() {
      const loop = yield* MiningLoop
      const chain = yield* TestChain
      const fiber = yield* Effect.forkChild(loop.run({ iterations: 3 }))
      yield* TestClock.adjust("1 second")
      const summary = yield* Fiber.join(fiber)
      assert.strictEqual(summary.committed, 3)
      // The chain loses the last two blocks; the next run's final audit finds them.
      const submissions = yield* chain.submissions
      yield* chain.rewindTo(submissions[0]!.receipt.blockNumber)
      const again = yield* loop.run({ iterations: 0 })
      assert.strictEqual(again.chain_lost, 0, "not this run's transactions")
      const stats = yield* (yield* MiningCoordinator).getStatistics
      assert.strictEqual(stats.chain_lost, 2)
    }).pipe(Effect.provide(harness())))

  it.effect("a stop ends within its grace: a transaction still waiting for the chain is left to recovery", () =>
    Effect.gen(function*() {
      const loop = yield* MiningLoop
      const chain = yield* TestChain
      yield* chain.loseBroadcasts(1)
      yield* chain.setFaults({ transactionStatus: { hang: true } })
      const stop = yield* Deferred.make<void>()
      const fiber = yield* Effect.forkChild(loop.run({ iterations: 1, stop: Deferred.await(stop), stopGrace: "5 seconds" }))
      yield* TestClock.adjust("1 second")
      yield* Deferred.succeed(stop, undefined)
      yield* TestClock.adjust("6 seconds")
      const summary = yield* Fiber.join(fiber)
      assert.strictEqual(summary.suspended, 1)
      assert.isTrue(summary.interrupted)
      assert.strictEqual((yield* (yield* TestGradientStore).pinned).length, 1, "kept for the chain's verdict")
    }).pipe(Effect.provide(harness())))
})