import { base58btc } from "multiformats/bases/base58"
import { Context, Effect, Layer } from "effect"
import { ResourceError, ValidationError } from "../domain/errors.ts"
import { sha256Bytes } from "../layers/sha256Hex.ts"
import { GradientStore } from "../services/GradientStore.ts"
import { type FaultPlan, makeFaultInjector } from "./Faults.ts"

export type GradientStoreMethod = "add" | "computeCid" | "get" | "unpin" | "pins" | "gc"

/** One state change of the in-memory store, in the order they happened. Reads are not logged. */
export interface StoreOperation {
  /** `gc` is logged once per block it removed. */
  readonly op: "add" | "unpin" | "gc"
  readonly cid: string
}

export interface TestGradientStoreOptions {
  readonly faults?: FaultPlan<GradientStoreMethod>
  /** Content stored and pinned before the first call, e.g. pins left by a crashed run for orphan reconciliation. */
  readonly pinned?: ReadonlyArray<Uint8Array>
}

/**
 * A real CIDv0 (`Qm…`): base58btc of the sha2-256 multihash (0x12 0x20 ‖ sha256(bytes)) of the raw bytes.
 *
 * It is NOT the CID Kubo or the embedded Helia node give the same bytes: they hash a UnixFS dag-pb node wrapping the
 * content ("hello world\n" is QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o there, QmZjTnYw2TFhn9Nn7tjmPSoTBoY7YRk…
 * here). Tests may rely on it being deterministic and well-formed, never on it matching a real node.
 */
export const rawCidV0 = (bytes: Uint8Array): string => {
  const digest = sha256Bytes(bytes)
  const multihash = new Uint8Array(34)
  multihash[0] = 0x12
  multihash[1] = 0x20
  multihash.set(digest, 2)
  // CIDv0 is the bare multihash in base58btc, without multibase prefix.
  return base58btc.baseEncode(multihash)
}

/** Control side of the in-memory GradientStore: inspect blocks and pins, change faults while a test runs. */
export class TestGradientStore extends Context.Service<TestGradientStore, {
  readonly setFaults: (faults: FaultPlan<GradientStoreMethod>) => Effect.Effect<void>
  readonly calls: (method: GradientStoreMethod) => Effect.Effect<number>
  /** Pinned CIDs, in the order they were pinned. */
  readonly pinned: Effect.Effect<ReadonlyArray<string>>
  /** CIDs of every stored block (pinned or not), in the order they were stored. */
  readonly stored: Effect.Effect<ReadonlyArray<string>>
  readonly operations: Effect.Effect<ReadonlyArray<StoreOperation>>
}>()("r3mes/testing/TestGradientStore") {
  /**
   * An in-memory GradientStore (blocks by CID + a pin set, CIDs from `rawCidV0`) and its control service.
   * `add` stores and pins; `computeCid` stores nothing; `get` of an unknown CID is a ValidationError and of content
   * over `maxBytes` a ResourceError; `unpin` of an unpinned CID succeeds; `gc` drops unpinned blocks.
   */
  static readonly layer = (
    options: TestGradientStoreOptions = {}
  ): Layer.Layer<GradientStore | TestGradientStore> =>
    Layer.effectContext(Effect.gen(function*() {
      const faults = yield* makeFaultInjector(options.faults)
      const blocks = new Map<string, Uint8Array>()
      const pinSet = new Set<string>()
      const log: Array<StoreOperation> = []

      const store = (bytes: Uint8Array): string => {
        const cid = rawCidV0(bytes)
        if (!blocks.has(cid)) blocks.set(cid, Uint8Array.from(bytes))
        pinSet.add(cid)
        log.push({ op: "add", cid })
        return cid
      }
      for (const bytes of options.pinned ?? []) store(bytes)

      const read = Effect.fnUntraced(function*(cid: string, maxBytes: number) {
        const bytes = blocks.get(cid)
        if (bytes === undefined) {
          return yield* new ValidationError({ message: `no block for CID ${cid} in the in-memory store`, field: "cid" })
        }
        if (bytes.length > maxBytes) {
          return yield* new ResourceError({
            message: `content of ${cid} is ${bytes.length} bytes, over the limit of ${maxBytes}`,
            resource: "size"
          })
        }
        return Uint8Array.from(bytes)
      })

      const port = GradientStore.of({
        add: (bytes) => faults.wrap("add", Effect.sync(() => store(bytes))),
        computeCid: (bytes) => faults.wrap("computeCid", Effect.sync(() => rawCidV0(bytes))),
        get: (cid, maxBytes) => faults.wrap("get", read(cid, maxBytes)),
        unpin: (cid) =>
          faults.wrap(
            "unpin",
            Effect.sync(() => {
              pinSet.delete(cid)
              log.push({ op: "unpin", cid })
            })
          ),
        pins: faults.wrap("pins", Effect.sync(() => [...pinSet])),
        gc: faults.wrap(
          "gc",
          Effect.sync(() => {
            let removed = 0
            for (const cid of [...blocks.keys()]) {
              if (pinSet.has(cid)) continue
              blocks.delete(cid)
              log.push({ op: "gc", cid })
              removed++
            }
            return removed
          })
        )
      })

      const control = TestGradientStore.of({
        setFaults: faults.set,
        calls: faults.calls,
        pinned: Effect.sync(() => [...pinSet]),
        stored: Effect.sync(() => [...blocks.keys()]),
        operations: Effect.sync(() => [...log])
      })

      return Context.make(GradientStore, port).pipe(Context.add(TestGradientStore, control))
    }))
}
