import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Option } from "effect"
import { TestClock } from "effect/testing"
import { NetworkError } from "../../src/domain/errors.ts"
import { SUBMIT_INTENT } from "../../src/domain/intents.ts"
import { Submission } from "../../src/domain/mining.ts"
import { newRecord } from "../../src/domain/TransactionRecord.ts"
import { Chain } from "../../src/services/Chain.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { Journal } from "../../src/services/Journal.ts"
import { MiningCoordinator } from "../../src/services/MiningCoordinator.ts"
import { TestChain } from "../../src/testing/TestChain.ts"
import { TestGradientStore } from "../../src/testing/TestGradientStore.ts"
import { minerLayer } from "../../src/app/minerLayer.ts"
import { Trainer } from "../../src/services/Trainer.ts"
import { InMemoryJournal } from "../../src/testing/InMemoryJournal.ts"
import { testMinerConfig } from "../../src/testing/testConfig.ts"
import { TestPowSolver } from "../../src/testing/TestPowSolver.ts"
import { TestTaskSource, testTask } from "../../src/testing/TestTaskSource.ts"
import { sha256Hex, testEnvelope, testProfile } from "../../src/testing/TestTrainer.ts"
import { harness } from "../support/harness.ts"

const KEY_PREFIX = "31337:0x5fbdb2315678afecb367f032d93f642f64180aa3:0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
const committedBytes = new TextEncoder().encode("a committed gradient")
const leftoverBytes = new TextEncoder().encode("a leftover")

/**
 * Issue 11, "the commit point is the broadcast, and the chain is the judge" (DESIGN.md "Durability"), on the test
 * ports: once the signed submission is journaled, nothing undoes it until the chain has ruled.
 */

const eventsOf = (id: string) =>
  Effect.gen(function*() {
    return yield* (yield* Journal).events(id)
  })

const runInBackground = (chunkId: number) =>
  Effect.gen(function*() {
    const coordinator = yield* MiningCoordinator
    const record = yield* coordinator.createTransaction(testTask(chunkId))
    const fiber = yield* Effect.forkChild(coordinator.executeAtomicMining(record.transaction_id))
    return { id: record.transaction_id, fiber }
  })

describe("the commit point", () => {
  it.effect("defect 1: a transaction timeout after the broadcast does not roll back; the chain decides (committed)", () =>
    Effect.gen(function*() {
      const chain = yield* TestChain
      // The broadcast is lost and the chain answers slowly: the 30 s transaction timeout strikes while the judge waits.
      yield* chain.loseBroadcasts(1)
      yield* chain.setFaults({ transactionStatus: { latency: "45 seconds" } })
      const { fiber, id } = yield* runInBackground(0)
      yield* TestClock.adjust("31 seconds")
      assert.strictEqual(Option.getOrThrow(yield* (yield* MiningCoordinator).getTransactionStatus(id)).state, "blockchain_submit")
      assert.deepStrictEqual((yield* (yield* TestGradientStore).pinned).length, 1, "still pinned past the timeout")
      yield* TestClock.adjust("2 minutes")
      const record = yield* Fiber.join(fiber)
      assert.strictEqual(record.state, "committed")
      assert.deepStrictEqual(record.rollback_actions, [])
      assert.strictEqual((yield* chain.submissions).length, 1)
      assert.strictEqual((yield* chain.transactions).length, 1, "one signature, never a second")
      assert.strictEqual((yield* (yield* TestGradientStore).pinned).length, 1)
    }).pipe(Effect.provide(harness({ config: { transactionTimeout: Duration.seconds(30) } }))))

  it.effect("a timeout before the commit point still rolls back (and unpins)", () =>
    Effect.gen(function*() {
      yield* (yield* TestChain).setFaults({ submitGradient: { hang: true } })
      const { fiber } = yield* runInBackground(0)
      yield* TestClock.adjust("31 seconds")
      const record = yield* Fiber.join(fiber)
      assert.strictEqual(record.state, "rolled_back")
      assert.strictEqual(record.error_category, "timeout")
      assert.deepStrictEqual(yield* (yield* TestGradientStore).pinned, [])
    }).pipe(Effect.provide(harness({ config: { transactionTimeout: Duration.seconds(30) } }))))

  it.effect("a shutdown past the commit point leaves the record to recovery, which commits it from the chain", () =>
    Effect.gen(function*() {
      const chain = yield* TestChain
      yield* chain.loseBroadcasts(1)
      yield* chain.setFaults({ transactionStatus: { hang: true } })
      const { fiber, id } = yield* runInBackground(0)
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(fiber)
      const left = Option.getOrThrow(yield* (yield* MiningCoordinator).getTransactionStatus(id))
      assert.strictEqual(left.state, "blockchain_submit")
      assert.isTrue((yield* eventsOf(id)).some((e) => e.event === "left_for_recovery"))
      assert.strictEqual((yield* (yield* TestGradientStore).pinned).length, 1, "kept for the chain's verdict")
      // The next start: the journaled bytes are re-sent, mined, committed.
      yield* chain.setFaults({})
      const summary = yield* (yield* MiningCoordinator).recoverTransactions()
      assert.strictEqual(summary.committed, 1)
      assert.strictEqual((yield* chain.submissions).length, 1)
      assert.strictEqual((yield* chain.transactions).length, 1)
    }).pipe(Effect.provide(harness())))

  it.effect("a shutdown before the commit point compensates, with the category `interrupted`", () =>
    Effect.gen(function*() {
      yield* (yield* TestChain).setFaults({ submitGradient: { hang: true } })
      const { fiber, id } = yield* runInBackground(0)
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(fiber)
      const record = Option.getOrThrow(yield* (yield* MiningCoordinator).getTransactionStatus(id))
      assert.strictEqual(record.state, "rolled_back")
      assert.strictEqual(record.error_category, "interrupted")
      assert.deepStrictEqual(yield* (yield* TestGradientStore).pinned, [])
    }).pipe(Effect.provide(harness())))

  it.effect("defect 11: a dropped transaction (its nonce used by another) is signed again, never both", () =>
    Effect.gen(function*() {
      const chain = yield* TestChain
      yield* chain.loseBroadcasts(1)
      yield* chain.setFaults({
        transactionStatus: { failFirst: { times: 1, error: new NetworkError({ message: "reset", service: "chain" }) } }
      })
      const { fiber, id } = yield* runInBackground(0)
      yield* TestClock.adjust("10 millis")
      yield* chain.useNextNonce
      yield* TestClock.adjust("1 minute")
      const record = yield* Fiber.join(fiber)
      assert.strictEqual(record.state, "committed")
      const transactions = yield* chain.transactions
      assert.strictEqual(transactions.length, 2)
      assert.isUndefined(transactions[0]!.mined, "the dropped one is never mined")
      assert.strictEqual(record.blockchain_tx_hash, transactions[1]!.signed.hash)
      const events = (yield* eventsOf(id)).map((e) => e.event)
      assert.deepStrictEqual(events.filter((e) => e === SUBMIT_INTENT || e === "not_submitted"), [
        SUBMIT_INTENT,
        "not_submitted",
        SUBMIT_INTENT
      ])
    }).pipe(Effect.provide(harness())))

  it.effect("the chain's proof that it never will (deadline passed, never mined) lets the rollback run", () =>
    Effect.gen(function*() {
      const chain = yield* TestChain
      yield* chain.loseBroadcasts(1)
      yield* chain.setFaults({ rebroadcast: { alwaysFail: new NetworkError({ message: "reset", service: "chain" }) } })
      const coordinator = yield* MiningCoordinator
      const record = yield* coordinator.createTransaction(testTask(0, { deadline: 100 }))
      const fiber = yield* Effect.forkChild(coordinator.executeAtomicMining(record.transaction_id))
      yield* TestClock.adjust("5 minutes")
      const final = yield* Fiber.join(fiber)
      assert.strictEqual(final.state, "rolled_back")
      assert.include(final.error_message ?? "", "deadline")
      assert.deepStrictEqual(yield* (yield* TestGradientStore).pinned, [])
      assert.strictEqual((yield* chain.submissions).length, 0)
    }).pipe(Effect.provide(harness({ config: { transactionTimeout: Duration.hours(1) } }))))

  it.effect("defect 9: cleanup-stale never cleans a transaction past its commit point", () =>
    Effect.gen(function*() {
      const chain = yield* TestChain
      yield* chain.loseBroadcasts(1)
      yield* chain.setFaults({ transactionStatus: { hang: true } })
      const coordinator = yield* MiningCoordinator
      const { fiber, id } = yield* runInBackground(0)
      yield* TestClock.adjust("10 minutes")
      const result = yield* coordinator.cleanupStaleTransactions("1 minute")
      assert.deepStrictEqual(result, { cleaned: [], awaiting_chain: [id] })
      assert.isFalse(yield* coordinator.forceCleanupTransaction(id))
      assert.strictEqual((yield* (yield* TestGradientStore).pinned).length, 1)
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(harness({ config: { transactionTimeout: Duration.hours(1) } }))))
})

describe("error categories (defect 10)", () => {
  it.effect("a defect (a bug in a port) is recorded as such (`unknown`, the defect's text), not as a validation error", () =>
    Effect.gen(function*() {
      const record = yield* (yield* MiningCoordinator).mine(testTask(0))
      assert.strictEqual(record.state, "failed")
      assert.strictEqual(record.error_category, "unknown")
      assert.include(record.error_message ?? "", "defect")
      assert.include(record.error_message ?? "", "a bug in the trainer")
      const stats = yield* (yield* MiningCoordinator).getStatistics
      assert.strictEqual(stats.error_breakdown.unknown, 1)
      assert.strictEqual(stats.error_breakdown.validation, 0)
    }).pipe(Effect.provide(
      minerLayer(testMinerConfig(), {
        chain: TestChain.layer(),
        taskSource: TestTaskSource.layer(),
        gradientStore: TestGradientStore.layer(),
        trainer: Layer.succeed(Trainer, Trainer.of({ train: () => Effect.die(new Error("a bug in the trainer")), profile: Effect.succeed(testProfile) })),
        journal: InMemoryJournal.layer(),
        powSolver: TestPowSolver.layer()
      })
    )))
})

describe("the journal is a cache of the chain", () => {
  it.effect("defect 2: committed records the chain lost (rewound) are rolled back, their pins released, mined again", () =>
    Effect.gen(function*() {
      const chain = yield* TestChain
      const coordinator = yield* MiningCoordinator
      const kept = yield* coordinator.mine(testTask(0))
      const lost1 = yield* coordinator.mine(testTask(1))
      const lost2 = yield* coordinator.mine(testTask(2))
      assert.strictEqual((yield* coordinator.auditChain).lost.length, 0)
      yield* chain.rewindTo(BigInt(kept.block_number!))
      const audit = yield* coordinator.auditChain
      assert.deepStrictEqual([...audit.lost].sort(), [lost1.transaction_id, lost2.transaction_id].sort())
      assert.isFalse(audit.reset)
      const journal = yield* Journal
      const record = (yield* journal.get(lost1.transaction_id))!
      assert.strictEqual(record.state, "rolled_back")
      assert.strictEqual(record.error_category, "chain_lost")
      assert.deepStrictEqual(yield* (yield* TestGradientStore).pinned, [kept.ipfs_hash!])
      assert.strictEqual((yield* journal.get(kept.transaction_id))!.state, "committed")
      // The same chunk again: a new transaction that really submits, never the old record.
      const again = yield* coordinator.mine(testTask(1))
      assert.notStrictEqual(again.transaction_id, lost1.transaction_id)
      assert.strictEqual(again.state, "committed")
      assert.isDefined((yield* chain.submissions).find((x) => x.chunkId === 1))
      const stats = yield* coordinator.getStatistics
      assert.strictEqual(stats.chain_lost, 2)
    }).pipe(Effect.provide(harness())))

  it.effect("a chain that lost its last blocks and went on mining: lost and new records at the same heights are told apart", () =>
    Effect.gen(function*() {
      const chain = yield* TestChain
      const coordinator = yield* MiningCoordinator
      const a = yield* coordinator.mine(testTask(0))
      yield* TestClock.adjust("1 second")
      const b = yield* coordinator.mine(testTask(1))
      yield* TestClock.adjust("1 second")
      yield* coordinator.auditChain
      yield* TestClock.adjust("1 second")
      // The chain loses b's block, then mines c at that very height (another hash).
      yield* chain.rewindTo(BigInt(a.block_number!))
      const c = yield* coordinator.mine(testTask(2))
      assert.strictEqual(c.block_number, b.block_number)
      yield* TestClock.adjust("1 second")
      const audit = yield* coordinator.auditChain
      assert.deepStrictEqual(audit.lost, [b.transaction_id])
      const journal = yield* Journal
      assert.strictEqual((yield* journal.get(c.transaction_id))!.state, "committed")
      assert.strictEqual((yield* journal.get(a.transaction_id))!.state, "committed")
      // The next audit starts from the new head and finds nothing more.
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual((yield* coordinator.auditChain).lost, [])
    }).pipe(Effect.provide(harness())))

  it.effect("a chain that kept the submission but lost the completion: the record stops claiming task_completed", () =>
    Effect.gen(function*() {
      const chain = yield* TestChain
      const coordinator = yield* MiningCoordinator
      const record = yield* coordinator.mine(testTask(0))
      assert.isTrue(record.task_completed)
      // (The harness's task source does not touch the chain: mark the chunk complete there as ChainTaskSource would.)
      yield* (yield* Chain).completeChunk(1n, 0)
      yield* coordinator.auditChain // the periodic audit: its checkpoint is the head, the completion's block
      yield* chain.rewindTo(BigInt(record.block_number!))
      const audit = yield* coordinator.auditChain
      assert.deepStrictEqual(audit.lost, [])
      const after = (yield* (yield* Journal).get(record.transaction_id))!
      assert.strictEqual(after.state, "committed")
      assert.isFalse(after.task_completed)
    }).pipe(Effect.provide(harness())))

  it.effect("a chain that kept the checkpoint and the submission but lost the completion: the record stops claiming it", () =>
    Effect.gen(function*() {
      const chain = yield* TestChain
      const coordinator = yield* MiningCoordinator
      yield* coordinator.auditChain // its checkpoint: a block before the submission, which the chain keeps
      yield* TestClock.adjust("2 seconds")
      const record = yield* coordinator.mine(testTask(0))
      yield* (yield* Chain).completeChunk(1n, 0)
      // The chain loses its last block alone (the completion's): nothing of what the audit knew is gone.
      yield* chain.rewindTo(BigInt(record.block_number!))
      const audit = yield* coordinator.auditChain
      assert.deepStrictEqual(audit.lost, [])
      const after = (yield* (yield* Journal).get(record.transaction_id))!
      assert.strictEqual(after.state, "committed")
      assert.isFalse(after.task_completed)
    }).pipe(Effect.provide(harness())))

  it.effect("a claim of a chunk the journal says committed, which the chain lost, is mined again (no false ✓)", () =>
    Effect.gen(function*() {
      const chain = yield* TestChain
      const coordinator = yield* MiningCoordinator
      const first = yield* coordinator.mine(testTask(0))
      yield* chain.reset
      const again = yield* coordinator.mine(testTask(0))
      assert.notStrictEqual(again.transaction_id, first.transaction_id)
      assert.strictEqual(again.state, "committed")
      assert.strictEqual((yield* chain.submissions).length, 1)
      assert.strictEqual((yield* (yield* Journal).get(first.transaction_id))!.state, "rolled_back")
    }).pipe(Effect.provide(harness())))

  /** Yields until `done` holds: the forked fibers run up to their next sleep (the clock is the test's). */
  const until = (done: Effect.Effect<boolean>) =>
    Effect.gen(function*() {
      for (let i = 0; i < 1_000 && !(yield* done); i++) yield* Effect.yieldNow
      assert.isTrue(yield* done, "the awaited state was never reached")
    })

  /** Chunk 0 mined and committed, then a chain that lost it (reset): what the three races below start from. */
  const committedThenLost = Effect.gen(function*() {
    const chain = yield* TestChain
    const store = yield* TestGradientStore
    const coordinator = yield* MiningCoordinator
    const first = yield* coordinator.mine(testTask(0))
    yield* chain.reset
    return { chain, store, coordinator, first }
  })

  it.effect("a pin released for a lost record is kept when its chunk, mined again meanwhile, pinned the same CID", () =>
    Effect.gen(function*() {
      // CI's chaos run: the audit found a submission lost with a devnet's last seconds and released its pin while the
      // chunk was mined again, which pinned the same CID (training is deterministic): two committed submissions unpinned.
      const { chain, coordinator, first, store } = yield* committedThenLost
      // The audit reads the chain's submissions slowly; the new transaction's submission waits longer still.
      yield* chain.setFaults({ ownSubmissions: { latency: "10 seconds" }, submitGradient: { latency: "20 seconds" } })
      const audit = yield* Effect.forkChild(coordinator.auditChain)
      yield* until(chain.calls("ownSubmissions").pipe(Effect.map((n) => n === 1)))
      const again = yield* Effect.forkChild(coordinator.mine(testTask(0)))
      yield* until(store.pinned.pipe(Effect.map((p) => p.includes(first.ipfs_hash!))))
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual((yield* Fiber.join(audit)).lost, [first.transaction_id])
      yield* TestClock.adjust("10 seconds")
      const record = yield* Fiber.join(again)
      assert.strictEqual(record.state, "committed")
      assert.strictEqual(record.ipfs_hash, first.ipfs_hash, "the same chunk trains to the same CID")
      assert.deepStrictEqual(yield* store.pinned, [record.ipfs_hash!])
    }).pipe(Effect.provide(harness())))

  it.effect("an unpin under way finishes before the same CID is pinned again, which then holds", () =>
    Effect.gen(function*() {
      const { chain, coordinator, first, store } = yield* committedThenLost
      yield* store.setFaults({ unpin: { latency: "10 seconds" } })
      const audit = yield* Effect.forkChild(coordinator.auditChain)
      yield* until(store.calls("unpin").pipe(Effect.map((n) => n === 1)))
      const again = yield* Effect.forkChild(coordinator.mine(testTask(0)))
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(audit)
      const record = yield* Fiber.join(again)
      assert.strictEqual(record.state, "committed")
      assert.deepStrictEqual(yield* store.pinned, [first.ipfs_hash!])
    }).pipe(Effect.provide(harness())))

  it.effect("a record the audit listed, then a new claim found lost and mined again, is not committed twice", () =>
    Effect.gen(function*() {
      // CI's chaos run: the audit judged a stale copy of the record after its chunk was mined again; the new
      // submission (the same gradient) made the old record look held, and it was saved committed again.
      const { chain, coordinator, first } = yield* committedThenLost
      yield* chain.setFaults({ getSubmission: { latency: "10 seconds" } })
      const audit = yield* Effect.forkChild(coordinator.auditChain)
      yield* until(chain.calls("getSubmission").pipe(Effect.map((n) => n === 1)))
      yield* chain.setFaults({})
      const again = yield* Effect.forkChild(coordinator.mine(testTask(0)))
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(audit)
      const record = yield* Fiber.join(again)
      assert.strictEqual(record.state, "committed")
      const journal = yield* Journal
      assert.strictEqual((yield* journal.get(first.transaction_id))!.state, "rolled_back")
      const committed = (yield* journal.list({ state: "committed" })).filter((r) => r.chunk_id === 0)
      assert.deepStrictEqual(committed.map((r) => r.transaction_id), [record.transaction_id])
      assert.strictEqual((yield* coordinator.getStatistics).chain_lost, 1, "lost once, not once per look")
    }).pipe(Effect.provide(harness())))

  it.effect("a reset chain (new genesis) is detected: everything committed on the old one is lost", () =>
    Effect.gen(function*() {
      const chain = yield* TestChain
      const coordinator = yield* MiningCoordinator
      yield* coordinator.mine(testTask(0))
      yield* coordinator.mine(testTask(1))
      yield* coordinator.auditChain
      yield* chain.reset
      const audit = yield* coordinator.auditChain
      assert.isTrue(audit.reset)
      assert.strictEqual(audit.lost.length, 2)
      assert.deepStrictEqual(yield* (yield* TestGradientStore).pinned, [])
      // Known now: the next audit finds nothing more.
      assert.isFalse((yield* coordinator.auditChain).reset)
    }).pipe(Effect.provide(harness())))

  it.effect("defect 6: a lost journal never unpins what the chain records as ours", () =>
    Effect.gen(function*() {
      // A fresh journal (the old one moved aside), a store with two pins: one the chain records as our submission.
      const store = yield* GradientStore
      const ours = yield* store.computeCid(committedBytes)
      const leftover = yield* store.computeCid(leftoverBytes)
      yield* (yield* Chain).submitGradient(
        new Submission({ roundId: 1n, chunkId: 0, cid: ours, gradientHash: `0x${"cd".repeat(32)}`, powNonce: 1n })
      )
      const summary = yield* (yield* MiningCoordinator).recoverTransactions({ releaseUnknownPins: true })
      assert.deepStrictEqual(summary.orphan_pins_released, [leftover])
      assert.deepStrictEqual(yield* (yield* TestGradientStore).pinned, [ours])
    }).pipe(Effect.provide(harness({ store: { pinned: [committedBytes, leftoverBytes] } }))))
})

describe("recovery asks the chain, never guesses", () => {
  /** What a crash after the pin left: the record at ipfs_upload with its CID, the envelope pinned. */
  const leftAfterPin = Effect.gen(function*() {
    const store = yield* GradientStore
    const envelope = testEnvelope(1n, 0, 1024)
    const cid = yield* store.add(envelope)
    const record = {
      ...newRecord({ transactionId: "tx-left", key: `${KEY_PREFIX}:1:0`, roundId: 1n, chunkId: 0, nowMs: 0 }),
      state: "ipfs_upload" as const,
      gradient_hash: sha256Hex(envelope),
      ipfs_hash: cid
    }
    yield* (yield* Journal).save(record, { at: record.updated_at, state: record.state, event: "pin_intent", detail: cid })
  })

  it.effect("defect 10: a getRound that keeps failing fails recovery instead of proving work at a guessed difficulty", () =>
    Effect.gen(function*() {
      const chain = yield* TestChain
      yield* leftAfterPin
      yield* chain.setFaults({ getRound: { alwaysFail: new NetworkError({ message: "rpc down", service: "chain" }) } })
      const recovering = yield* Effect.forkChild(Effect.flip((yield* MiningCoordinator).recoverTransactions()))
      yield* TestClock.adjust("5 minutes")
      const error = yield* Fiber.join(recovering)
      assert.strictEqual(error._tag, "NetworkError")
      assert.strictEqual((yield* chain.submissions).length, 0)
      assert.strictEqual((yield* (yield* Journal).get("tx-left"))!.state, "ipfs_upload", "left for the next start")
      assert.strictEqual((yield* (yield* TestGradientStore).pinned).length, 1)
    }).pipe(Effect.provide(harness())))

  it.effect("one transient getRound failure during recovery is retried and the transaction goes forward", () =>
    Effect.gen(function*() {
      const chain = yield* TestChain
      yield* leftAfterPin
      yield* chain.setFaults({
        getRound: { failFirst: { times: 1, error: new NetworkError({ message: "reset", service: "chain" }) } }
      })
      const recovering = yield* Effect.forkChild((yield* MiningCoordinator).recoverTransactions())
      yield* TestClock.adjust("1 minute")
      assert.strictEqual((yield* Fiber.join(recovering)).committed, 1)
      assert.strictEqual((yield* chain.submissions).length, 1)
    }).pipe(Effect.provide(harness())))
})
