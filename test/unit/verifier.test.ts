import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Layer, Option } from "effect"
import { TestClock } from "effect/testing"
import { decodeEnvelope, type DeterminismProfile } from "../../src/domain/gradientEnvelope.ts"
import type { MinerConfig } from "../../src/domain/MinerConfig.ts"
import { type SignedTransaction, Submission, Task } from "../../src/domain/mining.ts"
import { canonicalRoundSpec, defaultRoundSpec } from "../../src/domain/training/spec.ts"
import { verdictCodes, type VerdictName } from "../../src/domain/verification.ts"
import { sha256Hex } from "../../src/layers/sha256Hex.ts"
import { Chain } from "../../src/services/Chain.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { Journal } from "../../src/services/Journal.ts"
import { Trainer } from "../../src/services/Trainer.ts"
import { Verifier } from "../../src/services/Verifier.ts"
import { Cheater } from "../../src/testing/Cheaters.ts"
import {
  crashPointsFromEnv,
  crashPointsOf,
  verifierCrashPointNames,
  withVerifierCrashPoints
} from "../../src/testing/CrashPoints.ts"
import { InMemoryJournal } from "../../src/testing/InMemoryJournal.ts"
import { TestChain } from "../../src/testing/TestChain.ts"
import { testSettingsLayer } from "../../src/testing/testConfig.ts"
import { TestGradientStore } from "../../src/testing/TestGradientStore.ts"
import { TestTrainer, testTrainingResult } from "../../src/testing/TestTrainer.ts"
import { VerifierApi } from "../../src/layers/http/VerifierApi.ts"

const spec = canonicalRoundSpec(defaultRoundSpec(7))
const farFuture = 4_102_444_800
const alice = "0x1111111111111111111111111111111111111111"
const bob = "0x2222222222222222222222222222222222222222"
const otherProfile: DeterminismProfile = {
  runtime: "onnxruntime-node 1.30.0",
  ep: "cpu",
  threads: 4,
  graph_optimization: "all",
  isa: "avx512",
  platform: "linux-x64"
}

const verifySettings: Partial<MinerConfig> = { verifySample: 1, verifyTolerance: 1e-4, verifyWindow: Duration.seconds(120) }

const layers = (options: { readonly verifier?: boolean; readonly settings?: Partial<MinerConfig> } = {}) =>
  Layer.mergeAll(
    TestChain.layer({
      verifier: options.verifier ?? true,
      rounds: [{ roundId: 1n, spec, chunkCount: 100, difficulty: 16, deadline: farFuture }]
    }),
    TestGradientStore.layer(),
    InMemoryJournal.layer(),
    TestTrainer.layer({ envelope: "r3gr" }),
    testSettingsLayer({ ...verifySettings, ...options.settings })
  )

const taskOf = (chunkId: number) =>
  new Task({ roundId: 1n, chunkId, modelCid: "", spec, difficulty: 16, leaseExpiry: farFuture, deadline: farFuture })

/** Another miner submits `envelope` (pinned unless `pin` is false) as chunk `chunkId`, with `gradientHash` if given. */
const submitBytes = Effect.fnUntraced(function*(
  miner: string,
  chunkId: number,
  envelope: Uint8Array,
  options: { readonly pin?: boolean; readonly gradientHash?: string } = {}
) {
  const store = yield* GradientStore
  const cid = options.pin === false ? yield* store.computeCid(envelope) : yield* store.add(envelope)
  const chain = yield* TestChain
  return yield* chain.submitAs(
    miner,
    new Submission({ roundId: 1n, chunkId, cid, gradientHash: options.gradientHash ?? sha256Hex(envelope), powNonce: 0n })
  )
})

/** `miner` trains chunk `chunkId` with `trainer` (the honest test trainer unless given) and submits it. */
const submitTrained = Effect.fnUntraced(function*(miner: string, chunkId: number, trainer?: Trainer["Service"]) {
  const result = yield* (trainer ?? (yield* Trainer)).train(taskOf(chunkId), miner)
  return yield* submitBytes(miner, chunkId, result.envelope)
})

/** The verdicts on chain by chunk, as names. */
const verdictsByChunk = Effect.gen(function*() {
  const recorded = yield* (yield* TestChain).verdicts
  const names = Object.fromEntries(Object.entries(verdictCodes).map(([name, code]) => [code, name]))
  return Object.fromEntries(recorded.map((v) => [v.chunkId, names[v.verdict] as VerdictName]))
})

/**
 * Moves test time on in small steps, letting real asynchronous work (Web Crypto hashing) finish in between, until
 * `done`; at most 2 s of real time.
 */
const waitUntil = Effect.fnUntraced(function*<R>(done: Effect.Effect<boolean, never, R>) {
  for (let i = 0; i < 200; i++) {
    if (yield* done) return
    yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 10)))
    yield* TestClock.adjust("100 millis")
  }
  assert.fail("the condition was not reached")
})

describe("Verifier", () => {
  it.effect("honest submissions are accepted_exact; the report is pinned and its sha256 is on chain", () =>
    Effect.gen(function*() {
      yield* submitTrained(alice, 0)
      yield* submitTrained(bob, 1)
      yield* submitTrained(alice, 2)
      const verifier = yield* Verifier.make
      const summary = yield* verifier.runOnce
      assert.strictEqual(summary.submissions, 3)
      assert.deepStrictEqual(summary.verdicts, { accepted_exact: 3 })
      assert.deepStrictEqual(yield* verdictsByChunk, { 0: "accepted_exact", 1: "accepted_exact", 2: "accepted_exact" })

      const chain = yield* Chain
      const self = (yield* chain.identity).miner
      const onChain = Option.getOrThrow(yield* chain.getVerdict(1n, 1, self))
      const store = yield* GradientStore
      const reports = yield* Effect.forEach(
        yield* (yield* TestGradientStore).pinned,
        (cid) => store.get(cid, 1 << 20)
      )
      const report = reports.find((bytes) => sha256Hex(bytes) === onChain.reportHash.toLowerCase())
      assert.isDefined(report)
      const json = JSON.parse(new TextDecoder().decode(report))
      assert.strictEqual(json.verdict, "accepted_exact")
      assert.strictEqual(json.submission.chunk_id, 1)
      assert.strictEqual(json.submission.miner, bob)
      assert.deepStrictEqual(json.distances.map((d: { relative_l2: number }) => d.relative_l2), [0, 0])

      const snapshot = yield* verifier.snapshot
      assert.strictEqual(snapshot.verdicts.accepted_exact, 3)
      assert.strictEqual(snapshot.accepted, 3)
      assert.strictEqual(snapshot.pending, 0)
      assert.strictEqual(snapshot.recompute_seconds.count, 3)
      assert.strictEqual(snapshot.cursor_block, summary.cursor)
      assert.strictEqual(BigInt(summary.cursor), BigInt(summary.to_block) + 1n)
    }).pipe(Effect.provide(layers())))

  it.effect("an honest miner on another determinism profile is accepted_within_tolerance", () =>
    Effect.gen(function*() {
      const result = yield* testTrainingResult(taskOf(3), alice, otherProfile, 1e-6)
      yield* submitBytes(alice, 3, result.envelope)
      const summary = yield* (yield* Verifier.make).runOnce
      assert.deepStrictEqual(summary.verdicts, { accepted_within_tolerance: 1 })
    }).pipe(Effect.provide(layers())))

  it.effect("every kind of cheater is rejected with its verdict", () =>
    Effect.gen(function*() {
      const honest = yield* Trainer
      const expected: Record<number, VerdictName> = {}
      for (const [i, kind] of Cheater.kinds.entries()) {
        yield* submitTrained(alice, 10 + i, Cheater.wrap(kind, honest))
        expected[10 + i] = Cheater.expectedVerdict[kind]
      }
      yield* (yield* Verifier.make).runOnce
      assert.deepStrictEqual(yield* verdictsByChunk, expected)
    }).pipe(Effect.provide(layers())))

  it.effect("malformed bytes, a hash that is not the content's, and a header of another task are rejected", () =>
    Effect.gen(function*() {
      yield* submitBytes(alice, 0, new TextEncoder().encode("not an envelope"))
      const honest = yield* (yield* Trainer).train(taskOf(1), alice)
      yield* submitBytes(alice, 1, honest.envelope, { gradientHash: sha256Hex("something else") })
      // Bob republishes Alice's gradient as his own, and Alice her chunk 1 as chunk 2.
      yield* submitBytes(bob, 3, (yield* (yield* Trainer).train(taskOf(3), alice)).envelope)
      yield* submitBytes(alice, 2, honest.envelope)
      yield* (yield* Verifier.make).runOnce
      assert.deepStrictEqual(yield* verdictsByChunk, {
        0: "rejected_malformed",
        1: "rejected_malformed",
        2: "rejected_wrong_task",
        3: "rejected_wrong_task"
      })
    }).pipe(Effect.provide(layers())))

  it.effect("content that stays unavailable is rejected_unavailable once the window from the submission's block has passed, not before", () =>
    Effect.gen(function*() {
      const result = yield* (yield* Trainer).train(taskOf(0), alice)
      const submitted = yield* submitBytes(alice, 0, result.envelope, { pin: false })
      // The verifier starts 100 s after the submission's block: 20 s of the 120 s window are left, not a new 120 s.
      yield* TestClock.adjust("100 seconds")
      const verifier = yield* Verifier.make
      const fiber = yield* Effect.forkChild(verifier.runOnce)
      yield* TestClock.adjust("19 seconds")
      assert.deepStrictEqual(yield* verdictsByChunk, {})
      yield* TestClock.adjust("2 seconds")
      const summary = yield* Fiber.join(fiber)
      assert.deepStrictEqual(summary.verdicts, { rejected_unavailable: 1 })
      const onChain = Option.getOrThrow(yield* (yield* Chain).getSubmission(1n, 0))
      assert.strictEqual(onChain.blockTime, submitted.blockTime)
    }).pipe(Effect.provide(layers())))

  it.effect("a submission whose window passed before the verifier came is rejected_unavailable at its first failed fetch", () =>
    Effect.gen(function*() {
      const result = yield* (yield* Trainer).train(taskOf(0), alice)
      yield* submitBytes(alice, 0, result.envelope, { pin: false })
      yield* TestClock.adjust("121 seconds")
      // No time passes during the pass: it must not wait for a window of its own.
      const summary = yield* (yield* Verifier.make).runOnce
      assert.deepStrictEqual(summary.verdicts, { rejected_unavailable: 1 })
    }).pipe(Effect.provide(layers())))

  it.effect("content that appears within the window is judged on it", () =>
    Effect.gen(function*() {
      const result = yield* (yield* Trainer).train(taskOf(0), alice)
      yield* submitBytes(alice, 0, result.envelope, { pin: false })
      const fiber = yield* Effect.forkChild((yield* Verifier.make).runOnce)
      yield* TestClock.adjust("30 seconds")
      yield* (yield* GradientStore).add(result.envelope)
      yield* TestClock.adjust("5 seconds")
      const summary = yield* Fiber.join(fiber)
      assert.deepStrictEqual(summary.verdicts, { accepted_exact: 1 })
    }).pipe(Effect.provide(layers())))

  it.effect("a verdict already on chain is not sent again, even by a verifier that lost its journal", () =>
    Effect.gen(function*() {
      yield* submitTrained(alice, 0)
      yield* submitTrained(bob, 1)
      yield* (yield* Verifier.make).runOnce
      const again = yield* Verifier.make.pipe(Effect.provide(InMemoryJournal.layer()))
      const summary = yield* again.runOnce
      assert.strictEqual(summary.already_on_chain, 2)
      assert.deepStrictEqual(summary.verdicts, {})
      assert.strictEqual((yield* (yield* TestChain).verdictTransactions).length, 2)
    }).pipe(Effect.provide(layers())))

  it.effect("a crash between journaling the verdict and its broadcast: the restart sends the same transaction, once", () =>
    Effect.gen(function*() {
      yield* submitTrained(alice, 0)
      yield* submitTrained(alice, 1)
      const journal = yield* Journal
      let crashed = false
      // The process dies right after the intent is durable: nothing was broadcast.
      const crashing = Journal.of({
        ...journal,
        setMeta: (key, value) =>
          Effect.flatMap(journal.setMeta(key, value), () =>
            !crashed && key.endsWith(":intent") && value !== ""
              ? Effect.sync(() => (crashed = true)).pipe(Effect.andThen(Effect.die("crash after journaling")))
              : Effect.void)
      })
      const first = yield* Verifier.make.pipe(Effect.provideService(Journal, crashing))
      const exit = yield* Effect.exit(first.runOnce)
      assert.isTrue(Exit.isFailure(exit))
      const testChain = yield* TestChain
      assert.deepStrictEqual(yield* testChain.verdicts, [])

      const restarted = yield* Verifier.make
      const summary = yield* restarted.runOnce
      assert.strictEqual(summary.recovered, "recorded")
      assert.deepStrictEqual(yield* verdictsByChunk, { 0: "accepted_exact", 1: "accepted_exact" })
      const sent = yield* testChain.verdictTransactions
      assert.strictEqual(sent.length, 2)
      assert.isTrue(sent.every((t) => t.mined?.success === true))
      assert.strictEqual(summary.already_on_chain, 1)
    }).pipe(Effect.provide(layers())))

  it.effect("a crash after the broadcast, before the intent was cleared: the restart finds the verdict on chain", () =>
    Effect.gen(function*() {
      yield* submitTrained(alice, 0)
      const journal = yield* Journal
      let crashed = false
      const crashing = Journal.of({
        ...journal,
        setMeta: (key, value) =>
          !crashed && key.endsWith(":intent") && value === ""
            ? Effect.sync(() => (crashed = true)).pipe(Effect.andThen(Effect.die("crash before clearing the intent")))
            : journal.setMeta(key, value)
      })
      const exit = yield* Effect.exit((yield* Verifier.make.pipe(Effect.provideService(Journal, crashing))).runOnce)
      assert.isTrue(Exit.isFailure(exit))
      const restarted = yield* Verifier.make
      assert.strictEqual(yield* restarted.recover, "recorded")
      const summary = yield* restarted.runOnce
      assert.strictEqual(summary.recovered, null)
      assert.strictEqual(summary.already_on_chain, 1)
      assert.strictEqual((yield* (yield* TestChain).verdictTransactions).length, 1)
    }).pipe(Effect.provide(layers())))

  it.effect("killed with a verdict journaled and not broadcast (before_verdict_broadcast), a restart sends those bytes, once", () =>
    Effect.gen(function*() {
      yield* submitTrained(alice, 0)
      yield* submitTrained(bob, 1)
      yield* submitTrained(alice, 2)
      const chain = yield* Chain
      const control = yield* TestChain
      // The process dies at the point: here the pass dies (a defect), leaving the journal and chain as they were.
      const points = crashPointsOf({ point: "before_verdict_broadcast", nth: 2 }, () => {
        throw new Error("killed at before_verdict_broadcast")
      })
      const signed: Array<SignedTransaction> = []
      const signing = Layer.succeed(Chain, {
        ...chain,
        recordVerdict: (record, beforeBroadcast) =>
          chain.recordVerdict(record, (tx) => Effect.andThen(Effect.sync(() => signed.push(tx)), beforeBroadcast?.(tx) ?? Effect.void))
      })
      const killed = yield* Effect.exit(
        Effect.flatMap(Verifier.make, (v) => v.runOnce).pipe(Effect.provide(withVerifierCrashPoints(signing, points)))
      )
      assert.isTrue(Exit.isFailure(killed))
      assert.strictEqual(signed.length, 2)
      // The chain never saw the 2nd verdict.
      assert.deepStrictEqual(yield* verdictsByChunk, { 0: "accepted_exact" })
      assert.deepStrictEqual((yield* control.verdictTransactions).map((t) => t.signed.hash), [signed[0]!.hash])

      const summary = yield* (yield* Verifier.make).runOnce
      assert.strictEqual(summary.recovered, "recorded")
      assert.strictEqual(summary.already_on_chain, 1)
      assert.deepStrictEqual(summary.verdicts, { accepted_exact: 1 })
      assert.deepStrictEqual(yield* verdictsByChunk, { 0: "accepted_exact", 1: "accepted_exact", 2: "accepted_exact" })
      // The journaled bytes were sent, not a second signature for chunk 1.
      const after = yield* control.verdictTransactions
      assert.deepStrictEqual(after.map((t) => t.record.chunkId), [0, 1, 2])
      assert.strictEqual(after[1]!.signed.hash, signed[1]!.hash)
    }).pipe(Effect.provide(layers())))

  it.effect("a verifier refuses a crash plan at a point it never passes", () =>
    Effect.gen(function*() {
      const refused = yield* Effect.flip(crashPointsFromEnv({ R3MES_CRASH_AT: "after_pin:1" }, verifierCrashPointNames))
      assert.strictEqual(refused.field, "R3MES_CRASH_AT")
      assert.include(refused.hint ?? "", "before_verdict_broadcast, after_verdict")
      assert.isDefined(yield* crashPointsFromEnv({ R3MES_CRASH_AT: "after_verdict:2" }, verifierCrashPointNames))
    }))

  it.effect("run follows the chain: a submission made while it polls gets its verdict", () =>
    Effect.gen(function*() {
      yield* submitTrained(alice, 0)
      const fiber = yield* Effect.forkChild((yield* Verifier.make).run)
      yield* waitUntil(Effect.map(verdictsByChunk, (v) => v[0] === "accepted_exact"))
      yield* submitTrained(bob, 1)
      yield* waitUntil(Effect.map(verdictsByChunk, (v) => v[1] === "accepted_exact"))
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(layers())))

  it.effect("a lost broadcast is settled in the same run by re-sending the journaled bytes", () =>
    Effect.gen(function*() {
      yield* submitTrained(alice, 0)
      const testChain = yield* TestChain
      yield* testChain.loseBroadcasts(1)
      const summary = yield* (yield* Verifier.make).runOnce
      assert.deepStrictEqual(summary.verdicts, { accepted_exact: 1 })
      assert.strictEqual((yield* testChain.verdictTransactions).length, 1)
      assert.strictEqual((yield* testChain.verdicts).length, 1)
    }).pipe(Effect.provide(layers())))

  it.effect("the cursor survives a restart: the next run reads only new blocks", () =>
    Effect.gen(function*() {
      yield* submitTrained(alice, 0)
      yield* submitTrained(bob, 1)
      const first = yield* (yield* Verifier.make).runOnce
      yield* submitTrained(alice, 2)
      const trainer = yield* TestTrainer
      const trainedBefore = (yield* trainer.trained).length
      const second = yield* (yield* Verifier.make).runOnce
      assert.strictEqual(second.from_block, first.cursor)
      assert.strictEqual(second.submissions, 1)
      assert.strictEqual(second.already_on_chain, 0)
      assert.deepStrictEqual(second.verdicts, { accepted_exact: 1 })
      // One recomputation: chunk 2's.
      assert.strictEqual((yield* trainer.trained).length - trainedBefore, 1)
    }).pipe(Effect.provide(layers())))

  it.effect("a submission of a round finalized before its verdict gets none (RoundNotOpen), and the pass goes on", () =>
    Effect.gen(function*() {
      yield* submitTrained(alice, 0)
      yield* (yield* TestChain).finalizeRound({
        roundId: 1n,
        modelCid: "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn",
        weightsHash: sha256Hex("weights"),
        acceptedCount: 0,
        testAccuracyPpm: 100_000
      })
      const summary = yield* (yield* Verifier.make).runOnce
      assert.strictEqual(summary.no_verdict, 1)
      assert.deepStrictEqual(yield* verdictsByChunk, {})
      assert.strictEqual(BigInt(summary.cursor), BigInt(summary.to_block) + 1n)
    }).pipe(Effect.provide(layers())))

  it.effect("sampling 0.0 records nothing and still moves the cursor", () =>
    Effect.gen(function*() {
      yield* submitTrained(alice, 0)
      yield* submitTrained(bob, 1)
      const summary = yield* (yield* Verifier.make).runOnce
      assert.strictEqual(summary.not_sampled, 2)
      assert.deepStrictEqual(yield* (yield* TestChain).verdictTransactions, [])
      assert.strictEqual(BigInt(summary.cursor), BigInt(summary.to_block) + 1n)
    }).pipe(Effect.provide(layers({ settings: { verifySample: 0 } }))))

  it.effect("sampling is deterministic per chunk: a fraction checks about that share, and the same ones again", () =>
    Effect.gen(function*() {
      for (let chunk = 0; chunk < 40; chunk++) yield* submitBytes(alice, chunk, new Uint8Array([chunk]))
      const first = yield* Verifier.make.pipe(Effect.provide(InMemoryJournal.layer()))
      const a = yield* first.runOnce
      assert.isAbove(a.not_sampled, 5)
      assert.isBelow(a.not_sampled, 35)
      const second = yield* Verifier.make.pipe(Effect.provide(InMemoryJournal.layer()))
      const b = yield* second.runOnce
      assert.strictEqual(b.not_sampled, a.not_sampled)
      assert.strictEqual(b.already_on_chain, 40 - a.not_sampled)
    }).pipe(Effect.provide(layers({ settings: { verifySample: 0.5 } }))))

  it.effect("an account that is not a verifier fails with the fix in the hint, recording nothing", () =>
    Effect.gen(function*() {
      yield* submitTrained(alice, 0)
      const error = yield* Effect.flip((yield* Verifier.make).runOnce)
      assert.strictEqual(error._tag, "AuthenticationError")
      assert.match(error.hint ?? "", /setVerifier/)
    }).pipe(Effect.provide(layers({ verifier: false }))))

  it.effect("metrics: r3mes_verifications_total by verdict in the verifier's own registry", () =>
    Effect.gen(function*() {
      yield* submitTrained(alice, 0)
      yield* submitBytes(alice, 1, new Uint8Array([1, 2, 3]))
      const verifier = yield* Verifier.make
      yield* verifier.runOnce
      const names = [...verifier.metricRegistry.values()].map((m) => (m as { readonly id: string }).id)
      assert.include(names.join(" "), "r3mes_verifications_total")
      assert.include(names.join(" "), "r3mes_verification_seconds")
      const snapshot = yield* verifier.snapshot
      assert.strictEqual(snapshot.verdicts.rejected_malformed, 1)
      assert.strictEqual(snapshot.rejected, 1)
    }).pipe(Effect.provide(layers())))

  it.effect("the envelope the miners submit decodes with the trainer's profile (sanity of the fixture)", () =>
    Effect.gen(function*() {
      const result = yield* (yield* Trainer).train(taskOf(0), alice)
      const decoded = yield* decodeEnvelope(result.envelope)
      assert.deepStrictEqual(decoded.header.profile, yield* (yield* Trainer).profile)
    }).pipe(Effect.provide(layers())))
})

describe("the verifier's monitoring API (verify)", () => {
  it.live("/health, /stats with the verifier section, /metrics with its series; an unknown route lists its routes", () =>
    Effect.gen(function*() {
      yield* submitTrained(alice, 0)
      const verifier = yield* Verifier
      yield* verifier.runOnce
      const api = yield* VerifierApi
      const get = (path: string) =>
        Effect.promise(async () => {
          const response = await fetch(`${api.url}${path}`)
          return { status: response.status, text: await response.text() }
        })
      const health = yield* get("/health")
      assert.strictEqual(health.status, 200)
      assert.strictEqual(JSON.parse(health.text).status, "ok")
      const stats = JSON.parse((yield* get("/stats")).text)
      assert.strictEqual(stats.verifier.verdicts.accepted_exact, 1)
      assert.isString(stats.process.version)
      const metrics = (yield* get("/metrics")).text
      assert.match(metrics, /r3mes_verifications_total\{verdict="accepted_exact"\} 1/)
      const unknown = yield* get("/transactions")
      assert.strictEqual(unknown.status, 404)
      assert.deepStrictEqual(JSON.parse(unknown.text).routes, ["GET /health", "GET /stats", "GET /metrics"])
    }).pipe(Effect.provide(
      VerifierApi.layer.pipe(Layer.provideMerge(Verifier.layer), Layer.provideMerge(layers({ settings: { statsPort: 0 } })))
    )))
})
