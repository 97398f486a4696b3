import { join } from "node:path"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import type { MinerConfig } from "../domain/MinerConfig.ts"
import type { RunningDevnet } from "../layers/chain/devnet/Devnet.ts"
import { HeliaNode } from "../layers/ipfs/HeliaNode.ts"
import { HeliaStore } from "../layers/ipfs/HeliaStore.ts"
import { Settings } from "../services/Settings.ts"
import { Verifier } from "../services/Verifier.ts"
import { chainLayer, journalLayer, trainerLayer } from "./adapters.ts"

/** Where the devnet's verifier listens unless R3MES_IPFS_LISTEN says otherwise: this machine, any free port. */
const defaultListen = "/ip4/127.0.0.1/tcp/0"

/**
 * The devnet's own verifier (`devnet --verify`): the devnet's verifier account judging every submission, with an
 * embedded IPFS node of its own in <data dir>/devnet/verifier that listens, so miners in other processes put one of
 * its addresses in their R3MES_IPFS_PEERS and it fetches their gradients over bitswap. Its journal (cursor,
 * journaled verdicts) is in the same directory. Returns the node's addresses (for the devnet's JSON) and its store
 * (the devnet's round coordinator aggregates from it and pins the rounds' weights there).
 */
export const startDevnetVerifier = Effect.fn("startDevnetVerifier")(function*(config: MinerConfig, devnet: RunningDevnet) {
  const dir = join(devnet.dataDir ?? join(config.dataDir, "devnet"), "verifier")
  const settings: MinerConfig = { ...config, dataDir: dir }
  const store = yield* Layer.build(
    HeliaStore.layerWithNode({
      dataDir: dir,
      peers: config.ipfsPeers,
      listen: Option.isSome(config.ipfsListen) ? [config.ipfsListen.value] : [defaultListen]
    })
  )
  const context = yield* Layer.build(
    Verifier.layer.pipe(Layer.provide(Layer.mergeAll(
      chainLayer({ rpcUrl: devnet.rpcUrl, registry: devnet.registry, privateKey: Redacted.make(devnet.verifier.privateKey), devnet: true }),
      trainerLayer(config).pipe(Layer.provide(Layer.succeedContext(store))),
      Layer.succeedContext(store),
      journalLayer(dir),
      Settings.layerOf(settings)
    )))
  )
  const verifier = Context.get(context, Verifier)
  yield* Effect.forkScoped(
    verifier.run.pipe(Effect.catch((error) => Effect.logError(`the devnet's verifier stopped: ${error.message}`)))
  )
  return { addresses: yield* Context.get(store, HeliaNode).addresses, verifier, store }
})
