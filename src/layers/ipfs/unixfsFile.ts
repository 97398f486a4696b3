import { createHash } from "node:crypto"
import { setImmediate } from "node:timers/promises"
import { CID } from "multiformats/cid"
import * as Digest from "multiformats/hashes/digest"

/**
 * A file as `ipfs add` imports it (UnixFS, dag-pb leaves of type "file", fixed-size chunks, balanced layout, CIDv0),
 * built while streaming, without the garbage of ipfs-unixfs-importer: that one builds two 256 KiB copies per leaf
 * (the UnixFS message, then the dag-pb block), 200 MB of short-lived buffers for a 100 MB gradient, and V8 lets
 * ~64 MB of them pile up before it collects (0.54–0.66× the gradient at the peak, bench/memory.ts). Here:
 * - for the CID alone, each leaf is hashed from its protobuf framing and a view of the content: no block is built;
 * - to store, each leaf block is built in one reused buffer, written, and only then is the buffer refilled.
 * A file costs a chunk of staging (used only when a chunk spans two input pieces), a block buffer, ~10 KB per
 * parent node, and its leaves' CIDs.
 *
 * The blocks are the importer's byte for byte (`leafFraming`, `parentBlock`): test/unit/ipfs-file-cid.test.ts checks
 * CIDs and blocks against `importFile` on trees of every depth, test/unit/ipfs-cid.test.ts against an independent
 * encoder, and the store contract the golden CIDs on Helia and a Kubo-RPC daemon.
 */

export interface FileDagShape {
  readonly chunkSize: number
  readonly maxChildrenPerNode: number
}

/** A node already hashed: what its parent's link and UnixFS blocksizes need of it. */
interface Child {
  /** sha2-256 multihash: the bytes of its CIDv0. */
  readonly multihash: Uint8Array
  /** The node's block plus every block below it (a dag-pb link's Tsize). */
  readonly tsize: number
  /** The file bytes under the node (the parent's blocksizes entry). */
  readonly fileSize: number
}

const SHA2_256 = 0x12

const varintLength = (value: number): number => {
  let n = 1
  while (value >= 0x80) {
    value = Math.floor(value / 0x80)
    n++
  }
  return n
}

/** Writes `value` as a protobuf varint at `offset`; returns the offset after it. */
const writeVarint = (out: Uint8Array, offset: number, value: number): number => {
  while (value >= 0x80) {
    out[offset++] = (value % 0x80) | 0x80
    value = Math.floor(value / 0x80)
  }
  out[offset++] = value
  return offset
}

const multihashOf = (...parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const hash = createHash("sha256")
  for (const part of parts) hash.update(part)
  const out = new Uint8Array(34)
  out[0] = SHA2_256
  out[1] = 32
  out.set(hash.digest(), 2)
  return out
}

/**
 * A leaf block is PBNode{Data: UnixFS{Type: File, Data: chunk, filesize: n}}: its bytes are a prefix, the chunk, and
 * a suffix. An empty chunk (the empty file) has no Data field: ipfs-unixfs drops empty data.
 */
const leafFraming = (n: number): { readonly prefix: Uint8Array; readonly suffix: Uint8Array; readonly blockLength: number } => {
  const dataField = n === 0 ? 0 : 1 + varintLength(n) + n
  const unixfsLength = 2 + dataField + 1 + varintLength(n)
  const prefix = new Uint8Array(1 + varintLength(unixfsLength) + 2 + (n === 0 ? 0 : 1 + varintLength(n)))
  prefix[0] = 0x0a
  let at = writeVarint(prefix, 1, unixfsLength)
  prefix[at++] = 0x08
  prefix[at++] = 0x02
  if (n > 0) {
    prefix[at++] = 0x12
    writeVarint(prefix, at, n)
  }
  const suffix = new Uint8Array(1 + varintLength(n))
  suffix[0] = 0x18
  writeVarint(suffix, 1, n)
  return { prefix, suffix, blockLength: 1 + varintLength(unixfsLength) + unixfsLength }
}

/**
 * A parent block: PBNode{Links: [{Hash, Name: "", Tsize}…], Data: UnixFS{Type: File, filesize, blocksizes…}}, links
 * first as dag-pb encodes them.
 */
const parentBlock = (children: ReadonlyArray<Child>): Uint8Array => {
  const fileSize = children.reduce((sum, child) => sum + child.fileSize, 0)
  const linkLengths = children.map((child) => 2 + child.multihash.length + 2 + 1 + varintLength(child.tsize))
  const unixfsLength = 2 + 1 + varintLength(fileSize) +
    children.reduce((sum, child) => sum + 1 + varintLength(child.fileSize), 0)
  const length = linkLengths.reduce((sum, l) => sum + 1 + varintLength(l) + l, 0) +
    1 + varintLength(unixfsLength) + unixfsLength
  const out = new Uint8Array(length)
  let at = 0
  for (const [i, child] of children.entries()) {
    out[at++] = 0x12
    at = writeVarint(out, at, linkLengths[i]!)
    out[at++] = 0x0a
    out[at++] = child.multihash.length
    out.set(child.multihash, at)
    at += child.multihash.length
    out[at++] = 0x12
    out[at++] = 0x00
    out[at++] = 0x18
    at = writeVarint(out, at, child.tsize)
  }
  out[at++] = 0x0a
  at = writeVarint(out, at, unixfsLength)
  out[at++] = 0x08
  out[at++] = 0x02
  out[at++] = 0x18
  at = writeVarint(out, at, fileSize)
  for (const child of children) {
    out[at++] = 0x20
    at = writeVarint(out, at, child.fileSize)
  }
  return out
}

/** Hashing 16 MiB takes ~10 ms: a pause to the event loop after each keeps other fibers (and interrupts) moving. */
const YIELD_EVERY_BYTES = 16 << 20

const cidOfMultihash = (multihash: Uint8Array): CID => CID.createV0(Digest.create(SHA2_256, multihash.subarray(2)))

/** Where built blocks go; a block's bytes may be reused once its `put` has resolved. */
export type BlockSink = (cid: CID, bytes: Uint8Array) => Promise<unknown>

export interface ImportedFile {
  readonly cid: CID
  /** The leaves' CIDs (blocks without links), in file order, repeated chunks repeated. */
  readonly leaves: ReadonlyArray<CID>
}

const buildFile = async (
  content: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  shape: FileDagShape,
  sink: BlockSink | undefined,
  signal: AbortSignal | undefined
): Promise<ImportedFile> => {
  const { chunkSize, maxChildrenPerNode } = shape
  // One child per node would never reach a root; the importer loops on it too.
  if (!(chunkSize >= 1 && maxChildrenPerNode >= 2)) throw new RangeError(`unusable DAG shape ${JSON.stringify(shape)}`)
  signal?.throwIfAborted()
  const leaves: Array<CID> = []
  // levels[k] holds the nodes of height k (0: leaves) not yet grouped under a parent, counts[k] how many that level
  // has had in all: a level of one node is the root, as in ipfs-unixfs-importer's balanced layout.
  const levels: Array<Array<Child>> = [[]]
  const counts: Array<number> = [0]
  const push = async (level: number, node: Child): Promise<void> => {
    if (levels.length === level) {
      levels.push([])
      counts.push(0)
    }
    levels[level]!.push(node)
    counts[level]!++
    if (levels[level]!.length === maxChildrenPerNode) await push(level + 1, await parentOf(levels[level]!.splice(0)))
  }
  const parentOf = async (children: ReadonlyArray<Child>): Promise<Child> => {
    const block = parentBlock(children)
    const multihash = multihashOf(block)
    if (sink !== undefined) await sink(cidOfMultihash(multihash), block)
    return {
      multihash,
      tsize: children.reduce((sum, child) => sum + child.tsize, block.length),
      fileSize: children.reduce((sum, child) => sum + child.fileSize, 0)
    }
  }

  const fullFraming = leafFraming(chunkSize)
  let blockBuffer: Uint8Array | undefined
  const leaf = async (chunk: Uint8Array): Promise<void> => {
    const framing = chunk.length === chunkSize ? fullFraming : leafFraming(chunk.length)
    let multihash: Uint8Array
    if (sink === undefined) {
      multihash = multihashOf(framing.prefix, chunk, framing.suffix)
    } else {
      blockBuffer ??= new Uint8Array(fullFraming.blockLength)
      const block = blockBuffer.subarray(0, framing.blockLength)
      block.set(framing.prefix, 0)
      block.set(chunk, framing.prefix.length)
      block.set(framing.suffix, framing.prefix.length + chunk.length)
      multihash = multihashOf(block)
      await sink(cidOfMultihash(multihash), block)
    }
    leaves.push(cidOfMultihash(multihash))
    await push(0, { multihash, tsize: framing.blockLength, fileSize: chunk.length })
  }

  let staging: Uint8Array | undefined
  let staged = 0
  let sinceYield = 0
  const pieces = content instanceof Uint8Array ? [content] : content
  for await (const piece of pieces) {
    let offset = 0
    if (staged > 0) {
      const take = Math.min(chunkSize - staged, piece.length)
      staging!.set(piece.subarray(0, take), staged)
      staged += take
      offset = take
      if (staged === chunkSize) {
        await leaf(staging!)
        staged = 0
      }
    }
    while (piece.length - offset >= chunkSize) {
      await leaf(piece.subarray(offset, offset + chunkSize))
      offset += chunkSize
      sinceYield += chunkSize
      if (sinceYield >= YIELD_EVERY_BYTES) {
        sinceYield = 0
        await setImmediate()
        signal?.throwIfAborted()
      }
    }
    if (offset < piece.length) {
      staging ??= new Uint8Array(chunkSize)
      staging.set(piece.subarray(offset), staged)
      staged += piece.length - offset
    }
    signal?.throwIfAborted()
  }
  // The chunker yields the remainder, or one empty chunk for an empty file.
  if (staged > 0 || counts[0] === 0) await leaf(staging === undefined ? new Uint8Array(0) : staging.subarray(0, staged))

  // One leaf is the file itself (reduceSingleLeafToSelf); otherwise every level is grouped until one node is left.
  let level = 0
  while (!(counts[level] === 1 && levels.length === level + 1)) {
    if (levels[level]!.length > 0) await push(level + 1, await parentOf(levels[level]!.splice(0)))
    level++
  }
  return { cid: cidOfMultihash(levels[level]![0]!.multihash), leaves }
}

/**
 * The CIDv0 of `content` imported as one UnixFS file with `shape` (Kubo's: 262,144-byte chunks, at most 174 links
 * per node), storing nothing. `content` is the bytes, or pieces of them in order (a stream's chunks): pieces are
 * read, never kept.
 */
export const unixfsFileCid = async (
  content: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  shape: FileDagShape,
  signal?: AbortSignal
): Promise<CID> => (await buildFile(content, shape, undefined, signal)).cid

/** The same file, each block given to `put` (awaited, one at a time: the leaf buffer is reused after it). */
export const writeUnixfsFile = (
  content: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  shape: FileDagShape,
  put: BlockSink,
  signal?: AbortSignal
): Promise<ImportedFile> => buildFile(content, shape, put, signal)
