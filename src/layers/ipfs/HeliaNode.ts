import { Context, type Effect } from "effect"

/**
 * What the embedded IPFS node shows of its networking, for a process to print where its content can be fetched
 * (the devnet's JSON, a startup line): another node puts one of `addresses` in its R3MES_IPFS_PEERS.
 * Provided by `HeliaStore.layerWithNode` beside the GradientStore.
 */
export class HeliaNode extends Context.Service<HeliaNode, {
  /** The node's libp2p peer id, kept in its repository (stable across restarts); none without networking. */
  readonly peerId: string | undefined
  /** The multiaddrs it listens on, each ending in /p2p/<peerId>; empty when it does not listen. */
  readonly addresses: Effect.Effect<ReadonlyArray<string>>
  /** Peer ids it is connected to now. */
  readonly connectedPeers: Effect.Effect<ReadonlyArray<string>>
}>()("r3mes/layers/ipfs/HeliaNode") {}
