import { Effect } from "effect"
import { fixedSize } from "ipfs-unixfs-importer/chunker"
import { balanced } from "ipfs-unixfs-importer/layout"
import type { ImportContent, ImporterOptions } from "ipfs-unixfs-importer"
import type { CID } from "multiformats/cid"
import type { MiningError } from "../../domain/errors.ts"
import { classify } from "../../domain/classify.ts"
import { type FileDagShape, unixfsFileCid } from "./unixfsFile.ts"

/**
 * Kubo's default `ipfs add` settings, spelled out: the same bytes get the same CID from a Kubo daemon, from the
 * embedded Helia node and from `computeCid`. Every value is explicit because the libraries' own defaults differ
 * (Helia and the importer default to CIDv1, raw leaves and, with a profile, 1 MiB chunks) and would silently win
 * over a missing one.
 */
export const kuboDefaults = {
  cidVersion: 0,
  rawLeaves: false,
  chunkSize: 262_144,
  maxChildrenPerNode: 174
} as const

/** The DAG shape of `kuboDefaults`, as unixfsFile.ts builds it. */
export const kuboFileShape: FileDagShape = {
  chunkSize: kuboDefaults.chunkSize,
  maxChildrenPerNode: kuboDefaults.maxChildrenPerNode
}

/**
 * The same settings for ipfs-unixfs-importer (and `@helia/unixfs`), the reference that unixfsFile.ts's blocks are
 * tested against: the stores build their DAGs with unixfsFile.ts, which makes the importer's blocks without its copies.
 */
export const unixfsImporterOptions: Omit<ImporterOptions, "onProgress" | "wrapWithDirectory"> = {
  cidVersion: kuboDefaults.cidVersion,
  rawLeaves: kuboDefaults.rawLeaves,
  // Leaves are dag-pb nodes holding a UnixFS "file" (not "raw") entry, as Kubo's without --raw-leaves.
  leafType: "file",
  // A one-chunk file is that chunk's node, not a parent with one link (Kubo's "hello world\n" is one block).
  reduceSingleLeafToSelf: true,
  chunker: fixedSize({ chunkSize: kuboDefaults.chunkSize }),
  layout: balanced({ maxChildrenPerNode: kuboDefaults.maxChildrenPerNode })
}

/** The same settings as `ipfs add` parameters of the Kubo RPC API (`/api/v0/add`). */
export const kuboAddOptions = {
  cidVersion: kuboDefaults.cidVersion,
  rawLeaves: kuboDefaults.rawLeaves,
  chunker: `size-${kuboDefaults.chunkSize}`,
  trickle: false,
  wrapWithDirectory: false,
  hashAlg: "sha2-256"
} as const

/**
 * The CID the stores give `content`, computed locally, storing nothing: streamed through `unixfsFileCid`, which
 * hashes each chunk where it lies (no block is built), so a 100 MB gradient costs no copy of itself.
 */
export const cidOf = (content: ImportContent, signal?: AbortSignal): Promise<CID> =>
  unixfsFileCid(content, kuboFileShape, signal)

/** `cidOf` as an effect: the CIDv0 string (`Qm…`) of `content`. */
export const computeCid = (content: ImportContent): Effect.Effect<string, MiningError> =>
  Effect.tryPromise({
    try: (signal) => cidOf(content, signal).then((cid) => cid.toString()),
    catch: (error) => classify(error, "computing the CID")
  })
