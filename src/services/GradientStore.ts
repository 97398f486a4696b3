import { Context, type Effect } from "effect"
import type { MiningError } from "../domain/errors.ts"

/**
 * Port: content-addressed storage of gradient envelopes (IPFS). `computeCid` uses the same import options as `add`
 * and stores nothing, so the CID can be journaled before anything is pinned.
 */
export class GradientStore extends Context.Service<GradientStore, {
  /** Stores and pins the bytes; returns their CID. */
  readonly add: (bytes: Uint8Array) => Effect.Effect<string, MiningError>
  readonly computeCid: (bytes: Uint8Array) => Effect.Effect<string, MiningError>
  /** Fails with ResourceError when the content is larger than `maxBytes`. */
  readonly get: (cid: string, maxBytes: number) => Effect.Effect<Uint8Array, MiningError>
  /** Releases the pin; unpinning a CID that is not pinned succeeds (compensations must be idempotent). */
  readonly unpin: (cid: string) => Effect.Effect<void, MiningError>
  readonly pins: Effect.Effect<ReadonlyArray<string>, MiningError>
  /** Frees unpinned blocks; returns how many were removed. */
  readonly gc: Effect.Effect<number, MiningError>
}>()("r3mes/services/GradientStore") {}
