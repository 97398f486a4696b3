import { Effect } from "effect"
import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import * as ort from "onnxruntime-node"
import { ResourceError } from "../../domain/errors.ts"

/**
 * Creating and running ONNX Runtime sessions the way training needs them: graph optimisations off by default and a
 * fixed thread count (outputs are then bit-identical across runs and processes; another thread count or a fusing
 * optimisation level changes the last bits of small models — bench/verifyTolerance.ts), and ONNX Runtime's
 * failures as ResourceError (out of memory, or the execution provider failing).
 */

export type ExecutionProviderChoice = "auto" | "cpu" | "cuda"

/** ONNX Runtime's graph optimisation levels. Training uses "disabled" unless told otherwise (see below). */
export type GraphOptimizationLevel = "disabled" | "basic" | "extended" | "all"
export const graphOptimizationLevels: ReadonlyArray<GraphOptimizationLevel> = ["disabled", "basic", "extended", "all"]

export interface SessionSettings {
  /** Threads inside one operator. Default 1. */
  readonly intraOpNumThreads?: number
  /** "auto" (default): CUDA when its provider library is installed, else CPU. */
  readonly executionProvider?: ExecutionProviderChoice
  /**
   * Default "disabled": the levels that fuse operators change the last bits, and a gradient's profile names the
   * level so a verifier knows what it compares against (bench/verifyTolerance.ts measures the differences).
   */
  readonly graphOptimizationLevel?: GraphOptimizationLevel
}

/**
 * onnxruntime-node lists "cuda" on linux/x64 whether or not its provider library was downloaded at install time
 * (`allowScripts` in package.json skips that download), so availability is the listing and the library file together.
 */
export const cudaAvailable = (): boolean => {
  if (!ort.listSupportedBackends().some((b) => b.name === "cuda")) return false
  try {
    const dist = path.dirname(createRequire(import.meta.url).resolve("onnxruntime-node"))
    const bin = path.join(dist, "..", "bin", "napi-v6", process.platform, process.arch)
    return existsSync(path.join(bin, "libonnxruntime_providers_cuda.so"))
  } catch {
    return false
  }
}

export const executionProviders = (choice: ExecutionProviderChoice = "auto"): ReadonlyArray<"cuda" | "cpu"> => {
  switch (choice) {
    case "cpu":
      return ["cpu"]
    case "cuda":
      return ["cuda"]
    case "auto":
      return cudaAvailable() ? ["cuda", "cpu"] : ["cpu"]
  }
}

const OUT_OF_MEMORY = /out of memory|bad_alloc|failed to allocate|allocation fail|cudaErrorMemoryAllocation|CUBLAS_STATUS_ALLOC_FAILED|ENOMEM/i

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
      hint: "check the onnxruntime-node install (for CUDA: its provider libraries and the driver), or train on the CPU provider"
    })
}

export interface Session {
  readonly session: ort.InferenceSession
  readonly providers: ReadonlyArray<string>
}

export const createSession = (onnx: Uint8Array, settings: SessionSettings = {}): Effect.Effect<Session, ResourceError> => {
  const providers = executionProviders(settings.executionProvider)
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
