import { assert, describe, it, layer } from "@effect/vitest"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import * as ort from "onnxruntime-node"
import { decodeEnvelope, float32Values } from "../../src/domain/gradientEnvelope.ts"
import { classifyIsa, hostIsa } from "../../src/layers/onnx/cpuIsa.ts"
import { Task, type TrainingResult } from "../../src/domain/mining.ts"
import { chunkBatch, chunkExampleIndices, chunkExamples, heldOutTestIndices } from "../../src/domain/training/data.ts"
import { initialWeights, trainableParameters } from "../../src/domain/training/model.ts"
import { canonicalRoundSpec, childRoundSpec, defaultRoundSpec, learningRoundSpec, modelHash, type RoundSpec } from "../../src/domain/training/spec.ts"
import { loadMnist } from "../../src/layers/onnx/MnistDigits.ts"
import { OnnxTrainer, type OnnxTrainerOptions } from "../../src/layers/onnx/OnnxTrainer.ts"
import { installation, sharedDeviceSelection } from "../../src/layers/onnx/devices.ts"
import { graphOptimizationLevels, runtimeError } from "../../src/layers/onnx/ortSession.ts"
import { LOSS_OUTPUT, trainingGraph } from "../../src/layers/onnx/trainingGraphs.ts"
import { Trainer } from "../../src/services/Trainer.ts"

const MINER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
const OTHER_MINER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"

const task = (spec: RoundSpec | string, chunkId = 0, roundId = 1n) =>
  new Task({
    roundId,
    chunkId,
    modelCid: "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
    spec: typeof spec === "string" ? spec : canonicalRoundSpec(spec),
    difficulty: 16,
    leaseExpiry: 0,
    deadline: 0
  })

const sha256Hex = (bytes: Uint8Array) => `0x${createHash("sha256").update(bytes).digest("hex")}`

/** Trains on a fresh trainer instance (its own sessions and caches), closed afterwards. */
const trainOnce = (t: Task, miner = MINER, options: OnnxTrainerOptions = {}) =>
  Effect.gen(function*() {
    const trainer = yield* Trainer
    return yield* trainer.train(t, miner)
  }).pipe(Effect.provide(OnnxTrainer.layer(options)))

const sameResult = (a: TrainingResult, b: TrainingResult) => {
  assert.strictEqual(a.gradientHash, b.gradientHash)
  assert.deepStrictEqual(a.envelope, b.envelope)
  assert.strictEqual(a.lossBefore, b.lossBefore)
  assert.strictEqual(a.lossAfter, b.lossAfter)
}

/** The same numbers (tensors and losses), whatever the headers' profiles say. */
const sameNumbers = (a: TrainingResult, b: TrainingResult) =>
  Effect.gen(function*() {
    const [x, y] = [yield* decodeEnvelope(a.envelope), yield* decodeEnvelope(b.envelope)]
    assert.deepStrictEqual(x.tensors.map((t) => t.bytes), y.tensors.map((t) => t.bytes))
    assert.strictEqual(a.lossBefore, b.lossBefore)
    assert.strictEqual(a.lossAfter, b.lossAfter)
  })

const profileOf = (result: TrainingResult) => Effect.map(decodeEnvelope(result.envelope), (d) => d.header.profile)

layer(OnnxTrainer.layer(), { timeout: 60_000 })("OnnxTrainer on real digits", (it) => {
  it.effect("trains the default model: an R3GR pseudo-gradient whose loss fell, hashed as sha256(envelope)", () =>
    Effect.gen(function*() {
      const trainer = yield* Trainer
      const spec = defaultRoundSpec(7)
      const result = yield* trainer.train(task(spec, 3, 12n), MINER)
      assert.strictEqual(result.gradientHash, sha256Hex(result.envelope))
      assert.strictEqual(result.steps, spec.steps)
      assert.isAbove(result.lossBefore, result.lossAfter)

      const { header, tensors } = yield* decodeEnvelope(result.envelope)
      assert.strictEqual(header.encoding, "pseudo-gradient")
      assert.strictEqual(header.round_id, "12")
      assert.strictEqual(header.chunk_id, 3)
      assert.strictEqual(header.miner, MINER)
      assert.strictEqual(header.model_hash, modelHash(spec))
      assert.strictEqual(header.steps, spec.steps)
      assert.strictEqual(header.batch_size, spec.batch_size)
      assert.strictEqual(header.lr, spec.lr)
      assert.strictEqual(header.loss_before, result.lossBefore)
      assert.strictEqual(header.loss_after, result.lossAfter)
      assert.isAbove(header.loss_before!, header.loss_after!)
      // The determinism profile of this machine and these settings, as the port reports it.
      assert.deepStrictEqual(header.profile, yield* trainer.profile)
      assert.deepStrictEqual(header.profile, {
        runtime: `onnxruntime-node ${ort.env.versions.node}`,
        ep: (yield* sharedDeviceSelection("auto")).device,
        threads: 1,
        graph_optimization: "disabled",
        isa: hostIsa(),
        platform: `${process.platform}-${process.arch}`
      })
      assert.deepStrictEqual(
        tensors.map((t) => [t.spec.name, t.spec.dtype, t.spec.shape]),
        trainableParameters(spec.model).map((p) => [p.name, "float32", p.shape])
      )
      for (const t of tensors) {
        const values = float32Values(t)
        assert.isTrue(values.every(Number.isFinite))
        assert.isTrue(values.some((v) => v !== 0), `${t.spec.name} moved`)
      }
    }))

  it.effect("the same chunk twice gives the same bytes; another chunk or miner does not", () =>
    Effect.gen(function*() {
      const trainer = yield* Trainer
      const spec = defaultRoundSpec(7)
      const a = yield* trainer.train(task(spec, 5), MINER)
      const b = yield* trainer.train(task(spec, 5), MINER)
      sameResult(a, b)
      const otherChunk = yield* trainer.train(task(spec, 6), MINER)
      assert.notStrictEqual(otherChunk.gradientHash, a.gradientHash)
      const otherMiner = yield* trainer.train(task(spec, 5), OTHER_MINER)
      assert.notStrictEqual(otherMiner.gradientHash, a.gradientHash)
      // Only the header differs: the tensors are the same numbers.
      const [x, y] = [yield* decodeEnvelope(a.envelope), yield* decodeEnvelope(otherMiner.envelope)]
      assert.deepStrictEqual(x.tensors.map((t) => t.bytes), y.tensors.map((t) => t.bytes))
    }))

  it.effect("the loss falls over 20 steps for both model families", () =>
    Effect.gen(function*() {
      const trainer = yield* Trainer
      const mlp = yield* trainer.train(task({ ...defaultRoundSpec(7), steps: 20 }), MINER)
      assert.isBelow(mlp.lossAfter, mlp.lossBefore - 0.2, `mlp ${mlp.lossBefore} → ${mlp.lossAfter}`)
      const bitnet = yield* trainer.train(task({ ...defaultRoundSpec(7, "bitnet-lora"), steps: 20 }), MINER)
      assert.isBelow(bitnet.lossAfter, bitnet.lossBefore, `bitnet-lora ${bitnet.lossBefore} → ${bitnet.lossAfter}`)
      const { header } = yield* decodeEnvelope(bitnet.envelope)
      assert.deepStrictEqual(header.tensors.map((t) => t.name), ["fc1.lora_a", "fc1.lora_b", "fc2.lora_a", "fc2.lora_b"])
    }))

  const oneStep: ReadonlyArray<RoundSpec> = [
    { ...defaultRoundSpec(9), steps: 1, lr: 0.01 },
    // v2, round one: the seed's weights, the chunk drawn from the training pool.
    { ...learningRoundSpec(9), steps: 1, lr: 0.01 }
  ]
  for (const spec of oneStep) {
    it.effect(`v${spec.version}: one step's pseudo-gradient is lr × the graph's gradient on the chunk's first batch`, () =>
      Effect.gen(function*() {
        const trainer = yield* Trainer
        const result = yield* trainer.train(task(spec, 2), MINER)
        const { tensors } = yield* decodeEnvelope(result.envelope)

        // Recompute the gradient independently of the trainer's loop: same data selection, a fresh session.
        const dataset = yield* loadMnist()
        const examples = chunkExamples(spec, 2, dataset.count)
        if (spec.version === 1) {
          assert.deepStrictEqual(examples, chunkExampleIndices(spec.dataset_seed, 2, dataset.count, spec.examples_per_chunk))
        } else {
          const test = new Set(heldOutTestIndices())
          assert.isTrue(examples.every((e) => !test.has(e)))
        }
        const batch = chunkBatch(dataset, examples, 0, spec.batch_size)
        const graph = trainingGraph(spec.model)
        const session = yield* Effect.promise(() => ort.InferenceSession.create(graph.onnx, { graphOptimizationLevel: "disabled" }))
        const weights = initialWeights(spec)
        const feeds: Record<string, ort.Tensor> = {
          x: new ort.Tensor("float32", batch.x, [batch.size, 784]),
          y: new ort.Tensor("float32", batch.y, [batch.size, 10])
        }
        for (const p of graph.parameters) feeds[p.name] = new ort.Tensor("float32", weights.get(p.name) as Float32Array, [...p.shape])
        const out = yield* Effect.promise(() => session.run(feeds))
        yield* Effect.promise(() => session.release())

        assert.strictEqual(out[LOSS_OUTPUT]!.data[0], result.lossBefore)
        for (const t of tensors) {
          const delta = float32Values(t)
          const gradient = out[graph.gradientOutputs.get(t.spec.name)!]!.data as Float32Array
          let err = 0
          let scale = 0
          for (let i = 0; i < delta.length; i++) {
            err = Math.max(err, Math.abs(delta[i]! - spec.lr * gradient[i]!))
            scale = Math.max(scale, Math.abs(spec.lr * gradient[i]!))
          }
          assert.isBelow(err / scale, 1e-3, t.spec.name)
        }
      }))
  }

  it.effect("a malformed spec is a ValidationError", () =>
    Effect.gen(function*() {
      const trainer = yield* Trainer
      for (const spec of ["not json", `{"round":1}`, canonicalRoundSpec({ ...defaultRoundSpec(1), batch_size: 0 })]) {
        const error = yield* Effect.flip(trainer.train(task(spec), MINER))
        assert.strictEqual(error._tag, "ValidationError")
      }
    }))

  it.effect("a round after the first needs a model store to fetch its parent's weights", () =>
    Effect.gen(function*() {
      const trainer = yield* Trainer
      const child = childRoundSpec(learningRoundSpec(7), {
        parent_round: "1",
        weights_cid: "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
        weights_sha256: `0x${"ab".repeat(32)}`
      })
      const error = yield* Effect.flip(trainer.train(task(child), MINER))
      assert.strictEqual(error._tag, "ValidationError")
      assert.match(error.message, /parent|round 1/)
      assert.match(error.hint ?? "", /model store/)
    }))

  it.effect("a run that diverges is a ValidationError, not a gradient", () =>
    Effect.gen(function*() {
      const trainer = yield* Trainer
      const error = yield* Effect.flip(trainer.train(task({ ...defaultRoundSpec(7, "bitnet-lora"), lr: 50, steps: 20 }), MINER))
      assert.strictEqual(error._tag, "ValidationError")
      assert.match(error.message, /diverged/)
    }))

  it.effect("a bad miner address is a ValidationError", () =>
    Effect.gen(function*() {
      const trainer = yield* Trainer
      const error = yield* Effect.flip(trainer.train(task(defaultRoundSpec(1)), "miner"))
      assert.strictEqual(error._tag, "ValidationError")
    }))
})

describe("OnnxTrainer determinism", () => {
  it.effect("a second trainer instance recomputes a chunk to the same gradient hash", () =>
    Effect.gen(function*() {
      const t = task(defaultRoundSpec(21), 17, 4n)
      sameResult(yield* trainOnce(t), yield* trainOnce(t))
      const bitnet = task(defaultRoundSpec(21, "bitnet-lora"), 17, 4n)
      sameResult(yield* trainOnce(bitnet), yield* trainOnce(bitnet))
    }), 60_000)

  it.effect("1 and 2 intra-op threads: the same numbers for wide layers, and the profile names the count", () =>
    Effect.gen(function*() {
      // Wide enough layers that the split between threads leaves every sum in the same order. (The default small
      // models do change in their last bits with 2 threads: bench/verifyTolerance.ts measures it.)
      const spec: RoundSpec = { ...defaultRoundSpec(5), model: { family: "mlp", hidden: 256 }, batch_size: 128, steps: 4, examples_per_chunk: 512 }
      const one = yield* trainOnce(task(spec, 1), MINER, { intraOpNumThreads: 1 })
      const two = yield* trainOnce(task(spec, 1), MINER, { intraOpNumThreads: 2 })
      yield* sameNumbers(one, two)
      // The profiles name the thread counts, so the envelopes (and hashes) differ in their headers only.
      assert.strictEqual((yield* profileOf(one)).threads, 1)
      assert.strictEqual((yield* profileOf(two)).threads, 2)
      assert.notStrictEqual(one.gradientHash, two.gradientHash)
      const lora: RoundSpec = { ...spec, model: { family: "bitnet-lora", hidden: 256, rank: 8, alpha: 16 }, lr: 0.05 }
      yield* sameNumbers(
        yield* trainOnce(task(lora, 1), MINER, { intraOpNumThreads: 1 }),
        yield* trainOnce(task(lora, 1), MINER, { intraOpNumThreads: 2 })
      )
    }), 60_000)

  it.effect("every graph optimisation level trains, is reproducible, and is named in the profile", () =>
    Effect.gen(function*() {
      const t = task(defaultRoundSpec(3), 2)
      for (const level of graphOptimizationLevels) {
        const result = yield* trainOnce(t, MINER, { graphOptimizationLevel: level })
        sameResult(result, yield* trainOnce(t, MINER, { graphOptimizationLevel: level }))
        assert.strictEqual((yield* profileOf(result)).graph_optimization, level)
        assert.isBelow(result.lossAfter, result.lossBefore, level)
      }
    }), 120_000)

  it.effect("reproduce: a trainer recomputes with another miner's threads and optimisation level, bit for bit", () =>
    Effect.gen(function*() {
      const t = task(defaultRoundSpec(3), 4)
      const miner = yield* trainOnce(t, MINER, { intraOpNumThreads: 2, graphOptimizationLevel: "basic" })
      const reproduced = yield* Effect.gen(function*() {
        const trainer = yield* Trainer
        return yield* trainer.train(t, MINER, { threads: 2, graph_optimization: "basic" })
      }).pipe(Effect.provide(OnnxTrainer.layer()))
      sameResult(reproduced, miner)
      // Settings this machine cannot or must not honour: its own are used, and the profile says so.
      for (const reproduce of [{ threads: 100_000, graph_optimization: "basic" }, { threads: 1, graph_optimization: "max" }]) {
        const own = yield* Effect.gen(function*() {
          const trainer = yield* Trainer
          return yield* trainer.train(t, MINER, reproduce)
        }).pipe(Effect.provide(OnnxTrainer.layer()))
        const profile = yield* profileOf(own)
        assert.deepStrictEqual([profile.threads, profile.graph_optimization], [1, "disabled"])
      }
      // A provider this machine does not have (or does not know): its own device, as the profile says.
      const ownDevice = (yield* sharedDeviceSelection("auto")).device
      for (const ep of [...(cudaInstalled ? [] : ["cuda"]), "tpu"]) {
        const own = yield* Effect.gen(function*() {
          const trainer = yield* Trainer
          return yield* trainer.train(t, MINER, { threads: 1, graph_optimization: "disabled", ep })
        }).pipe(Effect.provide(OnnxTrainer.layer()))
        assert.strictEqual((yield* profileOf(own)).ep, ownDevice, ep)
      }
    }), 60_000)
})

describe("CPU kernel class of the profile", () => {
  it("from the architecture and /proc/cpuinfo's flags", () => {
    const cpuinfo = (flags: string) => `processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: ${flags}\nbugs\t\t: spectre\n`
    assert.strictEqual(classifyIsa("x64", cpuinfo("fpu sse2 sse4_1 avx avx2 avx512f avx512bw")), "avx512")
    assert.strictEqual(classifyIsa("x64", cpuinfo("fpu sse2 sse4_1 avx avx2 fma")), "avx2")
    assert.strictEqual(classifyIsa("x64", cpuinfo("fpu sse2 sse4_1")), "sse")
    assert.strictEqual(classifyIsa("x64", cpuinfo("fpu")), "generic")
    assert.strictEqual(classifyIsa("x64", "no flags here"), "generic")
    assert.strictEqual(classifyIsa("x64", undefined), "generic")
    assert.strictEqual(classifyIsa("arm64", undefined), "neon")
    assert.strictEqual(classifyIsa("riscv64", cpuinfo("avx2")), "generic")
    assert.include(["avx512", "avx2", "sse", "neon", "generic"], hostIsa())
  })
})

const cudaInstalled = installation("cuda").installed

describe("OnnxTrainer failures", () => {
  it.effect.skipIf(cudaInstalled)("an explicit device that is not installed fails the trainer at start: a ResourceError with the fix", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(trainOnce(task(defaultRoundSpec(1)), MINER, { executionProvider: "cuda" }))
      assert.strictEqual(error._tag, "ResourceError")
      assert.strictEqual(error._tag === "ResourceError" && error.resource, "cuda")
      assert.include(error.message, "--device cuda (R3MES_DEVICE) cannot train: onnxruntime-node's CUDA provider is not installed")
      assert.include(error.hint, "ONNXRUNTIME_NODE_INSTALL=cuda12")
    }), 60_000)

  it("ONNX Runtime's out-of-memory failures are ResourceErrors about memory", () => {
    for (
      const message of [
        "Failed to allocate memory for requested buffer of size 123",
        "CUDA failure 2: out of memory",
        "std::bad_alloc",
        "Vulkan error: VK_ERROR_OUT_OF_DEVICE_MEMORY",
        "[WebGPU] OutOfMemory: Buffer allocation failed"
      ]
    ) {
      const error = runtimeError("running the training step", ["cuda", "cpu"])(new Error(message))
      assert.strictEqual(error._tag, "ResourceError")
      assert.strictEqual(error.resource, "memory")
      assert.strictEqual(error.cause, message)
    }
    assert.strictEqual(runtimeError("x", ["cpu"])(new Error("Non-zero status code returned while running MatMul")).resource, "onnxruntime")
  })

  it.effect("a digits directory without the dataset is a ResourceError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(trainOnce(task(defaultRoundSpec(1)), MINER, { digitsDir: "/nonexistent/digits" }))
      assert.strictEqual(error._tag, "ResourceError")
    }), 60_000)
})
