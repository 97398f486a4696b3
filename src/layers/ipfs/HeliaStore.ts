import { mkdir } from "node:fs/promises"
import { join } from "node:path"
import type { UnixFS } from "@helia/unixfs"
import type { FsBlockstore } from "blockstore-fs"
import type { FsDatastore } from "datastore-fs"
import type { Libp2p } from "@libp2p/interface"
import { Context, Duration, Effect, Layer, Semaphore } from "effect"
import type { GraphNode, GraphWalkerFactory, Helia } from "helia"
import { createUnsafe } from "multiformats/block"
import type { CID } from "multiformats/cid"
import { classify } from "../../domain/classify.ts"
import { type MiningError, TimeoutError, ValidationError } from "../../domain/errors.ts"
import { GradientStore } from "../../services/GradientStore.ts"
import { acquirePidLock } from "../process/pidLock.ts"
import { oversize, parseCid, readLimited, showCid } from "./content.ts"
import { HeliaNode } from "./HeliaNode.ts"
import {
  isNetworked,
  keepPeersConnected,
  listenAddresses,
  listenFailure,
  parsePeers,
  withNetworking
} from "./heliaNetworking.ts"
import { computeCid, kuboFileShape } from "./importOptions.ts"
import { writeUnixfsFile } from "./unixfsFile.ts"

export interface HeliaStoreOptions {
  /** The miner's data dir; the repository lives in `<dataDir>/ipfs` (blocks/ and datastore/). */
  readonly dataDir: string
  /** R3MES_IPFS_PEERS: multiaddrs ending in /p2p/<peer id>, dialled and kept connected. */
  readonly peers?: ReadonlyArray<string> | undefined
  /** R3MES_IPFS_LISTEN: multiaddrs to listen on. With neither peers nor listen the node opens no socket. */
  readonly listen?: ReadonlyArray<string> | undefined
  /**
   * Longest wait of one `get` for content the node does not hold (networked only), then a TimeoutError: a caller
   * without a timeout of its own (the verifier retries until its window) must not hang on content nobody has.
   */
  readonly fetchTimeout?: Duration.Duration | undefined
  /** How often a configured peer that is not connected is dialled again. */
  readonly redialInterval?: Duration.Duration | undefined
}

/** 30 s: a gradient of 100 MiB moves in a few seconds between peers on one network; a quarter of the verify window. */
const defaultFetchTimeout = Duration.seconds(30)
/** 2 s: a redial of a peer that is down costs one refused TCP connect. */
const defaultRedialInterval = Duration.seconds(2)

/** Where the embedded node keeps its repository inside the data dir. */
export const heliaRepoPath = (dataDir: string): string => join(dataDir, "ipfs")

interface Node {
  readonly helia: Helia
  readonly fs: UnixFS
  readonly blockstore: FsBlockstore
  readonly datastore: FsDatastore
  /** Present when networking is configured. */
  readonly libp2p: Libp2p | undefined
}

const errorName = (u: unknown): string | undefined =>
  typeof u === "object" && u !== null && "name" in u && typeof u.name === "string" ? u.name : undefined

const concat = async (chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<Uint8Array> => {
  const parts: Array<Uint8Array> = []
  for await (const part of chunks) parts.push(part)
  return parts.length === 1 ? parts[0]! : new Uint8Array(Buffer.concat(parts))
}

const blockKey = (cid: CID): string => Buffer.from(cid.multihash.bytes).toString("base64")

/** A dag-pb node without links: what a leaf of a UnixFS file decodes to, as far as a walk cares. */
const leafValue = { Links: [] } as const

/**
 * Walks a DAG visiting each distinct block once. Helia's own walkers visit a block once per link to it, and its
 * pin bookkeeping counts every visit: a file with repeated chunks (a gradient with zeroed regions) was left with a
 * negative pin count on `rm` and its blocks never freed. Deduplicating keeps the bookkeeping right and reads less.
 *
 * `leaves` are blocks known to have no links (the leaves `add` has just written): they are visited without being
 * read, since pinning needs only their CIDs, so pinning a 100 MB gradient reads its few parent nodes, not 100 MB.
 */
const eachBlockOnce = (leaves: ReadonlySet<string> = new Set()): GraphWalkerFactory => ({ blockstore, getCodec }) => ({
  async *walk(root, options = {}) {
    const maxDepth = options.depth ?? Infinity
    const seen = new Set<string>()
    const stack: Array<{ readonly cid: CID; readonly depth: number; readonly path: Array<CID> }> = [
      { cid: root, depth: 0, path: [root] }
    ]
    while (stack.length > 0) {
      const { cid, depth, path } = stack.pop()!
      const key = blockKey(cid)
      if (seen.has(key)) continue
      seen.add(key)
      options.signal?.throwIfAborted()
      if (leaves.has(key)) {
        yield { block: createUnsafe({ cid, bytes: new Uint8Array(0), value: leafValue }), depth, path } as GraphNode<any>
        continue
      }
      const bytes = await concat(blockstore.get(cid, options))
      const block = createUnsafe({ cid, bytes, codec: await getCodec(cid.code) })
      if (depth < maxDepth) {
        const children = [...block.links()].map(([, child]) => child)
        for (const child of children.reverse()) {
          if (options.includeChild?.(child, block) === false) continue
          stack.push({ cid: child, depth: depth + 1, path: [...path, child] })
        }
      }
      yield { block, depth, path } as GraphNode<any>
    }
  }
})

/** A repository that cannot be opened is most often a data dir that is not writable: say so. */
const openFailure = (repo: string) => (error: unknown): MiningError => {
  const classified = classify(error, `opening the embedded IPFS repository ${repo}`)
  return classified._tag === "ValidationError"
    ? new ValidationError({
      message: classified.message,
      ...(classified.cause === undefined ? {} : { cause: classified.cause }),
      hint: "is the data dir writable and undamaged? (try another --data-dir)"
    })
    : classified
}

/**
 * One node per repository, like Kubo's repo.lock: a gc in one node would delete the blocks another has imported and
 * not pinned yet.
 */
const lockRepo = Effect.fnUntraced(function*(repo: string) {
  yield* Effect.tryPromise({ try: () => mkdir(repo, { recursive: true }), catch: openFailure(repo) })
  yield* acquirePidLock({
    path: join(repo, "repo.lock"),
    what: `the embedded IPFS repository ${repo}`,
    resource: "ipfs repository",
    hint: "stop that r3mes-miner first, or give this command another --data-dir",
    sameProcessHint: "build one HeliaStore layer per data dir and share it"
  })
})

/**
 * Starts a Helia node on the (locked) repository. Without `listen` (and without peers, `networked`), with no
 * networking: `createHeliaLight` has no libp2p, no routers and no block brokers, so it opens no socket and starts in
 * milliseconds; content it does not hold is simply not found. Networked, it gains libp2p and bitswap
 * (heliaNetworking.ts), and fetched blocks are checked against their CIDs by Helia's blockstore.
 */
const open = (
  repo: string,
  networked: { readonly listen: ReadonlyArray<string> } | undefined
): Effect.Effect<Node, MiningError> =>
  Effect.tryPromise({
    try: async () => {
      // Loaded here, not at the top: helia's entry module brings libp2p and friends (~1 s of loading) that
      // `ipfs cid`, `--help` and a miner on Kubo never need.
      const [{ createHeliaLight }, { unixfs }, { FsBlockstore }, { FsDatastore }] = await Promise.all([
        import("helia"),
        import("@helia/unixfs"),
        import("blockstore-fs"),
        import("datastore-fs")
      ])
      const blockstore = new FsBlockstore(join(repo, "blocks"))
      const datastore = new FsDatastore(join(repo, "datastore"))
      let helia: Helia | undefined
      try {
        await blockstore.open()
        await datastore.open()
        const light = createHeliaLight({ blockstore, datastore })
        helia = networked === undefined ? light : await withNetworking(light, networked.listen)
        await helia.start()
        const libp2p = networked === undefined ? undefined : (helia as Helia & { readonly libp2p: Libp2p }).libp2p
        return { helia, fs: unixfs(helia), blockstore, datastore, libp2p }
      } catch (error) {
        // A listener bound before another failed must not outlive the failed start.
        await helia?.stop().catch(() => undefined)
        await Promise.allSettled([datastore.close(), blockstore.close()])
        throw error
      }
    },
    catch: (error) =>
      (networked === undefined ? undefined : listenFailure(networked.listen, error)) ?? openFailure(repo)(error)
  })

const close = ({ blockstore, datastore, helia }: Node) =>
  Effect.promise(async () => {
    await helia.stop().catch(() => undefined)
    await Promise.allSettled([datastore.close(), blockstore.close()])
  })

/**
 * The GradientStore port on an embedded Helia node whose repository lives in the data dir, and its HeliaNode
 * (networking) view.
 */
export const makeWithNode = Effect.fnUntraced(function*(options: HeliaStoreOptions) {
  const repo = heliaRepoPath(options.dataDir)
  const networking = { peers: options.peers ?? [], listen: options.listen ?? [] }
  const peers = yield* parsePeers(networking.peers)
  // Released in reverse: the node stops before its lock goes.
  yield* lockRepo(repo)
  const node = yield* Effect.acquireRelease(open(repo, isNetworked(networking) ? networking : undefined), close)
  const { fs, helia, libp2p } = node
  if (libp2p !== undefined) {
    yield* keepPeersConnected(libp2p, peers, options.redialInterval ?? defaultRedialInterval)
  }
  const fetchTimeout = options.fetchTimeout ?? defaultFetchTimeout
  // An add (import, then pin) must never interleave with a gc's mark and sweep, or the sweep could delete blocks
  // imported but not yet pinned: adds share the lock, gc takes all of it.
  const permits = 1 << 16
  const gcLock = yield* Semaphore.make(permits)

  const attempt = <A>(what: string, run: (signal: AbortSignal) => Promise<A>): Effect.Effect<A, MiningError> =>
    Effect.tryPromise({ try: run, catch: (error) => classify(error, `embedded IPFS: ${what}`) })

  const pinRecursively = async (cid: CID, leaves: ReadonlyArray<CID>, signal: AbortSignal) => {
    try {
      for await (const _ of helia.pins.add(cid, { signal, walker: eachBlockOnce(new Set(leaves.map(blockKey))) })) {
        // each yielded CID is one block of the DAG now marked as pinned
      }
    } catch (error) {
      // Adding the same content twice (or concurrently) pins it once: the pin is what the caller wanted.
      if (errorName(error) !== "AlreadyPinnedError") throw error
    }
  }

  /**
   * Imports with `writeUnixfsFile` rather than @helia/unixfs's `addBytes` (the same blocks, see unixfsFile.ts): a
   * 100 MB gradient is written from one reused block buffer instead of 200 MB of short-lived copies, and its pin
   * reads back only the parent nodes. Peak memory of the whole upload: bench/memory.ts.
   */
  const add = Effect.fn("HeliaStore.add")(function*(bytes: Uint8Array) {
    return yield* attempt("add", async (signal) => {
      const put = async (cid: CID, block: Uint8Array) => {
        await helia.blockstore.put(cid, block, { signal })
      }
      const { cid, leaves } = await writeUnixfsFile(bytes, kuboFileShape, put, signal)
      await pinRecursively(cid, leaves, signal)
      return showCid(cid)
    }).pipe(gcLock.withPermits(1))
  })

  const get = Effect.fn("HeliaStore.get")(function*(cidText: string, maxBytes: number) {
    const cid = yield* parseCid(cidText)
    // Networked, blocks this node lacks are asked of its peers over bitswap, until the fetch timeout; the caller's
    // own timeout or interruption aborts the same signal.
    const deadline = libp2p === undefined ? undefined : AbortSignal.timeout(Duration.toMillis(fetchTimeout))
    const reading = (signal: AbortSignal) => ({
      offline: libp2p === undefined,
      signal: deadline === undefined ? signal : AbortSignal.any([signal, deadline])
    })
    const notHere = (error: unknown): MiningError => {
      if (deadline?.aborted === true && libp2p !== undefined) {
        const connected = new Set(libp2p.getConnections().map((connection) => connection.remotePeer.toString())).size
        return new TimeoutError({
          message: `${cidText} was not found in the embedded IPFS store nor on its ${connected} connected peer(s) ` +
            `within ${Duration.format(fetchTimeout)}`,
          timeoutMs: Duration.toMillis(fetchTimeout),
          cause: error instanceof Error ? error.message : String(error),
          hint: connected === 0
            ? "no peer is connected: check R3MES_IPFS_PEERS and that those nodes are running and reachable"
            : "is the node that pinned it among R3MES_IPFS_PEERS (or connected to this node), and still running?"
        })
      }
      const name = errorName(error)
      return name === "BlockNotFoundWhileOfflineError" || name === "NotFoundError" || name === "LoadBlockFailedError"
        ? new ValidationError({
          message: `${cidText} is not in the embedded IPFS store`,
          field: "cid",
          cause: error instanceof Error ? error.message : String(error),
          hint: "the embedded node has no peers: only content added to this data dir can be read, unless " +
            "R3MES_IPFS_PEERS names a node that has it"
        })
        : classify(error, `embedded IPFS: get ${cidText}`)
    }
    const stat = yield* Effect.tryPromise({
      try: (signal) => fs.stat(cid, reading(signal)),
      catch: notHere
    })
    if (stat.type === "directory") {
      return yield* new ValidationError({ message: `${cidText} is a directory, not a gradient file`, field: "cid" })
    }
    // The root node states the file size: an oversize gradient is refused before its blocks are read.
    if (stat.size > BigInt(Math.floor(maxBytes))) return yield* oversize(cidText, stat.size, maxBytes, true)
    const read = yield* Effect.tryPromise({
      try: (signal) => readLimited(fs.cat(cid, reading(signal)), maxBytes, Number(stat.size)),
      catch: notHere
    })
    // The root's size field could lie; the stream is bounded anyway.
    if ("over" in read) return yield* oversize(cidText, read.over, maxBytes, false)
    return read.bytes
  })

  const unpin = Effect.fn("HeliaStore.unpin")(function*(cidText: string) {
    const cid = yield* parseCid(cidText)
    yield* attempt(`unpin ${cidText}`, async (signal) => {
      try {
        for await (const _ of helia.pins.rm(cid, { signal, walker: eachBlockOnce() })) {
          // each yielded CID is one block released by this pin
        }
      } catch (error) {
        // Not pinned: nothing to release, which is what an idempotent compensation needs.
        if (errorName(error) !== "NotFoundError") throw error
      }
    })
  })

  const pins = attempt("list pins", async (signal) => {
    const out: Array<string> = []
    for await (const pin of helia.pins.ls({ signal })) out.push(showCid(pin.cid))
    return out as ReadonlyArray<string>
  }).pipe(Effect.withSpan("HeliaStore.pins"))

  /**
   * Mark and sweep: every block reachable from a pin is kept, every other block deleted. Helia's `gc` trusts its
   * per-block pin counts, which its `rm` can corrupt (it keeps the wrong `pinnedBy` entries, so re-pinning content
   * that shares blocks with another pin under-counts them): a pinned gradient could lose blocks. Walking the pins
   * costs a read of the pinned content, and gc is rare.
   */
  const gc = attempt("gc", async (signal) => {
    const walker = eachBlockOnce()({ blockstore: node.blockstore, getCodec: helia.getCodec })
    const live = new Set<string>()
    for await (const pin of helia.pins.ls({ signal })) {
      try {
        for await (const visited of walker.walk(pin.cid, { signal, depth: pin.depth })) {
          live.add(blockKey(visited.block.cid))
        }
      } catch (error) {
        // Sweeping past a hole would delete the blocks below it, which the pin still needs.
        throw new ValidationError({
          message: `the embedded IPFS repository is damaged: pinned ${showCid(pin.cid)} cannot be walked, gc stopped`,
          cause: error instanceof Error ? error.message : String(error),
          hint: `unpin ${showCid(pin.cid)} or re-add its content`
        })
      }
    }
    let removed = 0
    for await (const { cid } of node.blockstore.getAll({ signal })) {
      if (live.has(blockKey(cid))) continue
      await node.blockstore.delete(cid, { signal })
      removed++
    }
    return removed
  }).pipe(gcLock.withPermits(permits), Effect.withSpan("HeliaStore.gc"))

  const control = HeliaNode.of({
    peerId: libp2p?.peerId.toString(),
    addresses: Effect.sync(() => (libp2p === undefined ? [] : listenAddresses(libp2p))),
    connectedPeers: Effect.sync(() =>
      libp2p === undefined ? [] : [...new Set(libp2p.getConnections().map((c) => c.remotePeer.toString()))]
    )
  })
  return { store: GradientStore.of({ add, computeCid, get, unpin, pins, gc }), node: control }
})

/** The GradientStore port on an embedded Helia node whose repository lives in the data dir. */
export const make = (options: HeliaStoreOptions) => Effect.map(makeWithNode(options), ({ store }) => store)

export const HeliaStore = {
  /**
   * The GradientStore port on an embedded Helia node with its repository in `<dataDir>/ipfs`; networked when
   * `peers` or `listen` is given, else opening no socket. Pins persist across restarts; the node stops when the
   * layer's scope closes.
   */
  layer: (options: HeliaStoreOptions): Layer.Layer<GradientStore, MiningError> =>
    Layer.effect(GradientStore, make(options)),
  /** The same store and its HeliaNode, whose addresses a process prints so other nodes can peer with it. */
  layerWithNode: (options: HeliaStoreOptions): Layer.Layer<GradientStore | HeliaNode, MiningError> =>
    Layer.effectContext(
      Effect.map(makeWithNode(options), ({ node, store }) =>
        Context.make(GradientStore, store).pipe(Context.add(HeliaNode, node)))
    )
} as const
