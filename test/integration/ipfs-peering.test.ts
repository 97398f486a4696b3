import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Exit, Layer, Scope } from "effect"
import { HeliaNode } from "../../src/layers/ipfs/HeliaNode.ts"
import { HeliaStore, type HeliaStoreOptions } from "../../src/layers/ipfs/HeliaStore.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { deterministicBytes } from "../support/storeContract.ts"

/**
 * Content reachability (DESIGN.md "Verification"): two embedded nodes in one process, A listening on loopback, B
 * with A as its peer, fetch each other's content over bitswap, checked against its CID.
 */

const tempDataDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "r3mes-peering-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** A loopback port free now, so A can be restarted on the same address. */
const freePort = Effect.promise(() =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))))
    })
  })
)

/** A node opened in its own scope, so a test can stop it (close) and open it again on the same repository. */
const openNode = Effect.fnUntraced(function*(options: HeliaStoreOptions) {
  const scope = yield* Scope.make()
  const context = yield* Layer.buildWithScope(HeliaStore.layerWithNode(options), scope)
  yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
  return {
    store: Context.get(context, GradientStore),
    node: Context.get(context, HeliaNode),
    close: Scope.close(scope, Exit.void)
  }
})

const fetchTimeout = Duration.seconds(3)
const mib = 1024 * 1024

/** A listening on a fixed loopback port, B peering with it. */
const pair = Effect.gen(function*() {
  const listen = [`/ip4/127.0.0.1/tcp/${yield* freePort}`]
  const dirA = yield* tempDataDir
  const dirB = yield* tempDataDir
  const a = yield* openNode({ dataDir: dirA, listen })
  const addresses = yield* a.node.addresses
  const b = yield* openNode({ dataDir: dirB, peers: addresses, fetchTimeout, redialInterval: Duration.millis(300) })
  return { a, b, dirA, listen, addresses }
})

describe("HeliaStore: content reachability between embedded nodes", () => {
  it.live("B fetches over bitswap what A added, byte for byte", () =>
    Effect.gen(function*() {
      const { a, addresses, b } = yield* pair
      assert.isDefined(a.node.peerId)
      assert.lengthOf(addresses, 1)
      assert.match(addresses[0]!, new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${a.node.peerId}$`))
      assert.deepStrictEqual(yield* b.node.addresses, [], "B does not listen")
      // Three 256 KiB chunks and their root: a DAG, not one block.
      const bytes = deterministicBytes(700_000, 11)
      const cid = yield* a.store.add(bytes)
      const got = yield* b.store.get(cid, mib)
      assert.deepStrictEqual(got, bytes)
      assert.include(yield* b.node.connectedPeers, a.node.peerId!)
    }), 60_000)

  it.live("a CID no peer has fails with a TimeoutError within the fetch timeout", () =>
    Effect.gen(function*() {
      const { b } = yield* pair
      const missing = yield* b.store.computeCid(deterministicBytes(1000, 12))
      const started = Date.now()
      const error = yield* Effect.flip(b.store.get(missing, mib))
      const elapsed = Date.now() - started
      assert.strictEqual(error._tag, "TimeoutError")
      assert.include(error.message, missing)
      assert.isAtLeast(elapsed, Duration.toMillis(fetchTimeout) - 100)
      assert.isBelow(elapsed, Duration.toMillis(fetchTimeout) + 2000)
    }), 60_000)

  it.live("the caller's own timeout interrupts a fetch", () =>
    Effect.gen(function*() {
      const { b } = yield* pair
      const missing = yield* b.store.computeCid(deterministicBytes(1000, 13))
      const started = Date.now()
      const exit = yield* Effect.exit(b.store.get(missing, mib).pipe(Effect.timeout(Duration.millis(500))))
      assert.isTrue(Exit.isFailure(exit))
      assert.isBelow(Date.now() - started, 1500)
    }), 60_000)

  it.live("A restarted keeps its peer id and address; B reconnects and fetches what A added since", () =>
    Effect.gen(function*() {
      const { a, addresses, b, dirA, listen } = yield* pair
      const before = yield* a.store.add(deterministicBytes(5000, 14))
      assert.deepStrictEqual(yield* b.store.get(before, mib), deterministicBytes(5000, 14))
      yield* a.close
      const again = yield* openNode({ dataDir: dirA, listen })
      assert.strictEqual(again.node.peerId, a.node.peerId)
      assert.deepStrictEqual(yield* again.node.addresses, addresses)
      const bytes = deterministicBytes(300_000, 15)
      const cid = yield* again.store.add(bytes)
      assert.deepStrictEqual(yield* b.store.get(cid, mib), bytes)
    }), 60_000)

  it.live("B started while A is down connects once A comes up (redialled, not only at start)", () =>
    Effect.gen(function*() {
      const listen = [`/ip4/127.0.0.1/tcp/${yield* freePort}`]
      const dirA = yield* tempDataDir
      const first = yield* openNode({ dataDir: dirA, listen })
      const addresses = yield* first.node.addresses
      yield* first.close
      const b = yield* openNode({ dataDir: yield* tempDataDir, peers: addresses, fetchTimeout, redialInterval: Duration.millis(300) })
      // libp2p's own start-up dial has failed by now, and its reconnect queue only follows a dropped connection.
      yield* Effect.sleep(Duration.seconds(1))
      const a = yield* openNode({ dataDir: dirA, listen })
      const bytes = deterministicBytes(4000, 17)
      const cid = yield* a.store.add(bytes)
      assert.deepStrictEqual(yield* b.store.get(cid, mib), bytes)
    }), 60_000)

  it.live("content that does not match its CID is refused", () =>
    Effect.gen(function*() {
      const { a, b, dirA } = yield* pair
      const bytes = deterministicBytes(600_000, 16)
      const cid = yield* a.store.add(bytes)
      // A's leaf blocks (the 256 KiB files; the root is a few hundred bytes) are altered on disk, length kept: A
      // serves bytes whose hash is not the CID B asks for.
      const files = (dir: string): Array<string> =>
        readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
          entry.isDirectory() ? files(join(dir, entry.name)) : [join(dir, entry.name)]
        )
      const leaves = files(join(dirA, "ipfs", "blocks")).filter((file) => statSync(file).size > 100_000)
      assert.isAtLeast(leaves.length, 2)
      for (const leaf of leaves) {
        const content = readFileSync(leaf)
        const middle = content.length >> 1
        content.writeUInt8(content.readUInt8(middle) ^ 0xff, middle)
        writeFileSync(leaf, content)
      }
      const exit = yield* Effect.exit(b.store.get(cid, mib))
      assert.isTrue(Exit.isFailure(exit), "altered content was returned")
    }), 60_000)

  it.live("a listen address in use is refused with the port named and a hint", () =>
    Effect.gen(function*() {
      const { listen } = yield* pair
      const dataDir = yield* tempDataDir
      const error = yield* Effect.flip(openNode({ dataDir, listen }))
      assert.strictEqual(error._tag, "ResourceError")
      assert.include(error.message, "EADDRINUSE")
      assert.include(error.hint ?? "", "R3MES_IPFS_LISTEN")
    }), 60_000)

  it.live("a peer address without its /p2p/<peer id> is refused at start with a hint", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDataDir
      const error = yield* Effect.flip(openNode({ dataDir, peers: ["/ip4/127.0.0.1/tcp/4011"] }))
      assert.strictEqual(error._tag, "ValidationError")
      assert.include(error.hint ?? "", "/p2p/")
    }))
})
