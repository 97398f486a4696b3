import { createHash } from "node:crypto"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import fc from "fast-check"
import { cidOf, computeCid, kuboAddOptions, kuboDefaults } from "../../src/layers/ipfs/importOptions.ts"
import { deterministicBytes, golden, multiChunk } from "../support/storeContract.ts"

// ---------------------------------------------------------------------------------------------------------------
// An independent CIDv0 encoder, written from the formats and from go-unixfs's balanced builder (not from the JS
// importer): UnixFS `Data` protobuf inside a dag-pb `PBNode`, sha2-256, base58btc. It shares no code with the miner.

const varint = (value: number): Uint8Array => {
  const out: Array<number> = []
  let n = value
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80)
    n = Math.floor(n / 0x80)
  }
  out.push(n)
  return Uint8Array.from(out)
}
const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => new Uint8Array(Buffer.concat(parts))
const varintField = (field: number, value: number) => concat([varint(field << 3), varint(value)])
const bytesField = (field: number, bytes: Uint8Array) => concat([varint((field << 3) | 2), varint(bytes.length), bytes])

const base58 = (bytes: Uint8Array): string => {
  const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
  let n = 0n
  for (const b of bytes) n = (n << 8n) | BigInt(b)
  let out = ""
  while (n > 0n) {
    out = alphabet[Number(n % 58n)] + out
    n /= 58n
  }
  for (const b of bytes) {
    if (b !== 0) break
    out = `1${out}`
  }
  return out
}

interface Node {
  /** sha2-256 multihash: the CIDv0's bytes. */
  readonly multihash: Uint8Array
  /** File bytes under this node (UnixFS filesize). */
  readonly fileSize: number
  /** The block plus everything below it (dag-pb Tsize). */
  readonly treeSize: number
}

const node = (links: ReadonlyArray<Node>, unixfs: Uint8Array): Node => {
  const block = concat([
    // dag-pb writes Links (field 2) before Data (field 1); each PBLink is Hash, Name (always written, ""), Tsize.
    ...links.map((link) =>
      bytesField(2, concat([bytesField(1, link.multihash), bytesField(2, new Uint8Array(0)), varintField(3, link.treeSize)]))
    ),
    bytesField(1, unixfs)
  ])
  const multihash = concat([Uint8Array.from([0x12, 0x20]), createHash("sha256").update(block).digest()])
  const fileSize = links.length === 0 ? 0 : links.reduce((n, l) => n + l.fileSize, 0)
  return { multihash, fileSize, treeSize: block.length + links.reduce((n, l) => n + l.treeSize, 0) }
}

/** UnixFS Data { Type: File = 2, Data, filesize, blocksizes* }. */
const leaf = (chunk: Uint8Array): Node => {
  const built = node([], concat([varintField(1, 2), chunk.length > 0 ? bytesField(2, chunk) : new Uint8Array(0), varintField(3, chunk.length)]))
  return { ...built, fileSize: chunk.length }
}
const parent = (children: ReadonlyArray<Node>): Node =>
  node(children, concat([
    varintField(1, 2),
    varintField(3, children.reduce((n, c) => n + c.fileSize, 0)),
    ...children.map((c) => varintField(4, c.fileSize))
  ]))

/** go-unixfs's balanced layout: grow the root one level at a time, filling each new level depth-first. */
const independentCid = (bytes: Uint8Array, chunkSize = 262_144, maxLinks = 174): string => {
  const chunks: Array<Uint8Array> = []
  for (let offset = 0; offset < bytes.length; offset += chunkSize) chunks.push(bytes.subarray(offset, offset + chunkSize))
  let next = 0
  const done = () => next >= chunks.length
  if (chunks.length === 0) return base58(leaf(new Uint8Array(0)).multihash)
  const fill = (children: Array<Node>, depth: number): Node => {
    while (children.length < maxLinks && !done()) {
      children.push(depth === 1 ? leaf(chunks[next++]!) : fill([], depth - 1))
    }
    return parent(children)
  }
  let root = leaf(chunks[next++]!)
  for (let depth = 1; !done(); depth++) root = fill([root], depth)
  return base58(root.multihash)
}

// ---------------------------------------------------------------------------------------------------------------

describe("import options: Kubo's defaults, explicit", () => {
  it("CIDv0, no raw leaves, 262144-byte chunks, balanced 174 links; the same for the Kubo RPC", () => {
    assert.deepStrictEqual(kuboDefaults, { cidVersion: 0, rawLeaves: false, chunkSize: 262_144, maxChildrenPerNode: 174 })
    assert.strictEqual(kuboAddOptions.chunker, "size-262144")
    assert.strictEqual(kuboAddOptions.cidVersion, 0)
    assert.strictEqual(kuboAddOptions.rawLeaves, false)
    assert.strictEqual(kuboAddOptions.trickle, false)
  })

  it("the independent encoder gives the well-known CIDs", () => {
    assert.strictEqual(independentCid(new TextEncoder().encode(golden.text)), golden.cid)
    assert.strictEqual(independentCid(new Uint8Array(0)), golden.emptyCid)
  })
})

describe("computeCid = the independent encoder", () => {
  const sizes: ReadonlyArray<[string, number]> = [
    ["empty", 0],
    ["1 byte", 1],
    ["one chunk exactly", 262_144],
    ["one chunk + 1", 262_145],
    ["174 chunks exactly (one full level)", 174 * 262_144],
    ["175 chunks (a second level)", 175 * 262_144 + 7]
  ]
  it.effect.each(sizes)("%s", ([, size]) =>
    Effect.gen(function*() {
      const bytes = deterministicBytes(size, size + 1)
      assert.strictEqual(yield* computeCid(bytes), independentCid(bytes))
    }), 30_000)

  it.effect("golden: \"hello world\\n\" and the contract's multi-chunk file", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* computeCid(new TextEncoder().encode(golden.text)), golden.cid)
      const bytes = multiChunk.bytes()
      assert.strictEqual(independentCid(bytes), multiChunk.cid)
      assert.strictEqual(yield* computeCid(bytes), multiChunk.cid)
    }))

  it("any content up to four chunks (fast-check)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 4 * 262_144 + 100 }), fc.integer(), async (size, seed) => {
        const bytes = deterministicBytes(size, seed)
        assert.strictEqual((await cidOf(bytes)).toString(), independentCid(bytes))
      }),
      { numRuns: 25 }
    )
  })

  it("a stream of uneven pieces gets the CID of the whole", async () => {
    const bytes = deterministicBytes(3 * 262_144 + 999, 8)
    async function* pieces() {
      for (let offset = 0, step = 1; offset < bytes.length; offset += step, step = (step * 7) % 100_003 + 1) {
        yield bytes.subarray(offset, offset + step)
      }
    }
    assert.strictEqual((await cidOf(pieces())).toString(), independentCid(bytes))
  })
})
