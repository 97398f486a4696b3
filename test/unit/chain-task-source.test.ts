import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Logger, Option } from "effect"
import { TestClock } from "effect/testing"
import { ChainRevertError, NetworkError } from "../../src/domain/errors.ts"
import { Submission } from "../../src/domain/mining.ts"
import { ChainTaskSource } from "../../src/layers/chain/ChainTaskSource.ts"
import { Chain } from "../../src/services/Chain.ts"
import { MiningCoordinator } from "../../src/services/MiningCoordinator.ts"
import { MiningLoop } from "../../src/services/MiningLoop.ts"
import { MiningStats } from "../../src/services/MiningStats.ts"
import { TaskSource } from "../../src/services/TaskSource.ts"
import { InMemoryJournal } from "../../src/testing/InMemoryJournal.ts"
import { TestChain, type TestChainOptions, type TestRound } from "../../src/testing/TestChain.ts"
import { testSettingsLayer } from "../../src/testing/testConfig.ts"
import { rawCidV0, TestGradientStore } from "../../src/testing/TestGradientStore.ts"
import { TestPowSolver } from "../../src/testing/TestPowSolver.ts"
import { TestTrainer } from "../../src/testing/TestTrainer.ts"

const cid = rawCidV0(new TextEncoder().encode("gradient"))
const hash = `0x${"ab".repeat(32)}`

const round = (roundId: bigint, chunkCount: number, deadline = 10_000): TestRound => ({
  roundId,
  chunkCount,
  difficulty: 16,
  deadline,
  spec: `{"round":${roundId}}`
})

/** ChainTaskSource over a TestChain with the contract's claim rule; every poll after 2 s of TestClock time. */
const sourceOn = (chain: TestChainOptions) =>
  ChainTaskSource.layer({ pollInterval: "2 seconds" }).pipe(
    Layer.provideMerge(TestChain.layer({ requireClaim: true, ...chain }))
  )

const submit = Effect.fnUntraced(function*(roundId: bigint, chunkId: number) {
  const chain = yield* Chain
  return yield* chain.submitGradient(new Submission({ roundId, chunkId, cid, gradientHash: hash, powNonce: 1n }))
})

const isRunning = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.sync(() => fiber.pollUnsafe() === undefined)

describe("ChainTaskSource", () => {
  it.effect("claims chunks in order and builds the task from the round and the claim", () =>
    Effect.gen(function*() {
      const source = yield* TaskSource
      const a = yield* source.next
      const b = yield* source.next
      const c = yield* source.next
      assert.deepStrictEqual([a.chunkId, b.chunkId, c.chunkId], [0, 1, 2])
      assert.strictEqual(a.roundId, 1n)
      assert.strictEqual(a.spec, `{"round":1}`)
      assert.strictEqual(a.modelCid, rawCidV0(new TextEncoder().encode("m1")))
      assert.strictEqual(a.difficulty, 16)
      assert.strictEqual(a.deadline, 10_000)
      assert.strictEqual(a.leaseExpiry, 600, "chain time 0 + the 600 s lease")
      const claims = yield* (yield* TestChain).claims
      assert.deepStrictEqual(claims.map((claim) => [claim.roundId, claim.chunkId]), [[1n, 0], [1n, 1], [1n, 2]])
    }).pipe(
      Effect.provide(
        sourceOn({ rounds: [{ ...round(1n, 5), modelCid: rawCidV0(new TextEncoder().encode("m1")) }] })
      )
    ))

  it.effect("takes the newest open round first and falls back to an older one when it is fully claimed", () =>
    Effect.gen(function*() {
      const source = yield* TaskSource
      const tasks = [yield* source.next, yield* source.next, yield* source.next]
      assert.deepStrictEqual(tasks.map((t) => [t.roundId, t.chunkId]), [[2n, 0], [1n, 0], [1n, 1]])
      assert.strictEqual(tasks[1]!.spec, `{"round":1}`)
      // Round 2 was tried (NoFreeChunk) before round 1 on the second and third call.
      assert.strictEqual(yield* (yield* TestChain).calls("claimChunk"), 5)
    }).pipe(Effect.provide(sourceOn({ rounds: [round(1n, 2), round(2n, 1)] }))))

  it.effect("does not try rounds whose every chunk is submitted", () =>
    Effect.gen(function*() {
      const source = yield* TaskSource
      const first = yield* source.next
      yield* submit(first.roundId, first.chunkId)
      const second = yield* source.next
      assert.deepStrictEqual([second.roundId, second.chunkId], [1n, 0])
      assert.strictEqual(yield* (yield* TestChain).calls("claimChunk"), 2)
    }).pipe(Effect.provide(sourceOn({ rounds: [round(1n, 2), round(2n, 1)] }))))

  it.effect("skips rounds past their deadline without trying to claim them", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust("200 seconds")
      const source = yield* TaskSource
      const task = yield* source.next
      assert.deepStrictEqual([task.roundId, task.chunkId], [1n, 0])
      assert.strictEqual(task.leaseExpiry, 800)
      assert.strictEqual(yield* (yield* TestChain).calls("claimChunk"), 1)
    }).pipe(Effect.provide(sourceOn({ rounds: [round(1n, 2), round(2n, 5, 100)] }))))

  it.effect("a round that expires or vanishes between the read and the claim is skipped", () =>
    Effect.gen(function*() {
      const control = yield* TestChain
      const source = yield* TaskSource
      yield* control.setFaults({
        claimChunk: {
          failWhen: (i) =>
            i === 0
              ? new ChainRevertError({ message: "expired", errorName: "RoundExpired", args: ["2", "100"] })
              : i === 2
              ? new ChainRevertError({ message: "unknown", errorName: "RoundNotOpen", args: ["2"] })
              : undefined
        }
      })
      const a = yield* source.next
      const b = yield* source.next
      assert.deepStrictEqual([[a.roundId, a.chunkId], [b.roundId, b.chunkId]], [[1n, 0], [1n, 1]])
    }).pipe(Effect.provide(sourceOn({ rounds: [round(1n, 2), round(2n, 5)] }))))

  it.effect("other errors propagate: another revert, a network failure", () =>
    Effect.gen(function*() {
      const control = yield* TestChain
      const source = yield* TaskSource
      yield* control.setFaults({
        claimChunk: { failFirst: { times: 1, error: new ChainRevertError({ message: "x", errorName: "NotOwner", args: [] }) } }
      })
      const revert = yield* Effect.flip(source.next)
      assert.strictEqual(revert._tag === "ChainRevertError" ? revert.errorName : revert._tag, "NotOwner")
      yield* control.setFaults({ rounds: { failFirst: { times: 1, error: new NetworkError({ message: "refused" }) } } })
      assert.strictEqual((yield* Effect.flip(source.next))._tag, "NetworkError")
      assert.strictEqual((yield* source.next).chunkId, 0, "nothing was claimed by the failed calls")
    }).pipe(Effect.provide(sourceOn({ rounds: [round(1n, 2)] }))))

  it.effect("a claim that landed with its answer lost is found at once, not after the own-claims interval", () =>
    Effect.gen(function*() {
      const control = yield* TestChain
      const source = yield* TaskSource
      assert.strictEqual((yield* source.next).chunkId, 0)
      yield* control.setFaults({ claimChunk: { failAfter: { times: 1, error: new NetworkError({ message: "answer lost" }) } } })
      assert.strictEqual((yield* Effect.flip(source.next))._tag, "NetworkError")
      // No time passes (TestClock): the look that follows a failed claim is not put off by the 30 s interval. It
      // finds every claim of ours without a submission; chunk 0's transaction is running, and the loop skips it.
      const handedOut = [(yield* source.next).chunkId, (yield* source.next).chunkId]
      assert.deepStrictEqual(handedOut, [0, 1])
      const claims = yield* control.claims
      assert.deepStrictEqual(claims.map((claim) => claim.chunkId), [0, 1], "chunk 1 was not claimed a second time")
    }).pipe(Effect.provide(sourceOn({ rounds: [round(1n, 5)] }))))

  // A fleet runner that died between its claim (chunk 1 here) and its journal record: nobody's record knows the claim.
  const orphanedClaim = Effect.gen(function*() {
    const source = yield* TaskSource
    assert.strictEqual((yield* source.next).chunkId, 0)
    assert.strictEqual((yield* (yield* Chain).claimChunk(1n)).chunkId, 1)
    assert.strictEqual((yield* source.next).chunkId, 2, "within the interval: no look")
    yield* TestClock.adjust("30 seconds")
    return [(yield* source.next).chunkId, (yield* source.next).chunkId, (yield* source.next).chunkId]
  })

  it.effect("a fleet's source looks for unworked claims of the account every interval while chunks are free", () =>
    Effect.gen(function*() {
      // Its own 0 and 2 are handed out too (the loop skips those in flight); 1 is taken up; no new claim.
      assert.deepStrictEqual(yield* orphanedClaim, [0, 1, 2])
      assert.deepStrictEqual((yield* (yield* TestChain).claims).map((c) => c.chunkId), [0, 1, 2])
    }).pipe(Effect.provide(
      ChainTaskSource.layer({ pollInterval: "2 seconds", ownClaimsWhileFree: true }).pipe(
        Layer.provideMerge(TestChain.layer({ requireClaim: true, rounds: [round(1n, 10)] }))
      )
    )))

  it.effect("a miner alone's source does not look while chunks are free: it claims the next one", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* orphanedClaim, [3, 4, 5])
    }).pipe(Effect.provide(sourceOn({ rounds: [round(1n, 10)] }))))

  it.effect("with no free chunk it polls every interval (logging once), and resumes when a round opens", () => {
    const logs: Array<string> = []
    const collector = Logger.make((options) => {
      logs.push((options.message as ReadonlyArray<unknown>).map(String).join(" "))
    })
    return Effect.gen(function*() {
      const control = yield* TestChain
      const source = yield* TaskSource
      assert.strictEqual((yield* source.next).chunkId, 0)
      const waiting = yield* Effect.forkChild(source.next)
      yield* TestClock.adjust("10 seconds")
      assert.isTrue(yield* isRunning(waiting))
      // 1 read for the first task, then one at 0, 2, 4, 6, 8 and 10 s: a poll per interval, no spinning.
      assert.strictEqual(yield* control.calls("rounds"), 7)
      assert.deepStrictEqual(logs.filter((line) => line.includes("no free chunk")), ["no free chunk; waiting"])

      yield* control.openRound(round(2n, 3, 20_000))
      yield* TestClock.adjust("2 seconds")
      const task = yield* Fiber.join(waiting)
      assert.deepStrictEqual([task.roundId, task.chunkId, task.deadline], [2n, 0, 20_000])
      assert.strictEqual(task.spec, `{"round":2}`)
      assert.strictEqual(task.leaseExpiry, 12 + 600)
    }).pipe(Effect.provide(Layer.merge(sourceOn({ rounds: [round(1n, 1)] }), Logger.layer([collector]))))
  })

  it.effect("an expired lease without a submission makes the chunk claimable again; a submitted one stays taken", () =>
    Effect.gen(function*() {
      const source = yield* TaskSource
      const first = yield* source.next
      const second = yield* source.next
      yield* submit(second.roundId, second.chunkId)
      // While nothing is free, our own lease with no submission is handed out again at each look, every 30 s (the
      // loop skips it while a transaction of its works on it; after a chain lost our submission, nothing else would
      // take it up)…
      for (let look = 1; look <= 20; look++) {
        const waitingOwn = yield* Effect.forkChild(source.next)
        yield* TestClock.adjust("30 seconds")
        const own = yield* Fiber.join(waitingOwn)
        assert.deepStrictEqual([own.roundId, own.chunkId, own.leaseExpiry], [first.roundId, first.chunkId, first.leaseExpiry])
      }
      // …up to its lease's end at 600 s; the contract re-offers a chunk only once its lease is strictly past.
      const waiting = yield* Effect.forkChild(source.next)
      yield* TestClock.adjust("1 second")
      assert.isTrue(yield* isRunning(waiting))
      yield* TestClock.adjust("1 second")
      const again = yield* Fiber.join(waiting)
      assert.deepStrictEqual([again.roundId, again.chunkId], [first.roundId, first.chunkId])
      assert.strictEqual(again.leaseExpiry, 602 + 600)
      // The old lease is gone: a late submission on it would have failed, the new holder can submit.
      assert.isFalse((yield* submit(again.roundId, again.chunkId)).alreadySubmitted)
    }).pipe(Effect.provide(sourceOn({ rounds: [round(1n, 2)] }))))

  it.effect("complete marks the submitted chunk complete on chain, idempotently", () =>
    Effect.gen(function*() {
      const chain = yield* Chain
      const control = yield* TestChain
      const source = yield* TaskSource
      const task = yield* source.next
      const receipt = yield* submit(task.roundId, task.chunkId)
      assert.isTrue(yield* source.complete(task, receipt))
      assert.isTrue(yield* source.complete(task, receipt))
      assert.deepStrictEqual(yield* control.completedChunks, [{ roundId: 1n, chunkId: 0 }])
      const onChain = yield* chain.getSubmission(task.roundId, task.chunkId)
      assert.isTrue(Option.isSome(onChain) && onChain.value.completed)

      const unsubmitted = yield* source.next
      const refused = yield* Effect.flip(source.complete(unsubmitted, receipt))
      assert.strictEqual(refused._tag === "ChainRevertError" ? refused.errorName : refused._tag, "ChunkNotClaimed")
    }).pipe(Effect.provide(sourceOn({ rounds: [round(1n, 2)] }))))

  it.effect("drives the mining loop against the contract's rules: claim, submit on the lease, complete", () =>
    Effect.gen(function*() {
      const summary = yield* (yield* MiningLoop).run({ iterations: 3 })
      assert.strictEqual(summary.committed, 3)
      assert.strictEqual(summary.task_completed, 3)
      const control = yield* TestChain
      assert.deepStrictEqual((yield* control.submissions).map((s) => s.chunkId).sort(), [0, 1, 2])
      assert.strictEqual((yield* control.completedChunks).length, 3)
      assert.strictEqual((yield* control.claims).length, 3)
    }).pipe(
      Effect.provide(
        MiningLoop.layer.pipe(
          Layer.provideMerge(MiningCoordinator.layer),
          Layer.provideMerge(sourceOn({ rounds: [round(1n, 3)] })),
          Layer.provideMerge(
            Layer.mergeAll(
              TestTrainer.layer(),
              TestGradientStore.layer(),
              InMemoryJournal.layer(),
              TestPowSolver.layer(),
              MiningStats.layer,
              testSettingsLayer()
            )
          )
        )
      )
    ))
})
