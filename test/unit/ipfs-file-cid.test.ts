import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { importFile, type WritableStorage } from "ipfs-unixfs-importer"
import { fixedSize } from "ipfs-unixfs-importer/chunker"
import { balanced } from "ipfs-unixfs-importer/layout"
import type { CID } from "multiformats/cid"
import { unixfsImporterOptions } from "../../src/layers/ipfs/importOptions.ts"
import { type FileDagShape, unixfsFileCid, writeUnixfsFile } from "../../src/layers/ipfs/unixfsFile.ts"
import { deterministicBytes } from "../support/storeContract.ts"

// unixfsFileCid hashes the blocks ipfs-unixfs-importer would build without building them, writeUnixfsFile builds
// them. Tiny chunks and fan-outs give trees of every depth in a few bytes; test/unit/ipfs-cid.test.ts checks Kubo's
// own shape against an independent encoder, the store contract against Helia and a Kubo-RPC daemon.

const discard: WritableStorage = { put: async (cid: CID) => cid }

/** What ipfs-unixfs-importer gives the same bytes with the same shape and the stores' other settings. */
const importerCid = async (bytes: Uint8Array, shape: FileDagShape, blockstore = discard): Promise<string> => {
  const { cid } = await importFile({ content: bytes }, blockstore, {
    ...unixfsImporterOptions,
    chunker: fixedSize({ chunkSize: shape.chunkSize }),
    layout: balanced({ maxChildrenPerNode: shape.maxChildrenPerNode })
  })
  return cid.toString()
}

/** The bytes cut into pieces of the given lengths (cycled), as a stream delivers them. */
async function* inPieces(bytes: Uint8Array, lengths: ReadonlyArray<number>) {
  for (let offset = 0, i = 0; offset < bytes.length; i++) {
    const length = lengths[i % lengths.length]!
    yield bytes.subarray(offset, offset + length)
    offset += length
  }
}

describe("unixfsFileCid = ipfs-unixfs-importer", () => {
  it("every tree depth: files of 0…200 chunks with 2, 3 and 174 links per node", async () => {
    for (const maxChildrenPerNode of [2, 3, 174]) {
      const shape = { chunkSize: 4, maxChildrenPerNode }
      for (const size of [0, 1, 3, 4, 5, 8, 9, 12, 13, 16, 17, 27 * 4, 27 * 4 + 1, 174 * 4, 175 * 4 + 2, 800]) {
        const bytes = deterministicBytes(size, size + maxChildrenPerNode)
        assert.strictEqual(
          (await unixfsFileCid(bytes, shape)).toString(),
          await importerCid(bytes, shape),
          `${size} bytes, ${maxChildrenPerNode} links`
        )
      }
    }
  })

  it("any size, shape and cut into pieces (fast-check)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 3000 }),
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 2, max: 6 }),
        fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 5 }),
        fc.integer(),
        async (size, chunkSize, maxChildrenPerNode, pieces, seed) => {
          const shape = { chunkSize, maxChildrenPerNode }
          const bytes = deterministicBytes(size, seed)
          const expected = await importerCid(bytes, shape)
          assert.strictEqual((await unixfsFileCid(bytes, shape)).toString(), expected)
          assert.strictEqual((await unixfsFileCid(inPieces(bytes, pieces), shape)).toString(), expected)
        }
      ),
      { numRuns: 150 }
    )
  })

  it("varints past one byte: chunk sizes and Tsize over 127, 16,383 and 2,097,151", async () => {
    const bytes = deterministicBytes(3 * 2_100_000 + 5, 3)
    for (const shape of [{ chunkSize: 2_100_000, maxChildrenPerNode: 2 }, { chunkSize: 16_400, maxChildrenPerNode: 174 }]) {
      assert.strictEqual((await unixfsFileCid(bytes, shape)).toString(), await importerCid(bytes, shape))
    }
  })

  it("writeUnixfsFile writes the importer's blocks (same CIDs, same bytes), and lists the leaves", async () => {
    for (const [size, shape] of [
      [0, { chunkSize: 4, maxChildrenPerNode: 2 }],
      [3, { chunkSize: 4, maxChildrenPerNode: 2 }],
      [203, { chunkSize: 4, maxChildrenPerNode: 3 }],
      [1_000_000, { chunkSize: 262_144, maxChildrenPerNode: 174 }]
    ] as const) {
      const bytes = deterministicBytes(size, size)
      const expected = new Map<string, string>()
      const rootCid = await importerCid(bytes, shape, {
        put: async (cid: CID, block: Uint8Array) => {
          expected.set(cid.toString(), Buffer.from(block).toString("hex"))
          return cid
        }
      })
      const written = new Map<string, string>()
      const imported = await writeUnixfsFile(bytes, shape, async (cid, block) => {
        written.set(cid.toString(), Buffer.from(block).toString("hex"))
      })
      assert.strictEqual(imported.cid.toString(), rootCid)
      assert.deepStrictEqual(written, expected, `${size} bytes`)
      const leaves = [...expected].filter(([, hex]) => !hex.startsWith("12")).map(([cid]) => cid)
      assert.sameMembers([...new Set(imported.leaves.map(String))], leaves)
      assert.strictEqual(imported.leaves.length, Math.max(1, Math.ceil(size / shape.chunkSize)))
    }
  })

  it("stops at an aborted signal", async () => {
    const controller = new AbortController()
    controller.abort(new Error("stop"))
    const failure = await unixfsFileCid(new Uint8Array(10), { chunkSize: 4, maxChildrenPerNode: 2 }, controller.signal)
      .then(() => undefined, (error: unknown) => error)
    assert.instanceOf(failure, Error)
  })
})
