import { Effect, Layer, Semaphore } from "effect"
import type * as Scope from "effect/Scope"
import { availableParallelism } from "node:os"
import { Worker } from "node:worker_threads"
import { ResourceError, RetryableError, type ValidationError } from "../../domain/errors.ts"
import { PowSolution } from "../../domain/mining.ts"
import { bytesToHex, exhaustedRange, powHash, prepareSearch, searchProblem, type SolveInput } from "../../domain/pow.ts"
import { PowSolver } from "../../services/PowSolver.ts"
import { nativePowAddonPath } from "./nativePowAddon.ts"
import {
  controlViews,
  makeControl,
  type PowEngine,
  type PowEngineRequest,
  type PowJob,
  type PowWorkerConfig,
  type PowWorkerMessage,
  STOP
} from "./powWorkerProtocol.ts"
import { referenceSolve } from "./ReferencePowSolver.ts"
import { spannedSolve } from "./solveSpan.ts"

export type { PowEngine, PowEngineRequest } from "./powWorkerProtocol.ts"

export interface FastPowSolverOptions {
  /** Worker threads (default: every core, `os.availableParallelism()`). */
  readonly threads?: number
  /**
   * "auto" (default): the native addon with the SHA extensions when the CPU has them, else its portable C code, else
   * TypeScript. "typescript" never loads the addon.
   */
  readonly engine?: PowEngineRequest
  /**
   * Nonces a worker claims at a time (default: about 2–3 ms of hashing for the engine). It bounds how long an
   * interrupt takes to stop the workers and the work past the answer.
   */
  readonly batchSize?: number
  /** The addon file (default: native/pow/build/Release/r3mes_pow.node); for tests. */
  readonly addonPath?: string
}

/** What one search of a nonce range found. */
export interface PowSearchResult {
  /** The smallest nonce of the range meeting the difficulty, if any. */
  readonly nonce: bigint | undefined
  /** Hashes computed by all workers, including those past the answer in other workers' last batches. */
  readonly hashes: number
}

export interface PowWorkerPool {
  readonly engine: PowEngine
  readonly threads: number
  readonly batchSize: number
  /** Why a native engine that was asked for (or "auto") is not used; undefined when it is. */
  readonly fallbackReason: string | undefined
  /**
   * The smallest nonce in [from, to] meeting `difficulty` for a 32-byte challenge, searched on every worker; searches
   * run one at a time. Interrupting it stops the workers within a batch and waits until they have.
   */
  readonly search: (
    challenge: Uint8Array,
    from: bigint,
    to: bigint,
    difficulty: number
  ) => Effect.Effect<PowSearchResult, RetryableError>
  /** `solveReference`'s contract (same nonce, same errors) on the pool; `hashes` counts every worker's hashes. */
  readonly solve: (
    input: SolveInput,
    options?: { readonly startNonce?: bigint; readonly maxNonce?: bigint }
  ) => Effect.Effect<PowSolution, ValidationError | ResourceError | RetryableError>
  /** Workers still inside a search (0 between searches). */
  readonly busyWorkers: () => number
}

/** About 2–3 ms per batch: sha-ni ≈ 50 MH/s, portable C ≈ 20 MH/s, TypeScript ≈ 4 MH/s per core on this machine kind. */
const defaultBatchSize: Record<PowEngine, number> = {
  "sha-ni": 1 << 17,
  portable: 1 << 16,
  typescript: 1 << 13
}

const workerEntry = new URL("./powWorker.ts", import.meta.url)

interface Slot {
  worker: Worker
  busy: boolean
  ready: boolean
  dead: boolean
}

interface RunningJob {
  readonly id: number
  readonly control: SharedArrayBuffer
  pending: number
  hashes: number
  nonce: bigint | undefined
  failure: string | undefined
  readonly onSettled: Array<() => void>
}

type ReadyMessage = Extract<PowWorkerMessage, { type: "ready" }>

const describe = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/**
 * Starts `threads` pow worker threads and waits until each has picked its engine; the scope terminates them.
 * Fails with a ResourceError when a worker cannot start (for instance a Node without type stripping).
 */
export const makePowWorkerPool = Effect.fnUntraced(function*(
  options: FastPowSolverOptions = {}
): Effect.fn.Return<PowWorkerPool, ResourceError, Scope.Scope> {
  const threads = options.threads ?? availableParallelism()
  if (!Number.isSafeInteger(threads) || threads < 1) {
    return yield* Effect.die(new RangeError(`proof-of-work threads must be a positive integer, got ${threads}`))
  }
  if (options.batchSize !== undefined && (!Number.isSafeInteger(options.batchSize) || options.batchSize < 1)) {
    return yield* Effect.die(new RangeError(`proof-of-work batch size must be a positive integer, got ${options.batchSize}`))
  }
  const config: PowWorkerConfig = { engine: options.engine ?? "auto", addonPath: options.addonPath ?? nativePowAddonPath }

  const slots: Array<Slot> = []
  let closing = false
  let current: RunningJob | undefined
  let jobIds = 0

  const leave = (slot: Slot, hashes: number, nonce: bigint | undefined, failure: string | undefined): void => {
    const job = current
    if (job === undefined || !slot.busy) return
    slot.busy = false
    if (!slot.dead) slot.worker.unref()
    job.hashes += hashes
    if (nonce !== undefined && (job.nonce === undefined || nonce < job.nonce)) job.nonce = nonce
    if (failure !== undefined && job.failure === undefined) job.failure = failure
    if (--job.pending === 0) {
      current = undefined
      for (const settled of job.onSettled) settled()
    }
  }

  const spawn = (slot: Slot, onReady: (message: ReadyMessage) => void, onStartFailure: (reason: string) => void): void => {
    const worker = new Worker(workerEntry, { workerData: config, name: "r3mes-pow" })
    slot.worker = worker
    slot.ready = false
    slot.dead = false
    worker.unref()
    const crashed = (reason: string): void => {
      if (slot.dead || slot.worker !== worker) return
      slot.dead = true
      if (!slot.ready) return onStartFailure(reason)
      leave(slot, 0, undefined, `a proof-of-work worker thread crashed: ${reason}`)
      // A worker that had started once is replaced: the crash was in a job, not in starting.
      if (!closing) spawn(slot, () => {}, () => {})
    }
    worker.on("message", (message: PowWorkerMessage) => {
      switch (message.type) {
        case "ready":
          slot.ready = true
          return onReady(message)
        case "done":
          if (current?.id === message.id) leave(slot, message.hashes, message.nonce ?? undefined, undefined)
          return
        case "failed":
          if (current?.id === message.id) {
            leave(slot, message.hashes, undefined, `a proof-of-work worker failed: ${message.message}`)
          }
          return
      }
    })
    worker.on("error", (error) => crashed(describe(error)))
    worker.on("exit", (code) => crashed(`exited with code ${code}`))
  }

  const terminateAll = Effect.promise(() => {
    closing = true
    if (current !== undefined) Atomics.store(controlViews(current.control).flags, STOP, 1)
    return Promise.allSettled(slots.map((slot) => slot.worker.terminate()))
  })

  const readies = yield* Effect.acquireRelease(
    Effect.tryPromise({
      try: () =>
        Promise.all(
          Array.from({ length: threads }, () =>
            new Promise<ReadyMessage>((resolve, reject) => {
              const slot = { busy: false, ready: false, dead: false } as Slot
              slots.push(slot)
              spawn(slot, resolve, (reason) => reject(new Error(reason)))
            })
          )
        ),
      catch: (cause) =>
        new ResourceError({
          message: `the proof-of-work worker threads did not start: ${describe(cause)}`,
          resource: "worker threads",
          cause: describe(cause),
          hint: "this Node must run .ts worker files (Node ≥ 22.18 / 24); the miner falls back to the reference solver"
        })
    }),
    () => terminateAll
  ).pipe(Effect.onError(() => terminateAll))

  // Workers of one machine pick the same engine; the slowest one decides the batch size if they ever differ.
  const engines = new Set(readies.map((ready) => ready.engine))
  const engine: PowEngine = engines.has("typescript") ? "typescript" : engines.has("portable") ? "portable" : "sha-ni"
  const fallbackReason = readies.find((ready) => ready.fallbackReason !== undefined)?.fallbackReason
  const batchSize = options.batchSize ?? defaultBatchSize[engine]
  const oneAtATime = yield* Semaphore.make(1)

  const runJob = (
    challengeBytes: Uint8Array,
    from: bigint,
    to: bigint,
    difficulty: number
  ): Effect.Effect<PowSearchResult, RetryableError> =>
    Effect.callback<PowSearchResult, RetryableError>((resume) => {
      const live = slots.filter((slot) => !slot.dead)
      if (live.length === 0) {
        return resume(Effect.fail(new RetryableError({
          message: "every proof-of-work worker thread has crashed and none could be restarted",
          hint: "restart the miner; the log shows the workers' errors"
        })))
      }
      const job: RunningJob = {
        id: ++jobIds,
        control: makeControl(),
        pending: live.length,
        hashes: 0,
        nonce: undefined,
        failure: undefined,
        onSettled: []
      }
      job.onSettled.push(() =>
        resume(
          job.failure === undefined
            ? Effect.succeed({ nonce: job.nonce, hashes: job.hashes })
            : Effect.fail(new RetryableError({ message: job.failure, hint: "the crashed worker was replaced" }))
        )
      )
      current = job
      const message: PowJob = {
        type: "job",
        id: job.id,
        control: job.control,
        challenge: Uint8Array.from(challengeBytes),
        start: from,
        last: to,
        batchSize: BigInt(batchSize),
        difficulty
      }
      for (const slot of live) {
        slot.busy = true
        // Referenced while searching, so a pending search keeps the process alive.
        slot.worker.ref()
        slot.worker.postMessage(message)
      }
      return Effect.callback<void>((resumeCleanup) => {
        Atomics.store(controlViews(job.control).flags, STOP, 1)
        if (current !== job) return resumeCleanup(Effect.void)
        job.onSettled.push(() => resumeCleanup(Effect.void))
      })
    })

  const search = (challengeBytes: Uint8Array, from: bigint, to: bigint, difficulty: number) => {
    const problem = searchProblem(challengeBytes, from, to, difficulty)
    if (problem !== undefined) return Effect.die(new RangeError(problem))
    return oneAtATime.withPermit(runJob(challengeBytes, from, to, difficulty))
  }

  const solve = Effect.fnUntraced(function*(
    input: SolveInput,
    solveOptions: { readonly startNonce?: bigint; readonly maxNonce?: bigint } = {}
  ): Effect.fn.Return<PowSolution, ValidationError | ResourceError | RetryableError> {
    const prepared = yield* prepareSearch(input, solveOptions)
    const { challengeBytes, difficulty, maxNonce, startNonce } = prepared
    const found = yield* search(challengeBytes, startNonce, maxNonce, difficulty)
    if (found.nonce === undefined) return yield* exhaustedRange(prepared)
    return new PowSolution({
      nonce: found.nonce,
      powHash: bytesToHex(powHash(challengeBytes, found.nonce)),
      hashes: found.hashes
    })
  })

  return {
    engine,
    threads,
    batchSize,
    fallbackReason,
    search,
    solve,
    busyWorkers: () => slots.filter((slot) => slot.busy).length
  }
})

const engineLabel = (engine: PowEngine): string => (engine === "typescript" ? "typescript" : `native ${engine}`)

/** The pool as a PowSolver, or the reference solver when no worker thread starts. */
const makeFastPowSolver = Effect.fnUntraced(function*(options: FastPowSolverOptions) {
  const pool = yield* makePowWorkerPool(options).pipe(
    Effect.catch((error) =>
      Effect.logWarning(`${error.message}: proof of work runs on the reference solver`).pipe(Effect.as(undefined))
    )
  )
  if (pool === undefined) return PowSolver.of({ solve: referenceSolve })
  const label = engineLabel(pool.engine)
  if (pool.fallbackReason !== undefined && options.engine !== "typescript") {
    yield* Effect.logWarning(
      `proof of work: ${pool.fallbackReason}; hashing with ${label} on ${pool.threads} worker threads ` +
        `(build the addon with \`npm run build:native\`)`
    )
  } else {
    yield* Effect.logInfo(`proof of work: ${label} on ${pool.threads} worker threads`)
  }
  return PowSolver.of({
    solve: spannedSolve({ "pow.solver": label, "pow.threads": pool.threads }, (input) => pool.solve(input))
  })
})

/**
 * The PowSolver port on a pool of worker threads (all cores by default), each hashing with the native addon
 * (SHA extensions or portable C) or, without it, the TypeScript searcher. Same nonce as the reference solver for the
 * same search; interruptible within one batch (~3 ms). Logs once which engine it uses. Scoped: the workers are
 * terminated when the layer is released. If no worker can start, it serves the reference solver instead, with a
 * warning.
 */
export const FastPowSolver = {
  layer: (options: FastPowSolverOptions = {}): Layer.Layer<PowSolver> => Layer.effect(PowSolver, makeFastPowSolver(options))
} as const
