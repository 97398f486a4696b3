import { Effect } from "effect"
import * as ort from "onnxruntime-node"
import { ResourceError } from "../../domain/errors.ts"

/**
 * Creating and running ONNX Runtime sessions the way training needs them: graph optimisations off by default and a
 * fixed thread count (outputs are then bit-identical across runs and processes; another thread count or a fusing
 * optimisation level changes the last bits of small models — bench/verifyTolerance.ts), and ONNX Runtime's
 * failures as ResourceError (out of memory, or the execution provider failing).
 */

/** The execution providers training runs on (DESIGN.md "Compute devices"). */
export type Device = "cpu" | "cuda" | "webgpu"
export const devices: ReadonlyArray<Device> = ["cpu", "cuda", "webgpu"]

/** R3MES_DEVICE: a device, or "auto" (the best one that initialises, see devices.ts). */
export type ExecutionProviderChoice = "auto" | Device

/** ONNX Runtime's graph optimisation levels. Training uses "disabled" unless told otherwise (see below). */
export type GraphOptimizationLevel = "disabled" | "basic" | "extended" | "all"
export const graphOptimizationLevels: ReadonlyArray<GraphOptimizationLevel> = ["disabled", "basic", "extended", "all"]

export interface SessionSettings {
  /** Threads inside one operator. Default 1. */
  readonly intraOpNumThreads?: number
  /** The device the session runs on (default "cpu"); devices.ts chooses it for "auto" and checks it initialises. */
  readonly executionProvider?: Device
  /**
   * Default "disabled": the levels that fuse operators change the last bits, and a gradient's profile names the
   * level so a verifier knows what it compares against (bench/verifyTolerance.ts measures the differences).
   */
  readonly graphOptimizationLevel?: GraphOptimizationLevel
}

// CUDA's and cuBLAS's, Vulkan's (under WebGPU) and Dawn's, the C++ allocator's, the OS's.
const OUT_OF_MEMORY = /out of memory|OutOfMemory|OUT_OF_(DEVICE|HOST)_MEMORY|bad_alloc|failed to allocate|allocation fail|cudaErrorMemoryAllocation|CUBLAS_STATUS_ALLOC_FAILED|ENOMEM/i

/** An ONNX Runtime failure as a ResourceError: memory when it ran out, else the runtime/provider. */
export const runtimeError = (what: string, providers: ReadonlyArray<string>) => (e: unknown): ResourceError => {
  const cause = e instanceof Error ? e.message : String(e)
  return OUT_OF_MEMORY.test(cause)
    ? new ResourceError({
      message: `${what}: ONNX Runtime ran out of memory (${providers.join(", ")})`,
      cause,
      resource: "memory",
      hint: "free memory (GPU or host), or train rounds with a smaller batch_size or hidden size"
    })
    : new ResourceError({
      message: `${what}: ONNX Runtime failed on ${providers.join(", ")}`,
      cause,
      resource: "onnxruntime",
      hint: "`r3mes-miner devices` shows which devices initialise (CUDA needs its provider libraries and driver, WebGPU a " +
        "Vulkan driver); --device cpu trains on the CPU"
    })
}

export interface Session {
  readonly session: ort.InferenceSession
  readonly providers: ReadonlyArray<string>
}

export const createSession = (onnx: Uint8Array, settings: SessionSettings = {}): Effect.Effect<Session, ResourceError> => {
  // One provider: ONNX Runtime adds the CPU provider itself for the nodes a device lacks (the WebGPU flavour of the
  // training graphs has none, see trainingGraphs.ts; onnx-webgpu.test.ts checks it with ONNX Runtime's profiler).
  const providers = [settings.executionProvider ?? "cpu"]
  return Effect.tryPromise({
    try: () =>
      ort.InferenceSession.create(onnx, {
        executionProviders: providers,
        graphOptimizationLevel: settings.graphOptimizationLevel ?? "disabled",
        intraOpNumThreads: settings.intraOpNumThreads ?? 1,
        interOpNumThreads: 1,
        executionMode: "sequential",
        // Fatal only: ONNX Runtime would print its errors on stderr, and they reach us as exceptions anyway.
        logSeverityLevel: 4
      }),
    catch: runtimeError("creating the training session", providers)
  }).pipe(Effect.map((session) => ({ session, providers })))
}

export const runSession = (
  s: Session,
  feeds: ort.InferenceSession.FeedsType
): Effect.Effect<ort.InferenceSession.ReturnType, ResourceError> =>
  Effect.tryPromise({ try: () => s.session.run(feeds), catch: runtimeError("running the training step", s.providers) })

export const releaseSession = (s: Session): Effect.Effect<void> =>
  Effect.tryPromise(() => s.session.release()).pipe(Effect.ignore)
