import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer } from "effect"
import { TestClock } from "effect/testing"
import { PIN_INTENT } from "../../src/domain/intents.ts"
import { newRecord, type TransactionRecord } from "../../src/domain/TransactionRecord.ts"
import { takeOverGoneRunners, watchFleet } from "../../src/services/FleetRecovery.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { Journal } from "../../src/services/Journal.ts"
import { TestChain } from "../../src/testing/TestChain.ts"
import { TestFleetRoster } from "../../src/testing/TestFleetRoster.ts"
import { TestGradientStore } from "../../src/testing/TestGradientStore.ts"
import { sha256Hex, testEnvelope } from "../../src/testing/TestTrainer.ts"
import { harness } from "../support/harness.ts"

const KEY_PREFIX = "31337:0x5fbdb2315678afecb367f032d93f642f64180aa3:0x70997970c51812dc3a010c7d01b50e0d17dc79c8"

/** Runner-b's transaction of `chunkId`, left at upload with its gradient pinned (it died before submitting). */
const pinnedBy = (owner: string, chunkId: number) =>
  Effect.gen(function*() {
    const store = yield* GradientStore
    const envelope = testEnvelope(1n, chunkId, 512)
    const cid = yield* store.add(envelope)
    const record: TransactionRecord = {
      ...newRecord({ transactionId: `tx-${owner}-${chunkId}`, key: `${KEY_PREFIX}:1:${chunkId}`, roundId: 1n, chunkId, nowMs: 0, owner }),
      state: "ipfs_upload",
      gradient_hash: sha256Hex(envelope),
      ipfs_hash: cid
    }
    yield* (yield* Journal).save(record, { at: record.updated_at, state: record.state, event: PIN_INTENT, detail: cid })
    return record
  })

const runnerA = (running: ReadonlyArray<string> = []) =>
  TestFleetRoster.layer({ self: "runner-a", running }).pipe(Layer.provideMerge(harness({ journal: { owner: "runner-a" } })))

describe("fleet recovery: a gone runner's work is taken over and finished (issue 18)", () => {
  it.effect("a pinned, unsubmitted gradient of a gone runner is submitted by the taker, never trained again", () =>
    Effect.gen(function*() {
      const left = yield* pinnedBy("runner-b", 4)
      assert.strictEqual(yield* takeOverGoneRunners(), 1)
      const record = (yield* (yield* Journal).get(left.transaction_id))!
      assert.strictEqual(record.owner, "runner-a")
      assert.strictEqual(record.state, "committed")
      const submissions = yield* (yield* TestChain).submissions
      assert.deepStrictEqual(submissions.map((s) => [s.chunkId, s.cid]), [[4, left.ipfs_hash]])
      assert.deepStrictEqual(yield* (yield* TestGradientStore).pinned, [left.ipfs_hash!])
      assert.strictEqual(yield* takeOverGoneRunners(), 0, "nothing left to take")
    }).pipe(Effect.provide(runnerA())))

  it.effect("a runner that runs (even stopped, its session alive) keeps its work", () =>
    Effect.gen(function*() {
      const left = yield* pinnedBy("runner-b", 5)
      assert.strictEqual(yield* takeOverGoneRunners(), 0)
      assert.deepStrictEqual(yield* (yield* Journal).get(left.transaction_id), left)
      assert.deepStrictEqual(yield* (yield* TestChain).submissions, [])
      // Once it is gone, it is taken.
      yield* (yield* TestFleetRoster).setRunning("runner-b", false)
      assert.strictEqual(yield* takeOverGoneRunners(), 1)
    }).pipe(Effect.provide(runnerA(["runner-b"]))))

  it.effect("a runner stopping finishes the takeover under way: it may be the fleet's last runner", () =>
    Effect.gen(function*() {
      const left = yield* pinnedBy("runner-b", 6)
      // The submission of the taken transaction takes a while.
      yield* (yield* TestChain).setFaults({ submitGradient: { latency: "10 seconds" } })
      const stop = yield* Deferred.make<void>()
      const watch = yield* Effect.forkChild(watchFleet({ stop: Deferred.await(stop), interval: "5 seconds" }))
      const journal = yield* Journal
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual((yield* journal.get(left.transaction_id))!.owner, "runner-b", "gone at one look: not yet taken")
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual((yield* journal.get(left.transaction_id))!.owner, "runner-a", "gone at two looks in a row: taken")
      yield* Deferred.succeed(stop, undefined)
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(watch)
      assert.strictEqual((yield* journal.get(left.transaction_id))!.state, "committed")
      assert.strictEqual((yield* (yield* TestChain).submissions).length, 1)
    }).pipe(Effect.provide(runnerA())))

  it.effect("a watch stopped before its first look takes nothing", () =>
    Effect.gen(function*() {
      const left = yield* pinnedBy("runner-b", 7)
      const stop = yield* Deferred.make<void>()
      const watch = yield* Effect.forkChild(watchFleet({ stop: Deferred.await(stop), interval: "5 seconds" }))
      yield* TestClock.adjust("1 second")
      yield* Deferred.succeed(stop, undefined)
      yield* Fiber.join(watch)
      assert.deepStrictEqual(yield* (yield* Journal).get(left.transaction_id), left)
    }).pipe(Effect.provide(runnerA())))

  it.effect("a runner without its name at one look and with it again at the next keeps its work (its database session dropped)", () =>
    Effect.gen(function*() {
      const left = yield* pinnedBy("runner-b", 8)
      const roster = yield* TestFleetRoster
      const stop = yield* Deferred.make<void>()
      const watch = yield* Effect.forkChild(watchFleet({ stop: Deferred.await(stop), interval: "5 seconds" }))
      yield* roster.setRunning("runner-b", false)
      yield* TestClock.adjust("5 seconds")
      yield* roster.setRunning("runner-b", true)
      yield* TestClock.adjust("5 seconds")
      yield* roster.setRunning("runner-b", false)
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual((yield* (yield* Journal).get(left.transaction_id))!.owner, "runner-b", "never gone twice in a row")
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual((yield* (yield* Journal).get(left.transaction_id))!.owner, "runner-a")
      yield* Deferred.succeed(stop, undefined)
      yield* Fiber.join(watch)
    }).pipe(Effect.provide(runnerA(["runner-b"]))))
})
