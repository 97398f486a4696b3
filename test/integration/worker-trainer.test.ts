import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer } from "effect"
import type { Worker } from "node:worker_threads"
import { Task, type TrainingResult } from "../../src/domain/mining.ts"
import { initialWeightsEnvelope } from "../../src/domain/training/model.ts"
import { canonicalRoundSpec, childRoundSpec, defaultRoundSpec, learningRoundSpec, type RoundSpec } from "../../src/domain/training/spec.ts"
import { OnnxTrainer } from "../../src/layers/onnx/OnnxTrainer.ts"
import { WorkerTrainer } from "../../src/layers/onnx/WorkerTrainer.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { Trainer } from "../../src/services/Trainer.ts"
import { TestGradientStore } from "../../src/testing/TestGradientStore.ts"

/**
 * The trainer in a worker thread (issue 17): the same bytes as OnnxTrainer on this thread, its failures typed across
 * the thread, round models checked and fetched through this thread's store, interruptions honoured.
 */

const MINER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

const task = (spec: RoundSpec | string, chunkId = 0, modelCid = "") =>
  new Task({
    roundId: 3n,
    chunkId,
    modelCid,
    spec: typeof spec === "string" ? spec : canonicalRoundSpec(spec),
    difficulty: 16,
    leaseExpiry: 0,
    deadline: 0
  })

const hashes = (results: ReadonlyArray<TrainingResult>) => results.map((r) => r.gradientHash)

const trainAll = (tasks: ReadonlyArray<Task>, concurrency: number) =>
  Effect.gen(function*() {
    const trainer = yield* Trainer
    return yield* Effect.forEach(tasks, (t) => trainer.train(t, MINER), { concurrency })
  })

const tasks = [0, 1, 2].flatMap((chunk) => [task(defaultRoundSpec(4), chunk), task(defaultRoundSpec(4, "bitnet-lora"), chunk)])

describe("WorkerTrainer", () => {
  it.live("trains the same bytes as OnnxTrainer on this thread, one at a time and several at once", () =>
    Effect.gen(function*() {
      const here = yield* trainAll(tasks, 1).pipe(Effect.provide(OnnxTrainer.layer({ executionProvider: "cpu" })))
      const [inOrder, together, profile] = yield* Effect.gen(function*() {
        return [yield* trainAll(tasks, 1), yield* trainAll(tasks, "unbounded" as never), yield* (yield* Trainer).profile] as const
      }).pipe(Effect.provide(WorkerTrainer.layer({ executionProvider: "cpu" })))
      assert.deepStrictEqual(hashes(inOrder), hashes(here))
      assert.deepStrictEqual(hashes(together), hashes(here))
      assert.deepStrictEqual(inOrder[0]!.envelope, here[0]!.envelope)
      assert.strictEqual(profile.ep, "cpu")
    }), 120_000)

  it.live("trains one chunk at a time, in the order asked: a long chunk asked first finishes before a short one", () =>
    Effect.gen(function*() {
      // Interleaved step by step (every session run yields), the 2-step chunk would finish first; one at a time, it
      // waits for the 300-step one. Interleaving kept every chunk's tensors warm in turn: 2.5× slower a chunk.
      const trainer = yield* Trainer
      const finished: Array<string> = []
      const trainAndNote = (name: string, steps: number) =>
        trainer.train(task({ ...defaultRoundSpec(4), steps }, steps), MINER).pipe(
          Effect.tap(() => Effect.sync(() => void finished.push(name)))
        )
      yield* Effect.all([trainAndNote("long", 300), trainAndNote("short", 2)], { concurrency: "unbounded" })
      assert.deepStrictEqual(finished, ["long", "short"])
    }).pipe(Effect.provide(WorkerTrainer.layer({ executionProvider: "cpu" }))), 120_000)

  it.live("its failures cross the thread as the same typed errors, with their hints", () =>
    Effect.gen(function*() {
      const trainer = yield* Trainer
      const malformed = yield* Effect.flip(trainer.train(task("not json"), MINER))
      assert.strictEqual(malformed._tag, "ValidationError")
      const diverged = yield* Effect.flip(trainer.train(task({ ...defaultRoundSpec(7, "bitnet-lora"), lr: 50, steps: 20 }), MINER))
      assert.strictEqual(diverged._tag, "ValidationError")
      assert.match(diverged.message, /diverged/)
      const child = childRoundSpec(learningRoundSpec(7), {
        parent_round: "1",
        weights_cid: "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
        weights_sha256: `0x${"ab".repeat(32)}`
      })
      const noStore = yield* Effect.flip(trainer.train(task(child, 0, "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"), MINER))
      assert.strictEqual(noStore._tag, "ValidationError")
      assert.match(noStore.hint ?? "", /model store/)
      // And it still trains afterwards.
      assert.isAbove((yield* trainer.train(task(defaultRoundSpec(4)), MINER)).envelope.byteLength, 0)
    }).pipe(Effect.provide(WorkerTrainer.layer({ executionProvider: "cpu" }))), 120_000)

  it.live("round models are checked and fetched through this thread's store", () =>
    Effect.gen(function*() {
      const spec = defaultRoundSpec(9)
      const store = yield* GradientStore
      const modelCid = yield* store.computeCid(yield* initialWeightsEnvelope(spec))
      const trainer = yield* Trainer
      const checked = yield* trainer.train(task(spec, 0, modelCid), MINER)
      const here = yield* trainAll([task(spec, 0, modelCid)], 1).pipe(
        Effect.provide(OnnxTrainer.layerWithModelStore({ executionProvider: "cpu" })),
        Effect.provideService(GradientStore, store)
      )
      assert.strictEqual(checked.gradientHash, here[0]!.gradientHash)
      // A modelCid that is not the generated weights' is fetched from the store, which has nothing under it: the
      // store's error, typed, from across the thread.
      const missing = yield* Effect.flip(trainer.train(task(spec, 1, "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"), MINER))
      assert.strictEqual(missing._tag, "ValidationError")
    }).pipe(Effect.provide(WorkerTrainer.layerWithModelStore({ executionProvider: "cpu" }).pipe(Layer.provideMerge(TestGradientStore.layer())))), 120_000)

  it.live("an interrupted training is dropped, and the next one trains the right bytes", () =>
    Effect.gen(function*() {
      const trainer = yield* Trainer
      const long = task({ ...defaultRoundSpec(5), steps: 400, examples_per_chunk: 12_800 })
      const timedOut = yield* trainer.train(long, MINER).pipe(Effect.timeoutOption(Duration.millis(50)))
      assert.strictEqual(timedOut._tag, "None")
      const next = yield* trainer.train(task(defaultRoundSpec(4)), MINER)
      const here = yield* trainAll([task(defaultRoundSpec(4))], 1).pipe(Effect.provide(OnnxTrainer.layer({ executionProvider: "cpu" })))
      assert.strictEqual(next.gradientHash, here[0]!.gradientHash)
    }).pipe(Effect.provide(WorkerTrainer.layer({ executionProvider: "cpu" }))), 120_000)

  it.live("a worker that dies mid-training fails that training with a ResourceError; the next one gets a new worker", () => {
    const workers: Array<Worker> = []
    return Effect.gen(function*() {
      const trainer = yield* Trainer
      const long = task({ ...defaultRoundSpec(5), steps: 400, examples_per_chunk: 12_800 })
      const fiber = yield* Effect.forkChild(Effect.flip(trainer.train(long, MINER)))
      yield* Effect.sleep("300 millis")
      assert.lengthOf(workers, 1)
      yield* Effect.promise(() => workers[0]!.terminate())
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error._tag, "ResourceError")
      assert.match(error.message, /worker/)
      const next = yield* trainer.train(task(defaultRoundSpec(4)), MINER)
      const here = yield* trainAll([task(defaultRoundSpec(4))], 1).pipe(Effect.provide(OnnxTrainer.layer({ executionProvider: "cpu" })))
      assert.strictEqual(next.gradientHash, here[0]!.gradientHash)
      assert.lengthOf(workers, 2)
    }).pipe(Effect.provide(WorkerTrainer.layer({ executionProvider: "cpu", onWorker: (w) => workers.push(w) })))
  }, 120_000)
})
