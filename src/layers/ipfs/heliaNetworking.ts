import { Duration, Effect, Schedule } from "effect"
import type { Helia } from "helia"
import type { Libp2p, PeerId } from "@libp2p/interface"
import type { Multiaddr } from "@multiformats/multiaddr"
import { classify } from "../../domain/classify.ts"
import { type MiningError, ResourceError, ValidationError } from "../../domain/errors.ts"

/**
 * The embedded node's networking (DESIGN.md "Verification" → "Content reachability"): a libp2p node with TCP, noise,
 * yamux, identify and bitswap, that listens where it is told and dials the peers it is given, nothing else. No DHT,
 * no public bootstrap, no mDNS, no UPnP, no relay: a miner must not join the public network by surprise.
 */

/** Networked when it listens or has peers; otherwise the node opens no socket. */
export const isNetworked = (networking: {
  readonly peers: ReadonlyArray<string>
  readonly listen: ReadonlyArray<string>
}): boolean => networking.peers.length > 0 || networking.listen.length > 0

export interface Peer {
  readonly address: Multiaddr
  readonly id: PeerId
}

const badAddress = (setting: string, address: string, error: unknown, hint: string) =>
  new ValidationError({
    message: `${setting}: ${JSON.stringify(address)} is not a usable multiaddr`,
    field: setting,
    cause: error instanceof Error ? error.message : String(error),
    hint
  })

/** The configured peers as libp2p values; a peer id that does not decode is the operator's typo, said at start. */
export const parsePeers = Effect.fnUntraced(function*(
  peers: ReadonlyArray<string>
): Effect.fn.Return<ReadonlyArray<Peer>, MiningError> {
  // Without peers nothing is loaded: a node without networking starts in milliseconds.
  if (peers.length === 0) return []
  const [{ multiaddr }, { peerIdFromString }] = yield* Effect.promise(() =>
    Promise.all([import("@multiformats/multiaddr"), import("@libp2p/peer-id")])
  )
  const parsed: Array<Peer> = []
  for (const text of peers) {
    const peer = yield* Effect.try({
      try: () => {
        const address = multiaddr(text)
        const p2p = address.getComponents().find((component) => component.name === "p2p")?.value
        if (p2p === undefined) throw new Error("no /p2p/<peer id>")
        return { address, id: peerIdFromString(p2p) }
      },
      catch: (error) =>
        badAddress("R3MES_IPFS_PEERS", text, error, "copy the address the other node prints, /p2p/<peer id> included")
    })
    parsed.push(peer)
  }
  return parsed
})

/**
 * A listen address libp2p could not bind, as the operator's error; undefined for any other start failure. libp2p
 * reports every address in one message ("Some configured addresses failed to be listened on: … listen EADDRINUSE …").
 */
export const listenFailure = (listen: ReadonlyArray<string>, error: unknown): MiningError | undefined => {
  const text = error instanceof Error ? error.message : String(error)
  const reason = /listen (E[A-Z]+)[^\n]*/.exec(text)
  if (!/failed to be listened on/.test(text) && reason === null) return undefined
  const code = reason?.[1]
  const message = `the embedded IPFS node cannot listen on ${listen.join(", ")}${reason === null ? "" : `: ${reason[0]}`}`
  return code === "EADDRINUSE"
    ? new ResourceError({
      message,
      resource: "port",
      cause: text,
      hint: "another process (another r3mes-miner?) uses that port: give R3MES_IPFS_LISTEN (--ipfs-listen) another " +
        "port, or port 0 for any free one"
    })
    : new ValidationError({
      message,
      field: "R3MES_IPFS_LISTEN",
      cause: text,
      hint: code === "EADDRNOTAVAIL"
        ? "that IP is not an address of this machine: use 127.0.0.1, 0.0.0.0 or one of its interfaces"
        : "check R3MES_IPFS_LISTEN (--ipfs-listen): a multiaddr like /ip4/127.0.0.1/tcp/4011"
    })
}

/** Adds libp2p and bitswap to a light Helia node, listening on `listen` and configured with nothing else. */
export const withNetworking = async (helia: Helia, listen: ReadonlyArray<string>): Promise<Helia & { libp2p: Libp2p }> => {
  // Loaded only when networking is configured: libp2p and its transports cost ~1 s of loading.
  const [{ withLibp2pLight }, { withBitswap }, { tcp }, { noise }, { yamux }, { identify }] = await Promise.all([
    import("@helia/libp2p"),
    import("@helia/bitswap"),
    import("@libp2p/tcp"),
    import("@libp2p/noise"),
    import("@libp2p/yamux"),
    import("@libp2p/identify")
  ])
  // The peer id's key is loaded from (or created in) the repository's datastore by withLibp2pLight, so an address
  // printed once stays valid across restarts.
  const networked = withLibp2pLight(helia, {
    addresses: { listen: [...listen] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery: [],
    // Bitswap learns which connected peers speak it from identify.
    services: { identify: identify() }
  })
  return withBitswap(networked) as Helia & { libp2p: Libp2p }
}

/** The node's own addresses, each with /p2p/<its peer id>, as another node puts them in R3MES_IPFS_PEERS. */
export const listenAddresses = (libp2p: Libp2p): ReadonlyArray<string> =>
  libp2p.getMultiaddrs().map((address) => address.toString())

/**
 * Keeps the configured peers connected for as long as the calling scope lives: they are tagged keep-alive (libp2p's
 * connection pruner spares them and its reconnect queue redials them at once), and a fiber dials again every
 * `redialInterval` any peer not connected, since libp2p's own queue gives up after a few attempts, and a peer that
 * restarts (a devnet, another miner) may be gone for longer than that.
 */
export const keepPeersConnected = Effect.fnUntraced(function*(
  libp2p: Libp2p,
  peers: ReadonlyArray<Peer>,
  redialInterval: Duration.Duration
) {
  if (peers.length === 0) return
  const { KEEP_ALIVE } = yield* Effect.promise(() => import("@libp2p/interface"))
  for (const peer of peers) {
    yield* Effect.tryPromise({
      try: () =>
        libp2p.peerStore.merge(peer.id, {
          multiaddrs: [peer.address],
          tags: { [`${KEEP_ALIVE}-r3mes-peering`]: { value: 1 } }
        }),
      catch: (error) => classify(error, `embedded IPFS: recording peer ${peer.address.toString()}`)
    })
  }
  const dialMissing = Effect.forEach(peers, (peer) =>
    libp2p.getConnections(peer.id).length > 0
      ? Effect.void
      : Effect.tryPromise((signal) => libp2p.dial(peer.address, { signal })).pipe(
        Effect.timeout(Duration.max(redialInterval, Duration.seconds(5))),
        Effect.andThen(Effect.logInfo(`embedded IPFS: connected to peer ${peer.address.toString()}`)),
        // A peer that is down is the normal state of a restart; the fetch that needs it says so when it times out.
        Effect.catch((error) => Effect.logDebug(`embedded IPFS: peer ${peer.address.toString()} not reachable yet`, error))
      ), { concurrency: "unbounded", discard: true })
  yield* dialMissing.pipe(Effect.repeat(Schedule.spaced(redialInterval)), Effect.forkScoped)
})
