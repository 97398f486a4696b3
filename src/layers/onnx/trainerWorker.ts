/**
 * The worker thread of WorkerTrainer.ts: an OnnxTrainer of its own (its own ONNX Runtime sessions and weights cache)
 * on the device the main thread chose. onnxruntime-node runs `session.run` on the calling thread, and the trainer's
 * own JavaScript (SGD updates, batches, the envelope) is more than half a chunk, so here they keep a thread busy that
 * is not the miner's event loop.
 *
 * Messages in: {type: "train", id, task, miner, reproduce?}, {type: "cancel", id}, {type: "store", id, ok, value |
 * error} (answers to its store requests). Out: {type: "trained", id, result} (the envelope's buffer transferred),
 * {type: "failed", id, error} (an encoded MiningError), {type: "store", id, op, args} (the round model's CID or bytes,
 * asked of the main thread's GradientStore).
 */
import { Cause, Effect, Exit, type Fiber, Option, Schema, Scope } from "effect"
import { parentPort, workerData } from "node:worker_threads"
import { MiningError, ResourceError } from "../../domain/errors.ts"
import { Task } from "../../domain/mining.ts"
import type { TrainingSettings } from "../../services/Trainer.ts"
import { type DeviceSelection, rememberDeviceSelection } from "./devices.ts"
import { make, type OnnxTrainerOptions } from "./OnnxTrainer.ts"

export interface TrainerWorkerData {
  readonly options: Omit<OnnxTrainerOptions, "modelSource">
  /** Whether round models are checked and fetched through the main thread's store. */
  readonly modelSource: boolean
  /** The main thread's device selection: the worker trains on it without trying the device again. */
  readonly selection: DeviceSelection
}

type StoreAnswer = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown }

const port = parentPort!
const data = workerData as TrainerWorkerData
const encodeError = Schema.encodeSync(MiningError)
const decodeError = Schema.decodeUnknownSync(MiningError)

let storeRequests = 0
const storeAnswers = new Map<number, (answer: StoreAnswer) => void>()

const askStore = <A>(op: "computeCid" | "get", args: ReadonlyArray<unknown>): Effect.Effect<A, MiningError> =>
  Effect.callback<A, MiningError>((resume) => {
    const id = ++storeRequests
    storeAnswers.set(id, (answer) => {
      storeAnswers.delete(id)
      if (answer.ok) return resume(Effect.succeed(answer.value as A))
      let error: MiningError
      try {
        error = decodeError(answer.error)
      } catch {
        error = new ResourceError({ message: `the main thread's store failed: ${String(answer.error)}` })
      }
      resume(Effect.fail(error))
    })
    port.postMessage({ type: "store", id, op, args })
  })

rememberDeviceSelection(data.selection)
// The sessions live as long as the worker: its scope is never closed (terminating the worker frees them).
const trainer = await Effect.runPromise(make({
  ...data.options,
  ...(data.modelSource
    ? {
      modelSource: {
        computeCid: (bytes: Uint8Array) => askStore<string>("computeCid", [bytes]),
        get: (cid: string, maxBytes: number) => askStore<Uint8Array>("get", [cid, maxBytes])
      }
    }
    : {})
}).pipe(Scope.provide(Scope.makeUnsafe())))

const running = new Map<number, Fiber.Fiber<unknown, unknown>>()

port.on("message", (message: { type: string; id: number } & Record<string, unknown>) => {
  switch (message.type) {
    case "store":
      storeAnswers.get(message.id)?.(message as unknown as StoreAnswer)
      return
    case "cancel":
      void running.get(message.id)?.interruptUnsafe()
      return
    case "train": {
      const task = new Task(message["task"] as ConstructorParameters<typeof Task>[0])
      const fiber = Effect.runFork(trainer.train(task, message["miner"] as string, message["reproduce"] as TrainingSettings | undefined))
      running.set(message.id, fiber)
      fiber.addObserver((exit) => {
        running.delete(message.id)
        if (Exit.isSuccess(exit)) {
          const result = exit.value
          const envelope = result.envelope
          port.postMessage(
            {
              type: "trained",
              id: message.id,
              result: { envelope, gradientHash: result.gradientHash, lossBefore: result.lossBefore, lossAfter: result.lossAfter, steps: result.steps }
            },
            envelope.byteOffset === 0 && envelope.byteLength === envelope.buffer.byteLength ? [envelope.buffer as ArrayBuffer] : []
          )
          return
        }
        port.postMessage({ type: "failed", id: message.id, error: failureOf(exit) })
      })
    }
  }
})

/** The exit's MiningError, encoded; a defect or an interruption as a ResourceError. */
const failureOf = (exit: Exit.Exit<unknown, MiningError>): unknown =>
  encodeError(Option.getOrElse(
    Exit.findErrorOption(exit),
    () => new ResourceError({ message: `the trainer's worker failed: ${Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "?"}` })
  ))
