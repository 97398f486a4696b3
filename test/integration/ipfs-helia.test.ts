import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { HeliaNode } from "../../src/layers/ipfs/HeliaNode.ts"
import { HeliaStore } from "../../src/layers/ipfs/HeliaStore.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { deterministicBytes, storeContract } from "../support/storeContract.ts"

/** A fresh data dir, deleted when the test's scope closes. */
const tempDataDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "r3mes-helia-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

describe("HeliaStore: the GradientStore contract", () => {
  storeContract(
    it.live,
    Effect.map(tempDataDir, (dataDir) => ({ layer: HeliaStore.layer({ dataDir }), restart: Effect.void }))
  )
})

const openSockets = (): number =>
  readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith("socket:")
    } catch {
      return false
    }
  }).length

describe("HeliaStore: embedded node", () => {
  // Its start time (milliseconds) is a figure of bench/memory.ts.
  it.live("starts with no networking: no socket opened", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      // The first start also loads helia's modules; check a second one.
      yield* Effect.scoped(Layer.build(HeliaStore.layer({ dataDir })))
      const before = openSockets()
      yield* Effect.scoped(
        Effect.gen(function*() {
          yield* Layer.build(HeliaStore.layer({ dataDir }))
          assert.strictEqual(openSockets(), before)
        })
      )
    }), 20_000)

  it.live("without peers or a listen address it has no peer id and no addresses", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      const node = yield* HeliaNode.pipe(Effect.provide(HeliaStore.layerWithNode({ dataDir, peers: [], listen: [] })))
      assert.isUndefined(node.peerId)
      assert.deepStrictEqual(yield* node.addresses, [])
      assert.deepStrictEqual(yield* node.connectedPeers, [])
    }))

  it.live("keeps its repository in <dataDir>/ipfs", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      yield* GradientStore.use((store) => store.add(new Uint8Array([1, 2, 3]))).pipe(
        Effect.provide(HeliaStore.layer({ dataDir }))
      )
      assert.deepStrictEqual(readdirSync(dataDir), ["ipfs"])
      assert.sameMembers(readdirSync(join(dataDir, "ipfs")), ["blocks", "datastore"])
    }))

  it.live("content with repeated chunks (zeroed regions) is freed entirely after unpin + gc", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      yield* GradientStore.use((store) =>
        Effect.gen(function*() {
          // 8 identical zero chunks + 1 distinct chunk + root = 3 distinct blocks.
          const bytes = new Uint8Array(9 * 262_144)
          bytes.set(deterministicBytes(262_144, 5), 8 * 262_144)
          const cid = yield* store.add(bytes)
          yield* store.unpin(cid)
          assert.strictEqual(yield* store.gc, 3)
        })
      ).pipe(Effect.provide(HeliaStore.layer({ dataDir })))
    }))

  it.live("two pins sharing blocks: unpinning, re-pinning and unpinning one never frees the other's blocks", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      yield* GradientStore.use((store) =>
        Effect.gen(function*() {
          const shared = new Uint8Array(262_144) // one zero chunk both files contain
          const a = new Uint8Array([...shared, ...deterministicBytes(1000, 1)])
          const b = new Uint8Array([...shared, ...deterministicBytes(1000, 2)])
          const aCid = yield* store.add(a)
          const bCid = yield* store.add(b)
          yield* store.unpin(aCid)
          yield* store.add(a)
          yield* store.unpin(aCid)
          assert.strictEqual(yield* store.gc, 2) // a's own leaf and root
          assert.deepStrictEqual(yield* store.get(bCid, b.length), b)
        })
      ).pipe(Effect.provide(HeliaStore.layer({ dataDir })))
    }))

  it.live("content the node does not hold is a ValidationError at once (no network to wait on)", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      const error = yield* GradientStore.use((store) => Effect.flip(store.get("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH", 10))).pipe(
        Effect.provide(HeliaStore.layer({ dataDir }))
      )
      assert.strictEqual(error._tag, "ValidationError")
      assert.include(error.message, "not in the embedded IPFS store")
    }))

  it.live("one node per repository: a second open is refused while the first holds it, a dead holder's lock is taken over", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Layer.build(HeliaStore.layer({ dataDir }))
        const busy = yield* Effect.flip(Effect.scoped(Layer.build(HeliaStore.layer({ dataDir }))))
        assert.strictEqual(busy._tag, "ResourceError")
        assert.include(busy.message, "already open")
      }))
      // A lock naming a process that no longer exists (pid far above pid_max).
      writeFileSync(join(dataDir, "ipfs", "repo.lock"), "4194305")
      const pins = yield* GradientStore.use((store) => store.pins).pipe(Effect.provide(HeliaStore.layer({ dataDir })))
      assert.deepStrictEqual(pins, [])
      // A lock naming a live process (ours is the test runner's parent: alive) refuses.
      writeFileSync(join(dataDir, "ipfs", "repo.lock"), String(process.ppid))
      const held = yield* Effect.flip(Effect.scoped(Layer.build(HeliaStore.layer({ dataDir }))))
      assert.strictEqual(held._tag, "ResourceError")
      assert.include(held.message, `in use by process ${process.ppid}`)
    }))

  it.live("a data dir that cannot be created fails the layer with a typed error naming the path", () =>
    Effect.gen(function*() {
      const dir = yield* tempDataDir
      const file = join(dir, "a-file")
      writeFileSync(file, "")
      const error = yield* Effect.flip(Effect.scoped(Layer.build(HeliaStore.layer({ dataDir: join(file, "data") }))))
      assert.strictEqual(error._tag, "ValidationError")
      assert.include(error.message, join(file, "data", "ipfs"))
      assert.isDefined(error.hint)
    }))
})
