/**
 * What the proof-of-work pool (WorkerPowSolver.ts) and its worker threads (powWorker.ts) exchange. No imports: the
 * worker entry loads this under Node's type stripping.
 *
 * A search of [start, last] is cut into batches of `batchSize` nonces, batch k being
 * [start + k·batchSize, start + (k+1)·batchSize − 1]. Workers claim batches in increasing order from a shared counter
 * and search each from its first nonce, so when the lowest batch with a hit is k, every batch below k has been claimed
 * and is searched to its end: the smallest hit over all batches is the smallest valid nonce of the whole range, the
 * nonce the sequential reference solver finds. A worker stops claiming once the counter passes the lowest batch with
 * a hit, or when the stop flag is set (an interrupted solve); both are checked between batches, so a batch is the
 * unit of latency.
 */

/** How a worker hashes: the x86 SHA extensions, the native portable C code, or `makePowSearcher` (TypeScript). */
export type PowEngine = "sha-ni" | "portable" | "typescript"

/** "auto": the fastest available. A native engine that is not available falls back to the next one, with a reason. */
export type PowEngineRequest = "auto" | PowEngine

/** `workerData` of a pow worker. */
export interface PowWorkerConfig {
  readonly engine: PowEngineRequest
  readonly addonPath: string
}

export interface PowJob {
  readonly type: "job"
  readonly id: number
  readonly control: SharedArrayBuffer
  readonly challenge: Uint8Array
  readonly start: bigint
  readonly last: bigint
  readonly batchSize: bigint
  readonly difficulty: number
}

export type PowWorkerMessage =
  | {
    readonly type: "ready"
    readonly engine: PowEngine
    /** Why a native engine that was asked for (or "auto") is not used. */
    readonly fallbackReason: string | undefined
  }
  /** The worker has left the job: it claims no more batches. `nonce` is its smallest hit, if any. */
  | { readonly type: "done"; readonly id: number; readonly hashes: number; readonly nonce: bigint | null }
  | { readonly type: "failed"; readonly id: number; readonly hashes: number; readonly message: string }

/** The shared control block of one job: two int64 batch indices, then an int32 stop flag. */
export const CONTROL_BYTES = 24

/** Int64 slots: the next batch to claim, the lowest batch with a hit so far (NO_HIT when none). */
export const NEXT_BATCH = 0
export const LOWEST_HIT = 1
export const NO_HIT = (1n << 63n) - 1n
/** Int32 slot: non-zero once the job is stopped (interrupted). */
export const STOP = 0

export interface ControlViews {
  readonly batches: BigInt64Array
  readonly flags: Int32Array
}

export const controlViews = (control: SharedArrayBuffer): ControlViews => ({
  batches: new BigInt64Array(control, 0, 2),
  flags: new Int32Array(control, 16, 1)
})

export const makeControl = (): SharedArrayBuffer => {
  const control = new SharedArrayBuffer(CONTROL_BYTES)
  controlViews(control).batches[LOWEST_HIT] = NO_HIT
  return control
}
