import { assert } from "@effect/vitest"
import { Effect, type Layer, type Scope } from "effect"
import type { MiningError } from "../../src/domain/errors.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"

/**
 * The GradientStore contract, one suite run against every real store (HeliaStore, KuboStore). A store passes when
 * it gives Kubo's CIDs, pins what it adds, releases pins idempotently, frees exactly the unpinned blocks on gc, keeps
 * its pins across a restart of its backend, and refuses oversize content.
 */
export interface StoreSubject {
  /** The store. Built again after `restart`, it must see what was stored before. */
  readonly layer: Layer.Layer<GradientStore, MiningError>
  /** Restarts the backend, keeping its data (Helia: nothing to do, a new layer reopens the repo; Kubo: the daemon). */
  readonly restart: Effect.Effect<void>
}

/** What @effect/vitest's `it.effect` / `it.live` are: a test registration for effects needing R. */
type Register<R> = <A, E>(name: string, self: () => Effect.Effect<A, E, R | Scope.Scope>, timeout?: number) => void

export const golden = {
  text: "hello world\n",
  cid: "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
  /** The empty file. */
  emptyCid: "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
} as const

/**
 * `length` reproducible bytes (xorshift32 from `seed`): distinct 256 KiB chunks, so the DAG has one block per chunk
 * and block counts are predictable.
 */
export const deterministicBytes = (length: number, seed: number): Uint8Array => {
  const out = new Uint8Array(length)
  const words = new Uint32Array(out.buffer, 0, Math.floor(length / 4))
  let x = seed >>> 0 || 0x9e3779b9
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    words[i] = x
  }
  for (let i = words.length * 4; i < length; i++) out[i] = (seed + i) & 0xff
  return out
}

/**
 * 1.5 MiB + 12,345 bytes, seed 4: seven 256 KiB leaves under one root. Its CID (Kubo's defaults) was checked against
 * the js-ipfs daemon and against the independent encoder in test/unit/ipfs-cid.test.ts; both stores must give it.
 */
export const multiChunk = {
  bytes: () => deterministicBytes(1_572_864 + 12_345, 4),
  cid: "QmVo6C5soiCt4r1jaUZfYAU3fY4FT4ZfgggUdheJXYsA7Q",
  /** 7 leaves + 1 root. */
  blocks: 8
} as const

const withStore = <A, E>(layer: Layer.Layer<GradientStore, MiningError>, f: (store: GradientStore["Service"]) => Effect.Effect<A, E>) =>
  GradientStore.use(f).pipe(Effect.provide(layer))

const expectFailure = <A>(effect: Effect.Effect<A, MiningError>) =>
  Effect.flip(effect).pipe(Effect.catch(() => Effect.die(new Error("expected a failure, got a success"))))

export const storeContract = <R>(register: Register<R>, subject: Effect.Effect<StoreSubject, never, R | Scope.Scope>) => {
  register("golden CID: \"hello world\\n\" is QmT78zSu… from computeCid and from add, and reads back", () =>
    Effect.gen(function*() {
      const { layer } = yield* subject
      yield* withStore(layer, (store) =>
        Effect.gen(function*() {
          const bytes = new TextEncoder().encode(golden.text)
          assert.strictEqual(yield* store.computeCid(bytes), golden.cid)
          assert.strictEqual(yield* store.computeCid(new Uint8Array(0)), golden.emptyCid)
          assert.strictEqual(yield* store.add(bytes), golden.cid)
          assert.include(yield* store.pins, golden.cid)
          assert.deepStrictEqual(yield* store.get(golden.cid, 1024), bytes)
          // Adding the same content again is the same CID and still one pin.
          assert.strictEqual(yield* store.add(bytes), golden.cid)
          assert.strictEqual((yield* store.pins).filter((cid) => cid === golden.cid).length, 1)
          yield* store.unpin(golden.cid)
        }))
    }))

  register("multi-chunk file (> 1 MiB): add gives the CID computeCid predicts, Kubo's, and reads back intact", () =>
    Effect.gen(function*() {
      const { layer } = yield* subject
      yield* withStore(layer, (store) =>
        Effect.gen(function*() {
          const bytes = multiChunk.bytes()
          assert.strictEqual(yield* store.computeCid(bytes), multiChunk.cid)
          assert.strictEqual(yield* store.add(bytes), multiChunk.cid)
          const back = yield* store.get(multiChunk.cid, bytes.length)
          assert.strictEqual(back.length, bytes.length)
          assert.isTrue(Buffer.from(back).equals(Buffer.from(bytes)), "content differs")
          yield* store.unpin(multiChunk.cid)
        }))
    }))

  register("computeCid stores nothing: no pin, and gc has nothing to free", () =>
    Effect.gen(function*() {
      const { layer } = yield* subject
      yield* withStore(layer, (store) =>
        Effect.gen(function*() {
          yield* store.gc
          const before = yield* store.pins
          const cid = yield* store.computeCid(deterministicBytes(600_000, 11))
          assert.deepStrictEqual(yield* store.pins, before)
          assert.notInclude(before, cid)
          assert.strictEqual(yield* store.gc, 0)
        }))
    }))

  register("pin, unpin (idempotent), gc frees exactly the unpinned blocks and keeps the pinned ones", () =>
    Effect.gen(function*() {
      const { layer } = yield* subject
      yield* withStore(layer, (store) =>
        Effect.gen(function*() {
          yield* store.gc
          const kept = deterministicBytes(300_000, 21) // 2 leaves + root
          const dropped = deterministicBytes(700_000, 22) // 3 leaves + root
          const keptCid = yield* store.add(kept)
          const droppedCid = yield* store.add(dropped)
          const pins = yield* store.pins
          assert.include(pins, keptCid)
          assert.include(pins, droppedCid)

          yield* store.unpin(droppedCid)
          yield* store.unpin(droppedCid)
          assert.notInclude(yield* store.pins, droppedCid)
          assert.include(yield* store.pins, keptCid)

          assert.strictEqual(yield* store.gc, 4)
          assert.strictEqual(yield* store.gc, 0)
          assert.deepStrictEqual(yield* store.get(keptCid, kept.length), kept)

          // A CID that was never pinned unpins too (a compensation may run for an add that never happened).
          yield* store.unpin(golden.emptyCid)
          yield* store.unpin(keptCid)
          assert.strictEqual(yield* store.gc, 3)
        }))
    }))

  register("pins persist across a restart of the store's backend", () =>
    Effect.gen(function*() {
      const { layer, restart } = yield* subject
      const bytes = multiChunk.bytes()
      const unpinned = deterministicBytes(300_000, 31)
      const unpinnedCid = yield* withStore(layer, (store) =>
        Effect.gen(function*() {
          assert.strictEqual(yield* store.add(bytes), multiChunk.cid)
          const cid = yield* store.add(unpinned)
          yield* store.unpin(cid)
          return cid
        }))
      yield* restart
      yield* withStore(layer, (store) =>
        Effect.gen(function*() {
          const pins = yield* store.pins
          assert.include(pins, multiChunk.cid)
          assert.notInclude(pins, unpinnedCid)
          assert.isTrue(Buffer.from(yield* store.get(multiChunk.cid, bytes.length)).equals(Buffer.from(bytes)))
          assert.strictEqual(yield* store.gc, 3)
          yield* store.unpin(multiChunk.cid)
        }))
    }))

  register("get over maxBytes is a ResourceError; exactly maxBytes is fine", () =>
    Effect.gen(function*() {
      const { layer } = yield* subject
      yield* withStore(layer, (store) =>
        Effect.gen(function*() {
          const bytes = multiChunk.bytes()
          const cid = yield* store.add(bytes)
          const error = yield* expectFailure(store.get(cid, bytes.length - 1))
          assert.strictEqual(error._tag, "ResourceError")
          assert.include(error.message, String(bytes.length - 1))
          assert.strictEqual((yield* expectFailure(store.get(cid, 0)))._tag, "ResourceError")
          assert.strictEqual((yield* store.get(cid, bytes.length)).length, bytes.length)
          yield* store.unpin(cid)
        }))
    }))

  register("a malformed CID is a ValidationError, before any I/O", () =>
    Effect.gen(function*() {
      const { layer } = yield* subject
      yield* withStore(layer, (store) =>
        Effect.gen(function*() {
          for (const bad of ["", "not-a-cid", "Qm123", "bafy!!"]) {
            const getError = yield* expectFailure(store.get(bad, 1024))
            assert.strictEqual(getError._tag, "ValidationError", bad)
            assert.strictEqual((yield* expectFailure(store.unpin(bad)))._tag, "ValidationError", bad)
          }
        }))
    }))
}
