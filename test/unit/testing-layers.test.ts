import { createHash } from "node:crypto"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Duration, Effect, Exit, Fiber, Option, Schema } from "effect"
import { TestClock } from "effect/testing"
import { type MiningError, NetworkError, ResourceError, RetryableError, TimeoutError } from "../../src/domain/errors.ts"
import { solveReference } from "../../src/domain/pow.ts"
import { Cid, PowInput, type SignedTransaction, Submission, SubmissionReceipt, Task } from "../../src/domain/mining.ts"
import { newRecord, type TransactionRecord } from "../../src/domain/TransactionRecord.ts"
import { Chain } from "../../src/services/Chain.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { Journal } from "../../src/services/Journal.ts"
import { PowSolver } from "../../src/services/PowSolver.ts"
import { Settings } from "../../src/services/Settings.ts"
import { TaskSource } from "../../src/services/TaskSource.ts"
import { Trainer } from "../../src/services/Trainer.ts"
import {
  defaultTestIdentity,
  InMemoryJournal,
  makeFaultInjector,
  rawCidV0,
  TestChain,
  TestGradientStore,
  testMinerConfig,
  testPortsLayer,
  TestPowSolver,
  testSettingsLayer,
  TestTaskSource,
  TestTrainer
} from "../../src/testing/index.ts"

const hashA = `0x${"aa".repeat(32)}`
const hashB = `0x${"bb".repeat(32)}`
const cidA = rawCidV0(new TextEncoder().encode("a"))

const submission = (chunkId: number, gradientHash: string) =>
  new Submission({ roundId: 1n, chunkId, cid: cidA, gradientHash, powNonce: 7n })

const task = (chunkId: number) =>
  new Task({
    roundId: 3n,
    chunkId,
    modelCid: cidA,
    spec: "{}",
    difficulty: 16,
    leaseExpiry: 4_102_444_800,
    deadline: 4_102_444_800
  })

const bytes = (text: string) => new TextEncoder().encode(text)

/** A revert as [errorName, ...args]; any other failure as [tag]. */
const reverted = (error: MiningError): ReadonlyArray<string> =>
  error._tag === "ChainRevertError" ? [error.errorName, ...error.args] : [error._tag]

/** Still running ⇔ no exit yet. */
const isRunning = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.sync(() => fiber.pollUnsafe() === undefined)

describe("makeFaultInjector", () => {
  it.effect("failFirst fails the first N calls with the given error, then runs the effect; failed calls count", () =>
    Effect.gen(function*() {
      const error = new NetworkError({ message: "connection refused" })
      const faults = yield* makeFaultInjector<"op">({ op: { failFirst: { times: 2, error } } })
      let ran = 0
      const op = faults.wrap("op", Effect.sync(() => ++ran))

      assert.strictEqual(yield* Effect.flip(op), error)
      assert.strictEqual(yield* Effect.flip(op), error)
      assert.strictEqual(ran, 0)
      assert.strictEqual(yield* op, 1)
      assert.strictEqual(yield* op, 2)
      assert.strictEqual(yield* faults.calls("op"), 4)
    }))

  it.effect("alwaysFail fails every call without running the effect", () =>
    Effect.gen(function*() {
      const error = new ResourceError({ message: "no space left on device", resource: "disk" })
      const faults = yield* makeFaultInjector<"op">({ op: { alwaysFail: error } })
      let ran = 0
      const op = faults.wrap("op", Effect.sync(() => ++ran))
      for (let i = 0; i < 5; i++) assert.strictEqual(yield* Effect.flip(op), error)
      assert.strictEqual(ran, 0)
      assert.strictEqual(yield* faults.calls("op"), 5)
    }))

  it.effect("failWhen decides per call index (0-based)", () =>
    Effect.gen(function*() {
      const error = new RetryableError({ message: "busy" })
      const faults = yield* makeFaultInjector<"op">({
        op: { failWhen: (i) => (i % 2 === 1 ? error : undefined) }
      })
      const outcomes: Array<string> = []
      for (let i = 0; i < 4; i++) {
        const exit = yield* Effect.exit(faults.wrap("op", Effect.succeed(i)))
        outcomes.push(exit._tag)
      }
      assert.deepStrictEqual(outcomes, ["Success", "Failure", "Success", "Failure"])
    }))

  it.effect("failAfter runs the effect and then fails (the answer is lost)", () =>
    Effect.gen(function*() {
      const error = new TimeoutError({ message: "rpc timeout" })
      const faults = yield* makeFaultInjector<"op">({ op: { failAfter: { times: 1, error } } })
      let ran = 0
      const op = faults.wrap("op", Effect.sync(() => ++ran))
      assert.strictEqual(yield* Effect.flip(op), error)
      assert.strictEqual(ran, 1)
      assert.strictEqual(yield* op, 2)
    }))

  it.effect("latency delays every call on the Clock: nothing completes before TestClock moves", () =>
    Effect.gen(function*() {
      const faults = yield* makeFaultInjector<"op">({ op: { latency: "1 second" } })
      let ran = false
      const fiber = yield* Effect.forkChild(faults.wrap("op", Effect.sync(() => (ran = true))))

      yield* TestClock.adjust(Duration.millis(999))
      assert.isTrue(yield* isRunning(fiber))
      assert.isFalse(ran)
      assert.strictEqual(yield* faults.calls("op"), 1)

      yield* TestClock.adjust(Duration.millis(1))
      assert.isTrue(yield* Fiber.join(fiber))
      assert.isTrue(ran)
    }))

  it.effect("latency comes before failure checks: a failing call fails only after the delay", () =>
    Effect.gen(function*() {
      const error = new NetworkError({ message: "reset" })
      const faults = yield* makeFaultInjector<"op">({ op: { latency: "5 seconds", alwaysFail: error } })
      const fiber = yield* Effect.forkChild(Effect.flip(faults.wrap("op", Effect.void)))
      yield* TestClock.adjust("4 seconds")
      assert.isTrue(yield* isRunning(fiber))
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(fiber), error)
    }))

  it.effect("hang never completes, whatever the clock does, and is interruptible", () =>
    Effect.gen(function*() {
      const faults = yield* makeFaultInjector<"op">({ op: { hang: true } })
      let ran = false
      const fiber = yield* Effect.forkChild(faults.wrap("op", Effect.sync(() => (ran = true))))
      yield* TestClock.adjust("1 day")
      assert.isTrue(yield* isRunning(fiber))
      assert.strictEqual(yield* faults.calls("op"), 1)
      yield* Fiber.interrupt(fiber)
      assert.isFalse(yield* isRunning(fiber))
      assert.isFalse(ran)
    }))

  it.effect("set replaces the plan at runtime and restarts failFirst counting; clear removes faults", () =>
    Effect.gen(function*() {
      const error = new NetworkError({ message: "down" })
      const faults = yield* makeFaultInjector<"a" | "b">({ a: { alwaysFail: error } })
      const a = faults.wrap("a", Effect.succeed("a"))
      const b = faults.wrap("b", Effect.succeed("b"))
      assert.strictEqual(yield* Effect.flip(a), error)
      assert.strictEqual(yield* b, "b")
      assert.strictEqual(yield* b, "b")

      yield* faults.set({ b: { failFirst: { times: 1, error } } })
      assert.strictEqual(yield* a, "a", "a's fault was replaced by the new plan")
      assert.strictEqual(yield* Effect.flip(b), error, "failFirst counts from set, not from the first call")
      assert.strictEqual(yield* b, "b")

      yield* faults.set({ a: { alwaysFail: error } })
      yield* faults.clear
      assert.strictEqual(yield* a, "a")
      assert.strictEqual(yield* faults.calls("a"), 3)
      assert.strictEqual(yield* faults.calls("b"), 4)
    }))
})

describe("TestGradientStore", () => {
  it("rawCidV0 of the raw bytes of \"hello world\\n\" is a deterministic CIDv0 (not Kubo's UnixFS CID)", () => {
    const cid = rawCidV0(bytes("hello world\n"))
    // Computed independently (Python: base58btc(0x12 0x20 ‖ sha256)).
    assert.strictEqual(cid, "QmZjTnYw2TFhn9Nn7tjmPSoTBoY7YRkwPzwSrSbabY24Kp")
    assert.isTrue(Schema.is(Cid)(cid))
    assert.strictEqual(rawCidV0(bytes("hello world\n")), cid)
    assert.notStrictEqual(rawCidV0(bytes("hello world")), cid)
    assert.notStrictEqual(cid, "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")
  })

  it.effect("computeCid stores nothing; add stores and pins under the same CID", () =>
    Effect.gen(function*() {
      const store = yield* GradientStore
      const control = yield* TestGradientStore
      const computed = yield* store.computeCid(bytes("gradient"))
      assert.deepStrictEqual(yield* control.stored, [])
      assert.deepStrictEqual(yield* store.pins, [])

      const added = yield* store.add(bytes("gradient"))
      assert.strictEqual(added, computed)
      assert.deepStrictEqual(yield* control.stored, [added])
      assert.deepStrictEqual(yield* control.pinned, [added])
      assert.deepStrictEqual(yield* store.get(added, 1000), bytes("gradient"))
    }).pipe(Effect.provide(TestGradientStore.layer())))

  it.effect("unpin is idempotent, gc removes only unpinned blocks, operations are logged in order", () =>
    Effect.gen(function*() {
      const store = yield* GradientStore
      const control = yield* TestGradientStore
      const a = yield* store.add(bytes("a"))
      const b = yield* store.add(bytes("b"))
      yield* store.unpin(a)
      yield* store.unpin(a)
      yield* store.unpin(rawCidV0(bytes("never stored")))
      assert.deepStrictEqual(yield* store.pins, [b])
      assert.deepStrictEqual(yield* control.stored, [a, b], "unpin alone frees nothing")

      assert.strictEqual(yield* store.gc, 1)
      assert.deepStrictEqual(yield* control.stored, [b])
      assert.strictEqual(yield* store.gc, 0)
      assert.strictEqual((yield* Effect.flip(store.get(a, 1000)))._tag, "ValidationError")

      const ops = (yield* control.operations).map(({ cid, op }) => `${op}:${cid === a ? "a" : cid === b ? "b" : "?"}`)
      assert.deepStrictEqual(ops, ["add:a", "add:b", "unpin:a", "unpin:a", "unpin:?", "gc:a"])
    }).pipe(Effect.provide(TestGradientStore.layer())))

  it.effect("get: ValidationError for an unknown CID, ResourceError over maxBytes, exact size allowed", () =>
    Effect.gen(function*() {
      const store = yield* GradientStore
      const cid = yield* store.add(new Uint8Array(100))
      const unknown = yield* Effect.flip(store.get(rawCidV0(bytes("x")), 1000))
      assert.strictEqual(unknown._tag, "ValidationError")
      const tooBig = yield* Effect.flip(store.get(cid, 99))
      assert.strictEqual(tooBig._tag, "ResourceError")
      assert.strictEqual((yield* store.get(cid, 100)).length, 100)
    }).pipe(Effect.provide(TestGradientStore.layer())))

  it.effect("stored bytes are copies: mutating the caller's buffer does not change the block", () =>
    Effect.gen(function*() {
      const store = yield* GradientStore
      const buffer = bytes("immutable")
      const cid = yield* store.add(buffer)
      buffer[0] = 0
      const read = yield* store.get(cid, 100)
      assert.strictEqual(new TextDecoder().decode(read), "immutable")
    }).pipe(Effect.provide(TestGradientStore.layer())))

  const busy = new RetryableError({ message: "ipfs busy" })
  it.effect("faults: a failed add pins nothing; failAfter pins and still fails (an orphan pin)", () =>
    Effect.gen(function*() {
      const store = yield* GradientStore
      const control = yield* TestGradientStore
      assert.strictEqual(yield* Effect.flip(store.add(bytes("g"))), busy)
      assert.deepStrictEqual(yield* control.pinned, [])

      yield* control.setFaults({ add: { failAfter: { times: 1, error: busy } } })
      assert.strictEqual(yield* Effect.flip(store.add(bytes("g"))), busy)
      assert.deepStrictEqual(yield* control.pinned, [rawCidV0(bytes("g"))])
      assert.strictEqual(yield* control.calls("add"), 2)
    }).pipe(
      Effect.provide(
        TestGradientStore.layer({ faults: { add: { alwaysFail: busy } } })
      )
    ))

  it.effect("pinned option seeds pins before the first call", () =>
    Effect.gen(function*() {
      const store = yield* GradientStore
      assert.deepStrictEqual(yield* store.pins, [rawCidV0(bytes("left over"))])
    }).pipe(Effect.provide(TestGradientStore.layer({ pinned: [bytes("left over")] }))))
})

describe("TestChain", () => {
  it.effect("identity defaults to anvil's and can be overridden", () =>
    Effect.gen(function*() {
      const chain = yield* Chain
      const identity = yield* chain.identity
      assert.strictEqual(identity.chainId, 1)
      assert.strictEqual(identity.registry, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
      assert.strictEqual(identity.miner, "0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
    }).pipe(Effect.provide(TestChain.layer({ identity: { chainId: 1 } }))))

  it.effect("one submission per chunk: a second one reverts AlreadySubmitted naming the holder and its hash", () =>
    Effect.gen(function*() {
      const chain = yield* Chain
      const control = yield* TestChain
      const first = yield* chain.submitGradient(submission(0, hashA))
      assert.isFalse(first.alreadySubmitted)
      assert.strictEqual(first.blockNumber, 1n)
      assert.match(first.txHash, /^0x[0-9a-f]{64}$/)
      assert.strictEqual(Option.getOrThrow(yield* chain.blockHash(1n)), first.blockHash)

      for (const hash of [hashA, hashB]) {
        const conflict = yield* Effect.flip(chain.submitGradient(submission(0, hash)))
        assert.strictEqual(conflict._tag === "ChainRevertError" ? conflict.errorName : conflict._tag, "AlreadySubmitted")
        assert.deepStrictEqual(conflict._tag === "ChainRevertError" ? conflict.args.slice(2) : [], [
          "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
          hashA
        ])
      }

      const other = yield* chain.submitGradient(submission(1, hashB))
      assert.strictEqual(other.blockNumber, 2n)
      assert.notStrictEqual(other.txHash, first.txHash)

      const recorded = yield* control.submissions
      assert.deepStrictEqual(recorded.map((s) => [s.chunkId, s.gradientHash, s.receipt.blockNumber]), [
        [0, hashA, 1n],
        [1, hashB, 2n]
      ])
      assert.strictEqual(yield* control.calls("submitGradient"), 4)
      const own = yield* chain.ownSubmissions
      assert.deepStrictEqual(own.map((s) => [s.chunkId, s.txHash]), [[0, first.txHash], [1, other.txHash]])
    }).pipe(Effect.provide(TestChain.layer())))

  it.effect("tx hashes are deterministic across instances", () =>
    Effect.gen(function*() {
      const once = Effect.gen(function*() {
        const chain = yield* Chain
        return (yield* chain.submitGradient(submission(5, hashA))).txHash
      })
      const x = yield* Effect.provide(once, TestChain.layer())
      const y = yield* Effect.provide(once, TestChain.layer())
      assert.strictEqual(x, y)
    }))

  it.effect("a lost answer (failAfter) leaves the submission on chain: transactionStatus finds it mined", () =>
    Effect.gen(function*() {
      const chain = yield* Chain
      const control = yield* TestChain
      let signed: SignedTransaction | undefined
      const lost = yield* Effect.flip(chain.submitGradient(submission(0, hashA), (s) => Effect.sync(() => (signed = s))))
      assert.strictEqual(lost._tag, "NetworkError")
      assert.strictEqual((yield* control.submissions).length, 1)
      const status = yield* chain.transactionStatus(signed!)
      assert.strictEqual(status._tag, "Mined")
      assert.isTrue(status._tag === "Mined" && status.success)
    }).pipe(
      Effect.provide(
        TestChain.layer({
          faults: { submitGradient: { failAfter: { times: 1, error: new NetworkError({ message: "reset" }) } } }
        })
      )
    ))

  it.effect("a lost broadcast is pending until the same bytes are re-sent; a used nonce drops it", () =>
    Effect.gen(function*() {
      const chain = yield* Chain
      const control = yield* TestChain
      yield* control.loseBroadcasts(2)
      const captured: Array<SignedTransaction> = []
      const capture = (s: SignedTransaction) => Effect.sync(() => void captured.push(s))
      assert.strictEqual((yield* Effect.flip(chain.submitGradient(submission(0, hashA), capture)))._tag, "NetworkError")
      assert.strictEqual((yield* chain.transactionStatus(captured[0]!))._tag, "Pending")
      yield* chain.rebroadcast(captured[0]!)
      assert.strictEqual((yield* chain.transactionStatus(captured[0]!))._tag, "Mined")
      yield* chain.rebroadcast(captured[0]!) // "already known": nothing happens
      assert.strictEqual((yield* control.submissions).length, 1)
      // Lost again, and another transaction takes its nonce: dropped for good, re-sending does nothing.
      yield* Effect.flip(chain.submitGradient(submission(1, hashB), capture))
      yield* control.useNextNonce
      assert.strictEqual((yield* chain.transactionStatus(captured[1]!))._tag, "Dropped")
      yield* chain.rebroadcast(captured[1]!)
      assert.strictEqual((yield* control.submissions).length, 1)
    }).pipe(Effect.provide(TestChain.layer())))

  it.effect("rewindTo loses the later blocks (new hashes after); reset makes a new chain", () =>
    Effect.gen(function*() {
      const chain = yield* Chain
      const control = yield* TestChain
      const kept = yield* chain.submitGradient(submission(0, hashA))
      const lost = yield* chain.submitGradient(submission(1, hashB))
      const genesis = (yield* chain.fingerprint).genesisHash
      yield* control.rewindTo(kept.blockNumber)
      assert.strictEqual(Option.getOrThrow(yield* chain.blockHash(kept.blockNumber)), kept.blockHash)
      assert.isTrue(Option.isNone(yield* chain.blockHash(lost.blockNumber)))
      assert.isTrue(Option.isNone(yield* chain.getSubmission(1n, 1)))
      const again = yield* chain.submitGradient(submission(1, hashB))
      assert.strictEqual(again.blockNumber, lost.blockNumber)
      assert.notStrictEqual(again.blockHash, lost.blockHash)
      yield* control.reset
      assert.notStrictEqual((yield* chain.fingerprint).genesisHash, genesis)
      assert.deepStrictEqual(yield* chain.ownSubmissions, [])
    }).pipe(Effect.provide(TestChain.layer())))

  it.effect("rounds, getRound and now: the default round, chain time from the Clock", () =>
    Effect.gen(function*() {
      const chain = yield* Chain
      const [round, ...others] = yield* chain.rounds
      assert.strictEqual(others.length, 0)
      assert.strictEqual(round?.roundId, 1n)
      assert.strictEqual(round?.chunkCount, 1000)
      assert.strictEqual(round?.difficulty, 16)
      assert.strictEqual(round?.spec, "{}")
      assert.strictEqual(round?.specHash, `0x${createHash("sha256").update("{}").digest("hex")}`)
      assert.strictEqual(round?.modelCid, rawCidV0(bytes("r3mes test model")))
      assert.isAbove(round?.deadline ?? 0, 4_000_000_000)
      assert.deepStrictEqual(yield* chain.getRound(1n), Option.some(round!))
      assert.isTrue(Option.isNone(yield* chain.getRound(2n)))
      assert.strictEqual(yield* chain.now, 0)
      yield* TestClock.adjust("90500 millis")
      assert.strictEqual(yield* chain.now, 90)
    }).pipe(Effect.provide(TestChain.layer())))

  it.effect("claimChunk: never-claimed chunks in order, then the lowest expired unsubmitted lease, else NoFreeChunk", () =>
    Effect.gen(function*() {
      const chain = yield* Chain
      const control = yield* TestChain
      const first = [yield* chain.claimChunk(1n), yield* chain.claimChunk(1n), yield* chain.claimChunk(1n)]
      assert.deepStrictEqual(first.map((c) => [c.chunkId, c.leaseExpiry]), [[0, 100], [1, 100], [2, 100]])
      assert.strictEqual(first[0]?.miner, defaultTestIdentity.miner)
      assert.match(first[0]?.txHash ?? "", /^0x[0-9a-f]{64}$/)
      assert.deepStrictEqual(reverted(yield* Effect.flip(chain.claimChunk(1n))), ["NoFreeChunk", "1"])

      yield* chain.submitGradient(submission(0, hashA))
      // A lease is still held at its expiry second; it is free once strictly past.
      yield* TestClock.adjust("100 seconds")
      assert.deepStrictEqual(reverted(yield* Effect.flip(chain.claimChunk(1n))), ["NoFreeChunk", "1"])
      yield* TestClock.adjust("1 second")
      const again = [yield* chain.claimChunk(1n), yield* chain.claimChunk(1n)]
      assert.deepStrictEqual(again.map((c) => [c.chunkId, c.leaseExpiry]), [[1, 201], [2, 201]])
      assert.deepStrictEqual(reverted(yield* Effect.flip(chain.claimChunk(1n))), ["NoFreeChunk", "1"])
      assert.deepStrictEqual((yield* control.claims).map((c) => c.chunkId), [0, 1, 2, 1, 2])
      assert.deepStrictEqual(
        (yield* chain.getRound(1n)).pipe(Option.map((r) => [r.nextChunk, r.submittedCount])),
        Option.some([3, 1])
      )
    }).pipe(
      Effect.provide(
        TestChain.layer({ rounds: [{ roundId: 1n, chunkCount: 3, difficulty: 16, deadline: 10_000 }], leaseSeconds: 100 })
      )
    ))

  it.effect("claimChunk: RoundNotOpen for an unknown round, RoundExpired once past the deadline (not at it)", () =>
    Effect.gen(function*() {
      const chain = yield* Chain
      assert.deepStrictEqual(reverted(yield* Effect.flip(chain.claimChunk(9n))), ["RoundNotOpen", "9"])
      yield* TestClock.adjust("50 seconds")
      assert.strictEqual((yield* chain.claimChunk(1n)).chunkId, 0)
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(reverted(yield* Effect.flip(chain.claimChunk(1n))), ["RoundExpired", "1", "50"])
    }).pipe(Effect.provide(TestChain.layer({ rounds: [{ roundId: 1n, chunkCount: 3, difficulty: 16, deadline: 50 }] }))))

  it.effect("submitGradient checks in the contract's order: round, AlreadySubmitted, deadline, claim, lease", () =>
    Effect.gen(function*() {
      const chain = yield* Chain
      const submit = (roundId: bigint, chunkId: number, gradientHash = hashA) =>
        chain.submitGradient(new Submission({ roundId, chunkId, cid: cidA, gradientHash, powNonce: 7n }))

      assert.deepStrictEqual(reverted(yield* Effect.flip(submit(9n, 0))), ["RoundNotOpen", "9"])
      assert.deepStrictEqual(reverted(yield* Effect.flip(submit(1n, 0))), ["ChunkNotClaimed", "1", "0"])
      yield* chain.claimChunk(1n)
      yield* chain.claimChunk(1n)
      assert.deepStrictEqual(reverted(yield* Effect.flip(submit(1n, 3))), ["ChunkNotClaimed", "1", "3"])
      yield* submit(1n, 0)

      yield* TestClock.adjust("101 seconds")
      assert.deepStrictEqual(reverted(yield* Effect.flip(submit(1n, 1))), ["LeaseExpired", "1", "1", "100"])
      yield* TestClock.adjust("1000 seconds")
      // AlreadySubmitted is decided before the deadline: a retry after it still learns its submission landed.
      assert.deepStrictEqual(reverted(yield* Effect.flip(submit(1n, 0))), [
        "AlreadySubmitted",
        "1",
        "0",
        defaultTestIdentity.miner,
        hashA
      ])
      assert.deepStrictEqual(reverted(yield* Effect.flip(submit(1n, 0, hashB))), [
        "AlreadySubmitted",
        "1",
        "0",
        defaultTestIdentity.miner,
        hashA
      ])
      assert.deepStrictEqual(reverted(yield* Effect.flip(submit(1n, 1))), ["RoundExpired", "1", "1000"])
    }).pipe(
      Effect.provide(
        TestChain.layer({
          rounds: [{ roundId: 1n, chunkCount: 3, difficulty: 16, deadline: 1000 }],
          leaseSeconds: 100,
          requireClaim: true
        })
      )
    ))

  it.effect("without requireClaim an unclaimed chunk may be submitted, but a claimed one keeps its lease rule", () =>
    Effect.gen(function*() {
      const chain = yield* Chain
      assert.isFalse((yield* chain.submitGradient(submission(0, hashA))).alreadySubmitted)
      // The submitted chunk is no longer free: the next claim skips it.
      assert.strictEqual((yield* chain.claimChunk(1n)).chunkId, 1)
      yield* TestClock.adjust("101 seconds")
      assert.deepStrictEqual(reverted(yield* Effect.flip(chain.submitGradient(submission(1, hashA)))), [
        "LeaseExpired",
        "1",
        "1",
        "100"
      ])
      assert.deepStrictEqual(reverted(yield* Effect.flip(chain.submitGradient(submission(5, hashA)))), [
        "ChunkNotClaimed",
        "1",
        "5"
      ])
    }).pipe(
      Effect.provide(TestChain.layer({ rounds: [{ roundId: 1n, chunkCount: 3, difficulty: 16, deadline: 10_000 }], leaseSeconds: 100 }))
    ))

  it.effect("checkPow verifies the proof of work against the round's difficulty", () =>
    Effect.gen(function*() {
      const chain = yield* Chain
      const identity = yield* chain.identity
      const solution = yield* solveReference({
        ...identity,
        roundId: 1n,
        chunkId: 0,
        gradientHash: hashA,
        cid: cidA,
        difficulty: 8
      })
      assert.isAbove(Number(solution.nonce), 0, "the smallest valid nonce is not 0, so nonce - 1 is invalid")
      const weak = yield* Effect.flip(
        chain.submitGradient(
          new Submission({ roundId: 1n, chunkId: 0, cid: cidA, gradientHash: hashA, powNonce: solution.nonce - 1n })
        )
      )
      const [name, powHash, difficulty] = reverted(weak)
      assert.deepStrictEqual([name, difficulty], ["InsufficientWork", "8"])
      assert.match(powHash ?? "", /^0x[0-9a-f]{64}$/)
      const receipt = yield* chain.submitGradient(
        new Submission({ roundId: 1n, chunkId: 0, cid: cidA, gradientHash: hashA, powNonce: solution.nonce })
      )
      assert.isFalse(receipt.alreadySubmitted)
    }).pipe(
      Effect.provide(
        TestChain.layer({ rounds: [{ roundId: 1n, chunkCount: 3, difficulty: 8, deadline: 10_000 }], checkPow: true })
      )
    ))

  it.effect("completeChunk is idempotent and needs a submission; getSubmission shows the completion", () =>
    Effect.gen(function*() {
      const chain = yield* Chain
      const control = yield* TestChain
      assert.deepStrictEqual(reverted(yield* Effect.flip(chain.completeChunk(1n, 0))), ["ChunkNotClaimed", "1", "0"])
      assert.isTrue(Option.isNone(yield* chain.getSubmission(1n, 0)))
      const receipt = yield* chain.submitGradient(submission(0, hashA))
      const before = yield* chain.getSubmission(1n, 0)
      assert.isTrue(Option.isSome(before) && !before.value.completed)
      assert.isTrue(yield* chain.completeChunk(1n, 0))
      assert.isTrue(yield* chain.completeChunk(1n, 0))
      assert.deepStrictEqual(yield* control.completedChunks, [{ roundId: 1n, chunkId: 0 }])
      const after = yield* chain.getSubmission(1n, 0)
      assert.isTrue(Option.isSome(after))
      if (Option.isSome(after)) {
        assert.deepStrictEqual(
          [after.value.miner, after.value.cid, after.value.gradientHash, after.value.powNonce, after.value.blockNumber],
          [defaultTestIdentity.miner, cidA, hashA, 7n, receipt.blockNumber]
        )
        assert.isTrue(after.value.completed)
      }
    }).pipe(Effect.provide(TestChain.layer())))

  it.effect("openRound applies the contract's checks and the new round is claimable at once", () =>
    Effect.gen(function*() {
      const chain = yield* Chain
      const control = yield* TestChain
      yield* TestClock.adjust("100 seconds")
      const open = (roundId: bigint, chunkCount: number, difficulty: number, deadline: number) =>
        Effect.flip(control.openRound({ roundId, chunkCount, difficulty, deadline })).pipe(Effect.map(reverted))
      assert.deepStrictEqual(yield* open(1n, 5, 16, 1000), ["RoundExists", "1"])
      assert.deepStrictEqual(yield* open(2n, 5, 0, 1000), ["InvalidDifficulty", "0"])
      assert.deepStrictEqual(yield* open(2n, 5, 65, 1000), ["InvalidDifficulty", "65"])
      assert.deepStrictEqual(yield* open(2n, 0, 16, 1000), ["InvalidChunkCount", "0"])
      assert.deepStrictEqual(yield* open(2n, 5, 16, 100), ["RoundExpired", "2", "100"])

      const round = yield* control.openRound({ roundId: 2n, chunkCount: 5, difficulty: 20, deadline: 1000, spec: "{\"a\":1}" })
      assert.strictEqual(round.specHash, `0x${createHash("sha256").update("{\"a\":1}").digest("hex")}`)
      assert.deepStrictEqual((yield* chain.rounds).map((r) => r.roundId), [1n, 2n])
      assert.deepStrictEqual(yield* chain.getRound(2n), Option.some(round))
      assert.strictEqual((yield* chain.claimChunk(2n)).leaseExpiry, 700)
    }).pipe(Effect.provide(TestChain.layer())))

  it.effect("an invalid seeded round is a defect of the test", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Effect.provide(
          Effect.gen(function*() {
            yield* Chain
          }),
          TestChain.layer({ rounds: [{ roundId: 1n, chunkCount: 0, difficulty: 16, deadline: 1 }] })
        )
      )
      assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
    }))

  it.effect("faults apply to every port method", () =>
    Effect.gen(function*() {
      const chain = yield* Chain
      const control = yield* TestChain
      const error = new NetworkError({ message: "refused" })
      yield* control.setFaults({ claimChunk: { failFirst: { times: 1, error } }, now: { alwaysFail: error } })
      assert.strictEqual(yield* Effect.flip(chain.claimChunk(1n)), error)
      assert.strictEqual((yield* chain.claimChunk(1n)).chunkId, 0, "the failed call claimed nothing")
      assert.strictEqual(yield* Effect.flip(chain.now), error)
      assert.strictEqual(yield* control.calls("claimChunk"), 2)
    }).pipe(Effect.provide(TestChain.layer())))
})

describe("TestTrainer", () => {
  it.effect("deterministic envelope per (round, chunk), sized as configured, hash = sha256(envelope)", () =>
    Effect.gen(function*() {
      const trainer = yield* Trainer
      const control = yield* TestTrainer
      const a = yield* trainer.train(task(0), defaultTestIdentity.miner)
      const a2 = yield* trainer.train(task(0), defaultTestIdentity.miner)
      const b = yield* trainer.train(task(1), defaultTestIdentity.miner)
      assert.strictEqual(a.envelope.length, 300)
      assert.deepStrictEqual(a.envelope, a2.envelope)
      assert.notDeepEqual(a.envelope, b.envelope)
      assert.strictEqual(a.gradientHash, `0x${createHash("sha256").update(a.envelope).digest("hex")}`)
      assert.isTrue(new TextDecoder().decode(a.envelope).startsWith("r3mes-test-gradient round=3 chunk=0\n"))
      assert.strictEqual(a.lossBefore, 2.3)
      assert.strictEqual(a.lossAfter, 1.9)
      assert.deepStrictEqual((yield* control.trained).map((t) => t.chunkId), [0, 0, 1])
    }).pipe(Effect.provide(TestTrainer.layer({ envelopeBytes: 300 }))))

  it.effect("default envelope is 1024 bytes; a failed train is counted but not recorded", () =>
    Effect.gen(function*() {
      const trainer = yield* Trainer
      const control = yield* TestTrainer
      const oom = yield* Effect.flip(trainer.train(task(0), defaultTestIdentity.miner))
      assert.strictEqual(oom._tag, "ResourceError")
      assert.strictEqual((yield* trainer.train(task(0), defaultTestIdentity.miner)).envelope.length, 1024)
      assert.strictEqual((yield* control.trained).length, 1)
      assert.strictEqual(yield* control.calls("train"), 2)
    }).pipe(
      Effect.provide(
        TestTrainer.layer({
          faults: { train: { failFirst: { times: 1, error: new ResourceError({ message: "onnx out of memory" }) } } }
        })
      )
    ))
})

describe("TestTaskSource", () => {
  it.effect("hands out chunks 0, 1, … of the configured round, then waits forever", () =>
    Effect.gen(function*() {
      const source = yield* TaskSource
      const control = yield* TestTaskSource
      const first = yield* source.next
      const second = yield* source.next
      assert.deepStrictEqual([first.roundId, first.chunkId, second.chunkId], [9n, 0, 1])
      assert.strictEqual(first.difficulty, 20)
      assert.strictEqual(first.spec, "{}")
      assert.isTrue(Schema.is(Cid)(first.modelCid))

      const third = yield* Effect.forkChild(source.next)
      yield* TestClock.adjust("1 hour")
      assert.isTrue(yield* isRunning(third))
      yield* Fiber.interrupt(third)
      assert.deepStrictEqual((yield* control.claimed).map((t) => t.chunkId), [0, 1])
    }).pipe(Effect.provide(TestTaskSource.layer({ roundId: 9n, difficulty: 20, chunks: 2 }))))

  it.effect("complete answers completeResult (changeable at runtime) and records every completion", () =>
    Effect.gen(function*() {
      const source = yield* TaskSource
      const control = yield* TestTaskSource
      const receipt = new SubmissionReceipt({ txHash: hashA, blockNumber: 1n, blockHash: hashB, alreadySubmitted: false })
      const t = yield* source.next
      assert.isTrue(yield* source.complete(t, receipt))
      yield* control.setCompleteResult(false)
      assert.isFalse(yield* source.complete(t, receipt))
      assert.deepStrictEqual((yield* control.completed).map((c) => c.result), [true, false])
    }).pipe(Effect.provide(TestTaskSource.layer())))

  it.effect("a next failed by a fault consumes no chunk", () =>
    Effect.gen(function*() {
      const source = yield* TaskSource
      assert.strictEqual((yield* Effect.flip(source.next))._tag, "NetworkError")
      assert.strictEqual((yield* source.next).chunkId, 0)
    }).pipe(
      Effect.provide(
        TestTaskSource.layer({
          faults: { next: { failFirst: { times: 1, error: new NetworkError({ message: "rpc down" }) } } }
        })
      )
    ))
})

describe("TestPowSolver", () => {
  it.effect("answers the configured nonce at once and records the inputs", () =>
    Effect.gen(function*() {
      const solver = yield* PowSolver
      const control = yield* TestPowSolver
      const input = new PowInput({
        chainId: 31337,
        registry: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        miner: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        roundId: 1n,
        chunkId: 0,
        gradientHash: hashA,
        cid: cidA,
        difficulty: 32
      })
      const solution = yield* solver.solve(input)
      assert.strictEqual(solution.nonce, 42n)
      assert.strictEqual(solution.powHash, `0x${"0".repeat(64)}`)
      assert.deepStrictEqual(yield* control.inputs, [input])
    }).pipe(Effect.provide(TestPowSolver.layer({ nonce: 42 }))))
})

const record = (id: string, createdMs: number, state: TransactionRecord["state"] = "pending"): TransactionRecord => ({
  ...newRecord({ transactionId: id, key: `k-${id}`, roundId: 1n, chunkId: 0, nowMs: createdMs }),
  state
})

const event = (state: TransactionRecord["state"], name: string) => ({
  at: new Date(0).toISOString(),
  state,
  event: name,
  detail: null
})

describe("InMemoryJournal", () => {
  it.effect("list: newest created_at first, ties by most recently created, state filter, limit", () =>
    Effect.gen(function*() {
      const journal = yield* Journal
      yield* journal.save(record("old", 1_000, "committed"), event("committed", "committed"))
      yield* journal.save(record("tie-1", 5_000), event("pending", "created"))
      yield* journal.save(record("tie-2", 5_000, "committed"), event("committed", "committed"))
      yield* journal.save(record("new", 9_000), event("pending", "created"))
      // Replacing a record keeps its position among equal created_at values.
      yield* journal.save(record("tie-1", 5_000, "failed"), event("failed", "failed"))

      const ids = (rs: ReadonlyArray<TransactionRecord>) => rs.map((r) => r.transaction_id)
      assert.deepStrictEqual(ids(yield* journal.list({})), ["new", "tie-2", "tie-1", "old"])
      assert.deepStrictEqual(ids(yield* journal.list({ state: "committed" })), ["tie-2", "old"])
      assert.deepStrictEqual(ids(yield* journal.list({ limit: 2 })), ["new", "tie-2"])
      assert.deepStrictEqual(ids(yield* journal.list({ state: "committed", limit: 1 })), ["tie-2"])
      assert.deepStrictEqual(ids(yield* journal.list({ state: "rolled_back" })), [])
    }).pipe(Effect.provide(InMemoryJournal.layer())))

  it.effect("get / findByKey return the latest version; events keep their order per transaction", () =>
    Effect.gen(function*() {
      const journal = yield* Journal
      const control = yield* InMemoryJournal
      yield* journal.save(record("t1", 1_000), event("pending", "created"))
      yield* journal.save(record("t2", 2_000), event("pending", "created"))
      yield* journal.save(record("t1", 1_000, "training"), event("training", "training started"))
      yield* journal.save(record("t1", 1_000, "failed"), event("failed", "training failed"))

      assert.strictEqual((yield* journal.get("t1"))?.state, "failed")
      assert.strictEqual((yield* journal.findByKey("k-t1"))?.state, "failed")
      assert.isUndefined(yield* journal.get("nope"))
      assert.isUndefined(yield* journal.findByKey("nope"))
      const history = yield* journal.events("t1")
      assert.deepStrictEqual(history.map((e) => e.event), ["created", "training started", "training failed"])
      assert.isTrue(history.every((e) => e.transaction_id === "t1"))
      assert.deepStrictEqual(yield* journal.events("nope"), [])
      assert.deepStrictEqual((yield* control.all).map((r) => r.transaction_id), ["t1", "t2"])
    }).pipe(Effect.provide(InMemoryJournal.layer())))

  it.effect("a save fault (ENOSPC) writes nothing; clearing it lets saves through", () =>
    Effect.gen(function*() {
      const journal = yield* Journal
      const control = yield* InMemoryJournal
      const full = new ResourceError({ message: "ENOSPC: no space left on device", resource: "disk" })
      yield* control.setFaults({ save: { alwaysFail: full } })
      assert.strictEqual(yield* Effect.flip(journal.save(record("t", 1), event("pending", "created"))), full)
      assert.deepStrictEqual(yield* control.all, [])
      assert.deepStrictEqual(yield* journal.events("t"), [])

      yield* control.setFaults({})
      yield* journal.save(record("t", 1), event("pending", "created"))
      assert.strictEqual((yield* control.all).length, 1)
      assert.strictEqual(yield* control.calls("save"), 2)
    }).pipe(Effect.provide(InMemoryJournal.layer())))

  it.effect("records option seeds the journal (a crashed run's transactions)", () =>
    Effect.gen(function*() {
      const journal = yield* Journal
      assert.deepStrictEqual((yield* journal.list({})).map((r) => r.state), ["blockchain_submit"])
    }).pipe(Effect.provide(InMemoryJournal.layer({ records: [record("crashed", 1, "blockchain_submit")] }))))
})

describe("testMinerConfig / testPortsLayer", () => {
  it("testMinerConfig has test-friendly timings, no secrets, and applies overrides", () => {
    const config = testMinerConfig({ maxRetries: 7 })
    assert.strictEqual(Duration.toMillis(config.retryInitialDelay), 100)
    assert.strictEqual(Duration.toMillis(config.retryMaxDelay), 1_000)
    assert.strictEqual(Duration.toMillis(config.transactionTimeout), 30_000)
    assert.strictEqual(Duration.toMillis(config.circuitBreakerReset), 1_000)
    assert.strictEqual(config.powDifficulty, 16)
    assert.strictEqual(config.maxRetries, 7)
    assert.isTrue(Option.isNone(config.privateKey))
    assert.isTrue(Option.isNone(config.adminToken))
    assert.notStrictEqual(config.dataDir, testMinerConfig().dataDir, "each config gets its own data dir")
    assert.isTrue(config.logFile.startsWith(config.dataDir))
  })

  it.effect("testSettingsLayer provides the config as Settings", () =>
    Effect.gen(function*() {
      const settings = yield* Settings
      assert.strictEqual(settings.maxActiveTransactions, 2)
    }).pipe(Effect.provide(testSettingsLayer({ maxActiveTransactions: 2 }))))

  it.effect("testPortsLayer provides every port and control, forwarding options", () =>
    Effect.gen(function*() {
      const source = yield* TaskSource
      const trainer = yield* Trainer
      const store = yield* GradientStore
      const solver = yield* PowSolver
      const chain = yield* Chain
      const journal = yield* Journal
      const t = yield* source.next
      const result = yield* trainer.train(t, defaultTestIdentity.miner)
      const cid = yield* store.add(result.envelope)
      const identity = yield* chain.identity
      const pow = yield* solver.solve(
        new PowInput({ ...identity, roundId: t.roundId, chunkId: t.chunkId, gradientHash: result.gradientHash, cid, difficulty: 16 })
      )
      const receipt = yield* chain.submitGradient(
        new Submission({ roundId: t.roundId, chunkId: t.chunkId, cid, gradientHash: result.gradientHash, powNonce: pow.nonce })
      )
      assert.isTrue(yield* source.complete(t, receipt))
      assert.deepStrictEqual(yield* journal.list({}), [])

      assert.strictEqual(result.envelope.length, 64)
      assert.strictEqual(t.roundId, 4n)
      assert.strictEqual((yield* (yield* TestChain).submissions).length, 1)
      assert.deepStrictEqual(yield* (yield* TestGradientStore).pinned, [cid])
      assert.strictEqual(yield* (yield* TestTrainer).calls("train"), 1)
      assert.strictEqual(yield* (yield* TestPowSolver).calls("solve"), 1)
      assert.strictEqual((yield* (yield* TestTaskSource).completed).length, 1)
      assert.deepStrictEqual(yield* (yield* InMemoryJournal).all, [])
    }).pipe(
      Effect.provide(
        testPortsLayer({
          trainer: { envelopeBytes: 64 },
          taskSource: { roundId: 4n },
          // The chain only accepts submissions to rounds it knows.
          chain: { rounds: [{ roundId: 4n, chunkCount: 10, difficulty: 16, deadline: 4_102_444_800 }] }
        })
      )
    ))
})
