import { availableParallelism } from "node:os"
import { Effect, Exit, Layer, Semaphore } from "effect"
import * as ort from "onnxruntime-node"
import { type MiningError, type ResourceError, ValidationError } from "../../domain/errors.ts"
import {
  canonicalJson,
  type DeterminismProfile,
  type EnvelopeHeader,
  encodeEnvelope,
  encodeEnvelopeWith,
  float32Bytes,
  writeFloat32DifferenceLE
} from "../../domain/gradientEnvelope.ts"
import { type Task, TrainingResult } from "../../domain/mining.ts"
import { type Batch, chunkBatch, chunkExamples } from "../../domain/training/data.ts"
import {
  decodeWeightsEnvelope,
  initialWeights,
  initialWeightsEnvelope,
  type ModelWeights,
  type ParameterSpec
} from "../../domain/training/model.ts"
import { startingWeights } from "../../domain/training/roundWeights.ts"
import { isParentInit, modelHash, parseRoundSpec, type RoundSpec } from "../../domain/training/spec.ts"
import { GradientStore } from "../../services/GradientStore.ts"
import { Trainer, type TrainingSettings } from "../../services/Trainer.ts"
import { sha256Hex } from "../sha256Hex.ts"
import { hostIsa } from "./cpuIsa.ts"
import { loadMnist } from "./MnistDigits.ts"
import {
  createSession,
  type Device,
  type ExecutionProviderChoice,
  type GraphOptimizationLevel,
  graphOptimizationLevels,
  releaseSession,
  runSession,
  type Session
} from "./ortSession.ts"
import { deviceTrains, isDevice, sharedDeviceSelection } from "./devices.ts"
import { graphFlavourOf, LOSS_OUTPUT, trainingGraph, type TrainingGraph } from "./trainingGraphs.ts"
import { pseudoGradientHeader } from "../../domain/training/gradientHeader.ts"

export interface OnnxTrainerOptions {
  /**
   * Threads inside one ONNX operator. Default 1. Part of the determinism profile: on the CPU provider 2 threads
   * change the last bits of the default models' gradients (relative L2 up to ~5e-6, bench/verifyTolerance.ts,
   * 2026-12-01), though not those of wider layers; same count ⇒ same bytes.
   */
  readonly intraOpNumThreads?: number
  /**
   * The device (R3MES_DEVICE): "auto" (default) takes the best one that initialises (devices.ts), tried once per
   * process; an explicit one that cannot start fails the layer with a ResourceError. Devices round differently: the
   * profile's `ep` says which one computed a gradient.
   */
  readonly executionProvider?: ExecutionProviderChoice
  /**
   * ONNX Runtime's graph optimisation level. Default "disabled" (bit-stable); the fusing levels change the last bits
   * of the gradient, and the envelope's profile says which level produced it.
   */
  readonly graphOptimizationLevel?: GraphOptimizationLevel
  /** The mnist package's digit files; default: the installed package. */
  readonly digitsDir?: string
  /** Initial weights kept in memory, by model hash. Default 4. */
  readonly cachedWeights?: number
  /**
   * Where round models are checked and fetched (the GradientStore's computeCid and get). Without it the initial
   * weights are regenerated from the spec and the round's modelCid is not checked.
   */
  readonly modelSource?: {
    readonly computeCid: (bytes: Uint8Array) => Effect.Effect<string, MiningError>
    readonly get: (cid: string, maxBytes: number) => Effect.Effect<Uint8Array, MiningError>
  }
}

/** Far above the weights of any round spec the schema allows; bounds what a fetched model may cost. */
const maxWeightsBytes = 512 * 1024 * 1024

/** A compiled model shape: its graph and one session for every round that uses it. */
interface CompiledModel {
  readonly graph: TrainingGraph
  readonly session: Session
}

/** A round's starting point as feeds: frozen tensors ready to feed, trainable values to copy per chunk. */
interface StartingPoint {
  readonly frozen: ReadonlyArray<readonly [string, ort.Tensor]>
  readonly trainable: ReadonlyArray<{ readonly spec: ParameterSpec; readonly values: Float32Array }>
}

const tensor = (values: Float32Array, shape: ReadonlyArray<number>) => new ort.Tensor("float32", values, [...shape])

/** w ← fround(w − lr · g): the product and difference in float64, rounded once when stored. */
const sgdStep = (w: Float32Array, g: Float32Array, lr: number): void => {
  for (let i = 0; i < w.length; i++) w[i] = w[i]! - lr * g[i]!
}

const scalarOf = (value: ort.Tensor | undefined): number => Number((value?.data as Float32Array | undefined)?.[0])

const hostIsLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/**
 * A pseudo-gradient as an R3GR envelope. The envelope stores float32 little-endian, which on a little-endian host is
 * the tensors' own memory: they are copied into the envelope once, not first into byte copies of their own (for a
 * 100 MB gradient, 100 MB less at the peak; see bench/memory.ts). Same bytes either way.
 */
export const pseudoGradientEnvelope = (
  header: EnvelopeHeader,
  tensors: ReadonlyArray<Float32Array>
): Effect.Effect<Uint8Array, ValidationError> =>
  encodeEnvelope(
    header,
    tensors.map((t) => (hostIsLittleEndian ? new Uint8Array(t.buffer, t.byteOffset, t.byteLength) : float32Bytes(t)))
  )

/**
 * The determinism profile of sessions built with these settings: the runtime's own version, the provider the
 * session runs on (the first of the list it is given: ONNX Runtime assigns every node it supports to it), the
 * thread count and optimisation level it is created with, and this machine's CPU kernel class and platform.
 */
export const onnxProfile = (settings: {
  readonly intraOpNumThreads: number
  readonly executionProvider: Device
  readonly graphOptimizationLevel: GraphOptimizationLevel
}): DeterminismProfile => ({
  runtime: `onnxruntime-node ${ort.env.versions.node}`,
  ep: settings.executionProvider,
  threads: settings.intraOpNumThreads,
  graph_optimization: settings.graphOptimizationLevel,
  isa: hostIsa(),
  platform: `${process.platform}-${process.arch}`
})

/**
 * The Trainer port on onnxruntime-node. For a task it:
 * 1. parses the round spec (ValidationError if malformed);
 * 2. takes the session of the spec's model shape (built once from the generated ONNX graph) and the starting weights:
 *    regenerated from the spec's seed, or (v2, later rounds) the parent round's fetched and sha256-checked (cached by
 *    model hash and modelCid);
 * 3. draws the chunk's examples from (dataset_seed, chunk id) — v2 from the training pool only — and runs `steps` plain SGD steps on batches of
 *    `batch_size` (w ← fround(w − lr · g), computed in float64, rounded once to float32);
 * 4. returns the pseudo-gradient (initial − final, float32) of the trainable parameters as an R3GR envelope
 *    (encoding "pseudo-gradient", model_hash = modelHash(spec)), gradientHash = 0x + sha256(envelope), and the
 *    loss on the chunk's first batch before (initial weights) and after (final weights) training.
 *
 * Same task and spec, same profile ⇒ same envelope bytes; another profile (threads, optimisation level, provider,
 * CPU) may change the tensors' last bits, which a verifier tolerates (DESIGN.md "Verification").
 */
export const make = Effect.fnUntraced(function*(options: OnnxTrainerOptions = {}) {
  const device = yield* sharedDeviceSelection(options.executionProvider ?? "auto")
  const sessionSettings = {
    intraOpNumThreads: options.intraOpNumThreads ?? 1,
    executionProvider: device.device,
    graphOptimizationLevel: options.graphOptimizationLevel ?? "disabled"
  } as const
  const profile = onnxProfile(sessionSettings)
  const models = new Map<string, Promise<Exit.Exit<CompiledModel, ResourceError>>>()
  const starts = new Map<string, Promise<Exit.Exit<StartingPoint, MiningError>>>()
  const maxStarts = Math.max(1, options.cachedWeights ?? 4)

  yield* Effect.addFinalizer(() =>
    Effect.forEach([...models.values()], (m) =>
      Effect.promise(() => m).pipe(
        Effect.flatMap((exit) => Exit.isSuccess(exit) ? releaseSession(exit.value.session) : Effect.void)
      ), { discard: true })
  )

  /**
   * The session settings for a task: our own, or those `reproduce` asks for when this machine can honour them (a
   * known optimisation level, at most as many threads as cores: a submission's header must not make a verifier
   * start a thousand threads; a device that trains here, tried once per process).
   */
  const settingsFor = (reproduce: TrainingSettings | undefined): Effect.Effect<typeof sessionSettings> =>
    Effect.gen(function*() {
      if (reproduce === undefined) return sessionSettings
      const level = graphOptimizationLevels.find((l) => l === reproduce.graph_optimization)
      const threads = reproduce.threads
      if (level === undefined || !Number.isInteger(threads) || threads < 1 || threads > availableParallelism()) {
        return sessionSettings
      }
      const ep = reproduce.ep
      const device = ep !== undefined && ep !== sessionSettings.executionProvider && isDevice(ep) && (yield* deviceTrains(ep))
        ? ep
        : sessionSettings.executionProvider
      if (threads === sessionSettings.intraOpNumThreads && level === sessionSettings.graphOptimizationLevel && device === sessionSettings.executionProvider) {
        return sessionSettings
      }
      return { intraOpNumThreads: threads, graphOptimizationLevel: level, executionProvider: device }
    })

  /**
   * Sessions are keyed by model shape and session settings: the weights are inputs. A failed build is forgotten,
   * to be retried.
   */
  const compiledModel = (spec: RoundSpec, settings: typeof sessionSettings): Effect.Effect<CompiledModel, MiningError> =>
    Effect.suspend(() => {
      const key = `${canonicalJson(spec.model)}|${settings.executionProvider}|${settings.intraOpNumThreads}|${settings.graphOptimizationLevel}`
      let compiled = models.get(key)
      if (compiled === undefined) {
        const graph = trainingGraph(spec.model, "float32", graphFlavourOf(settings.executionProvider))
        // Built outside the requesting fiber, so that fiber's interruption cannot leave a half-made entry behind.
        compiled = Effect.runPromiseExit(createSession(graph.onnx, settings).pipe(Effect.map((session) => ({ graph, session }))))
        void compiled.then((exit) => Exit.isFailure(exit) && models.delete(key))
        models.set(key, compiled)
      }
      const pending = compiled
      return Effect.flatten(Effect.promise(() => pending))
    })

  /**
   * The round's starting weights. Generated (v1, v2 with a seed init): regenerated from the seed, and — when a model
   * source is given — checked against the round's modelCid (the CID of the weights envelope); weights that do not
   * regenerate to that CID are fetched by CID instead (DESIGN.md "CLI": rounds whose weights cannot be regenerated).
   * A parent round's (v2 parent init): fetched by the spec's weights_cid, which must be the task's modelCid, and
   * checked against its weights_sha256 before any training (`startingWeights`).
   */
  const loadStartingPoint = Effect.fnUntraced(function*(
    spec: RoundSpec,
    graph: TrainingGraph,
    modelCid: string
  ): Effect.fn.Return<StartingPoint, MiningError> {
    const source = options.modelSource
    let weights: ModelWeights
    if (spec.version === 2 && isParentInit(spec.init)) {
      if (source === undefined) {
        return yield* new ValidationError({
          message: `round spec starts from round ${spec.init.parent_round}'s weights, and this trainer has no model store to fetch them from`,
          field: "spec",
          hint: "build the trainer with a model store (OnnxTrainer.layerWithModelStore) to train rounds after the first"
        })
      }
      if (modelCid !== spec.init.weights_cid) {
        return yield* new ValidationError({
          message: `the round's modelCid ${modelCid} is not its spec's init.weights_cid ${spec.init.weights_cid}`,
          field: "model_cid",
          hint: "the round was opened with a spec and a modelCid that disagree: the coordinator must open it with the parent's weights CID"
        })
      }
      weights = yield* startingWeights(spec, source.get)
    } else {
      weights = initialWeights(spec)
      if (source !== undefined && modelCid !== "") {
        const regenerated = yield* source.computeCid(yield* initialWeightsEnvelope(spec))
        if (regenerated !== modelCid) {
          yield* Effect.logWarning(
            `round model ${modelCid} is not the weights generated from its spec (${regenerated}): fetching it by CID`
          )
          weights = yield* decodeWeightsEnvelope(spec, yield* source.get(modelCid, maxWeightsBytes))
        }
      }
    }
    const start: StartingPoint = {
      frozen: graph.parameters.filter((p) => !p.trainable).map((p) => [p.name, tensor(Float32Array.from(weights.get(p.name)!), p.shape)] as const),
      trainable: graph.parameters.filter((p) => p.trainable).map((p) => ({ spec: p, values: Float32Array.from(weights.get(p.name)!) }))
    }
    return start
  })

  /**
   * The round's starting point, loaded once per model and CID. Loaded outside the requesting fiber, like the sessions:
   * a transaction that times out while the parent's weights are fetched leaves the load to finish for the next one,
   * instead of starting it again — and timing out again — every time. A failed load is forgotten, to be retried.
   */
  const startingPoint = (spec: RoundSpec, graph: TrainingGraph, modelCid: string): Effect.Effect<StartingPoint, MiningError> =>
    Effect.suspend(() => {
      const key = `${modelHash(spec)}|${modelCid}`
      let pending = starts.get(key)
      if (pending === undefined) {
        pending = Effect.runPromiseExit(loadStartingPoint(spec, graph, modelCid))
        void pending.then((exit) => Exit.isFailure(exit) && starts.get(key) === pending && starts.delete(key))
        if (starts.size >= maxStarts) starts.delete(starts.keys().next().value!)
        starts.set(key, pending)
      }
      const loading = pending
      return Effect.flatten(Effect.promise(() => loading))
    })

  /**
   * One chunk trains at a time, the others wait their turn in order. Interleaved step by step (each `session.run`
   * yields), ten chunks in flight each kept their weights and gradients warm in turn, and a chunk trained 2.5× slower
   * in total (bench/utilisation.ts: 1,380 ms a chunk instead of 550, the thread 95 % busy either way).
   */
  const oneAtATime = yield* Semaphore.make(1)

  const train = (task: Task, miner: string, reproduce?: TrainingSettings) =>
    oneAtATime.withPermits(1)(trainNow(task, miner, reproduce))

  const trainNow = Effect.fn("Trainer.train")(function*(
    task: Task,
    miner: string,
    reproduce?: TrainingSettings
  ): Effect.fn.Return<TrainingResult, MiningError> {
    const spec = yield* parseRoundSpec(task.spec)
    const dataset = yield* loadMnist(options.digitsDir)
    const settings = yield* settingsFor(reproduce)
    const { graph, session } = yield* compiledModel(spec, settings)
    yield* Effect.annotateCurrentSpan({
      "r3mes.round_id": task.roundId.toString(),
      "r3mes.chunk_id": task.chunkId,
      "training.family": spec.model.family,
      "training.steps": spec.steps,
      "training.batch_size": spec.batch_size,
      "training.providers": session.providers.join(",")
    })
    const start = yield* startingPoint(spec, graph, task.modelCid)
    const weights = start.trainable.map((t) => ({ spec: t.spec, values: t.values.slice() }))
    const examples = chunkExamples(spec, task.chunkId, dataset.count)
    const firstBatch = chunkBatch(dataset, examples, 0, spec.batch_size)

    const step = (batch: Batch) => {
      const feeds: Record<string, ort.Tensor> = {
        x: tensor(batch.x, [batch.size, dataset.features]),
        y: tensor(batch.y, [batch.size, dataset.classes])
      }
      for (const [name, value] of start.frozen) feeds[name] = value
      for (const w of weights) feeds[w.spec.name] = tensor(w.values, w.spec.shape)
      return runSession(session, feeds)
    }

    let lossBefore = Number.NaN
    // Steps after the first share one batch (the first is kept for the loss after training).
    let batch: Batch | undefined
    for (let k = 0; k < spec.steps; k++) {
      const out = yield* step(k === 0 ? firstBatch : (batch = chunkBatch(dataset, examples, k, spec.batch_size, batch)))
      if (k === 0) lossBefore = scalarOf(out[LOSS_OUTPUT])
      for (const w of weights) sgdStep(w.values, out[graph.gradientOutputs.get(w.spec.name)!]!.data as Float32Array, spec.lr)
    }
    const lossAfter = scalarOf((yield* step(firstBatch))[LOSS_OUTPUT])
    if (!Number.isFinite(lossBefore) || !Number.isFinite(lossAfter) || weights.some((w) => !w.values.every(Number.isFinite))) {
      return yield* new ValidationError({
        message: `training diverged on round ${task.roundId} chunk ${task.chunkId} (loss ${lossBefore} → ${lossAfter})`,
        field: "spec",
        hint: "the round's lr is too high for its model"
      })
    }

    const header = pseudoGradientHeader({
      task,
      miner,
      spec,
      tensors: weights.map((w) => w.spec),
      lossBefore,
      lossAfter,
      profile: settings === sessionSettings ? profile : onnxProfile(settings)
    })
    // initial − final written straight into the envelope: no tensor-sized difference of its own (bench/memory.ts).
    const envelope = yield* encodeEnvelopeWith(
      header,
      (i, out) => writeFloat32DifferenceLE(start.trainable[i]!.values, weights[i]!.values, out)
    )
    yield* Effect.annotateCurrentSpan({ "training.loss_before": lossBefore, "training.loss_after": lossAfter })
    return new TrainingResult({
      envelope,
      gradientHash: sha256Hex(envelope),
      lossBefore,
      lossAfter,
      steps: spec.steps
    })
  })

  return Trainer.of({ train, profile: Effect.succeed(profile) })
})

export const OnnxTrainer = {
  /**
   * The Trainer port on onnxruntime-node; sessions are released when the layer's scope closes. Fails to build when
   * an explicitly requested device cannot train.
   */
  layer: (options: OnnxTrainerOptions = {}): Layer.Layer<Trainer, ResourceError> => Layer.effect(Trainer, make(options)),
  /** The same, checking each round's modelCid against the regenerated weights and fetching it when they differ. */
  layerWithModelStore: (
    options: Omit<OnnxTrainerOptions, "modelSource"> = {}
  ): Layer.Layer<Trainer, ResourceError, GradientStore> =>
    Layer.effect(
      Trainer,
      Effect.gen(function*() {
        const store = yield* GradientStore
        return yield* make({ ...options, modelSource: store })
      })
    )
} as const
