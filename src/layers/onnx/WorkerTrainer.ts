import { Effect, Layer, Schema } from "effect"
import { Worker } from "node:worker_threads"
import { type MiningError, MiningError as MiningErrorSchema, ResourceError } from "../../domain/errors.ts"
import { type Task, TrainingResult } from "../../domain/mining.ts"
import { GradientStore } from "../../services/GradientStore.ts"
import { Trainer, type TrainingSettings } from "../../services/Trainer.ts"
import { sharedDeviceSelection } from "./devices.ts"
import { onnxProfile, type OnnxTrainerOptions } from "./OnnxTrainer.ts"
import type { TrainerWorkerData } from "./trainerWorker.ts"

/**
 * The Trainer port on onnxruntime-node in a worker thread (trainerWorker.ts): the same OnnxTrainer, the same bytes,
 * off the miner's event loop. onnxruntime-node runs `session.run` on the calling thread and the trainer's JavaScript
 * is more than half of a chunk (bench/utilisation.ts), so on the main thread training stalled the chain, the store,
 * the journal and the API for the whole chunk.
 *
 * The device is chosen here, once per process (devices.ts), and handed to the worker. Round models are checked and
 * fetched through this thread's GradientStore (the worker asks for a CID or bytes). A worker that dies fails the
 * trainings in flight with a ResourceError and is started again for the next one; a training interrupted here is
 * interrupted in the worker (between its steps).
 */

type ModelSource = NonNullable<OnnxTrainerOptions["modelSource"]>

export interface WorkerTrainerOptions extends OnnxTrainerOptions {
  /** Called with each worker thread as it starts (benchmarks read its event-loop utilisation: the trainer's busy time). */
  readonly onWorker?: (worker: Worker) => void
}

interface Pending {
  readonly resume: (effect: Effect.Effect<TrainingResult, MiningError>) => void
}

const workerUrl = new URL("./trainerWorker.ts", import.meta.url)
const decodeError = Schema.decodeUnknownSync(MiningErrorSchema)
const encodeError = Schema.encodeSync(MiningErrorSchema)

export const make = Effect.fnUntraced(function*(options: WorkerTrainerOptions = {}) {
  const selection = yield* sharedDeviceSelection(options.executionProvider ?? "auto")
  const device = selection.device
  const settings = {
    intraOpNumThreads: options.intraOpNumThreads ?? 1,
    executionProvider: device,
    graphOptimizationLevel: options.graphOptimizationLevel ?? "disabled"
  } as const
  const profile = onnxProfile(settings)
  const source: ModelSource | undefined = options.modelSource
  const data: TrainerWorkerData = {
    options: { ...settings, digitsDir: options.digitsDir, cachedWeights: options.cachedWeights },
    modelSource: source !== undefined,
    selection
  }

  let worker: Worker | undefined
  let requests = 0
  const pending = new Map<number, Pending>()

  const failAll = (message: string) => {
    for (const [id, p] of pending) {
      pending.delete(id)
      p.resume(Effect.fail(new ResourceError({ message, resource: "onnxruntime", hint: "the next training starts a new worker" })))
    }
  }

  /** Answers a store request of the worker from this thread's store. */
  const answerStore = (w: Worker, message: { id: number; op: "computeCid" | "get"; args: ReadonlyArray<unknown> }) => {
    const run: Effect.Effect<unknown, MiningError> = source === undefined
      ? Effect.fail(new ResourceError({ message: "this trainer has no model store" }))
      : message.op === "computeCid"
      ? source.computeCid(message.args[0] as Uint8Array)
      : source.get(message.args[0] as string, message.args[1] as number)
    void Effect.runPromise(Effect.result(run)).then((result) =>
      w.postMessage(
        result._tag === "Success"
          ? { type: "store", id: message.id, ok: true, value: result.success }
          : { type: "store", id: message.id, ok: false, error: encodeError(result.failure) }
      )
    )
  }

  const started = (): Worker => {
    if (worker !== undefined) return worker
    const w = new Worker(workerUrl, { workerData: data })
    // Idle, it must not keep the process alive; busy, a pending training holds the process through its fiber.
    w.unref()
    w.on("message", (message: { type: string; id: number } & Record<string, unknown>) => {
      if (message.type === "store") return answerStore(w, message as never)
      const p = pending.get(message.id)
      if (p === undefined) return
      pending.delete(message.id)
      if (message.type === "trained") {
        const r = message["result"] as { envelope: Uint8Array; gradientHash: string; lossBefore: number; lossAfter: number; steps: number }
        // The envelope's buffer was transferred, not copied.
        p.resume(Effect.succeed(new TrainingResult(r)))
        return
      }
      let error: MiningError
      try {
        error = decodeError(message["error"])
      } catch {
        error = new ResourceError({ message: `the trainer's worker failed: ${JSON.stringify(message["error"])}` })
      }
      p.resume(Effect.fail(error))
    })
    w.on("error", (e) => {
      if (worker === w) worker = undefined
      failAll(`the trainer's worker failed: ${e.message}`)
    })
    w.on("exit", (code) => {
      if (worker === w) worker = undefined
      failAll(`the trainer's worker exited (code ${code})`)
    })
    worker = w
    options.onWorker?.(w)
    return w
  }

  yield* Effect.addFinalizer(() =>
    Effect.promise(async () => {
      const w = worker
      worker = undefined
      if (w !== undefined) await w.terminate()
    })
  )

  const train = Effect.fn("Trainer.train")(function*(
    task: Task,
    miner: string,
    reproduce?: TrainingSettings
  ): Effect.fn.Return<TrainingResult, MiningError> {
    yield* Effect.annotateCurrentSpan({ "r3mes.round_id": task.roundId.toString(), "r3mes.chunk_id": task.chunkId, "training.worker": true })
    return yield* Effect.callback<TrainingResult, MiningError>((resume) => {
      const id = ++requests
      const w = started()
      pending.set(id, { resume })
      w.ref()
      w.postMessage({ type: "train", id, task: { ...task }, miner, reproduce })
      return Effect.sync(() => {
        if (pending.delete(id)) w.postMessage({ type: "cancel", id })
      })
    }).pipe(Effect.ensuring(Effect.sync(() => {
      if (pending.size === 0) worker?.unref()
    })))
  })

  return Trainer.of({ train, profile: Effect.succeed(profile) })
})

export const WorkerTrainer = {
  /** The Trainer port in a worker thread; the worker is terminated when the layer's scope closes. */
  layer: (options: Omit<WorkerTrainerOptions, "modelSource"> = {}): Layer.Layer<Trainer, ResourceError> =>
    Layer.effect(Trainer, make(options)),
  /** The same, checking and fetching round models through the GradientStore. */
  layerWithModelStore: (
    options: Omit<WorkerTrainerOptions, "modelSource"> = {}
  ): Layer.Layer<Trainer, ResourceError, GradientStore> =>
    Layer.effect(
      Trainer,
      Effect.gen(function*() {
        const store = yield* GradientStore
        return yield* make({ ...options, modelSource: store })
      })
    )
} as const
