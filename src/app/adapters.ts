import { join } from "node:path"
import { type Layer, Option } from "effect"
import type { MiningError, ResourceError } from "../domain/errors.ts"
import type { MinerConfig } from "../domain/MinerConfig.ts"
import { ChainTaskSource } from "../layers/chain/ChainTaskSource.ts"
import { ViemChain } from "../layers/chain/ViemChain.ts"
import { HeliaStore, type HeliaStoreOptions } from "../layers/ipfs/HeliaStore.ts"
import { KuboStore } from "../layers/ipfs/KuboStore.ts"
import { SqliteJournal } from "../layers/journal/SqliteJournal.ts"
import { WorkerTrainer } from "../layers/onnx/WorkerTrainer.ts"
import { FastPowSolver } from "../layers/pow/WorkerPowSolver.ts"
import type { Chain } from "../services/Chain.ts"
import type { GradientStore } from "../services/GradientStore.ts"
import type { Journal } from "../services/Journal.ts"
import type { Trainer } from "../services/Trainer.ts"
import type { ChainEndpoint } from "./chainEndpoint.ts"
import type { MinerAdapters } from "./minerLayer.ts"

/**
 * Which adapter serves each port, chosen from the configuration. Every command that touches a port (mine, journal
 * rebuild, ipfs, gradient, status) takes it from here, so one setting means the same adapter everywhere.
 */

/** The miner's journal file in a data dir. */
export const journalPath = (dataDir: string): string => join(dataDir, "journal.sqlite")

/**
 * The data dir's journal. The miner's own by default (locked, integrity-checked); `readOnly` for readers such as
 * `status`, which work beside a running miner.
 */
export const journalLayer = (
  dataDir: string,
  options: { readonly readOnly?: boolean } = {}
): Layer.Layer<Journal, MiningError> => SqliteJournal.layer({ path: journalPath(dataDir), readOnly: options.readOnly })

/**
 * The embedded node's options from the settings. Peers and listening are optional here: commands that read a few
 * settings (`ipfs`, `gradient`) leave them out and get the node without networking.
 */
export const heliaStoreOptions = (
  settings: Pick<MinerConfig, "dataDir"> & Partial<Pick<MinerConfig, "ipfsPeers" | "ipfsListen">>
): HeliaStoreOptions => ({
  dataDir: settings.dataDir,
  peers: settings.ipfsPeers ?? [],
  listen: settings.ipfsListen === undefined ? [] : Option.toArray(settings.ipfsListen)
})

/**
 * The gradient store the settings name: the embedded Helia node in the data dir (with the peers and listen address
 * of R3MES_IPFS_PEERS / R3MES_IPFS_LISTEN), or the Kubo daemon at the URL.
 */
export const gradientStoreLayer = (
  settings: Pick<MinerConfig, "ipfsApi" | "dataDir"> & Partial<Pick<MinerConfig, "ipfsPeers" | "ipfsListen">>
): Layer.Layer<GradientStore, MiningError> =>
  settings.ipfsApi === "embedded"
    ? HeliaStore.layer(heliaStoreOptions(settings))
    : KuboStore.layer({ url: settings.ipfsApi })

/**
 * The trainer on the configured device (R3MES_DEVICE), checking round models against the store, in a worker thread
 * of its own: onnxruntime-node computes on the calling thread, and on the main thread training stalled the chain,
 * the store and the journal for a whole chunk (bench/utilisation.ts). Every trainer of a process shares one device
 * selection (devices.ts), so the miner's and the embedded verifier's agree.
 */
export const trainerLayer = (
  config: Pick<MinerConfig, "device">
): Layer.Layer<Trainer, ResourceError, GradientStore> => WorkerTrainer.layerWithModelStore({ executionProvider: config.device })

/** The MiningRegistry at the endpoint, from the endpoint's miner account. */
export const chainLayer = (endpoint: ChainEndpoint): Layer.Layer<Chain, MiningError> =>
  ViemChain.layer({ rpcUrl: endpoint.rpcUrl, registry: endpoint.registry, privateKey: endpoint.privateKey })

/**
 * The production adapters of every port, for `minerLayer`. The journal is built by the caller (it locks the data
 * dir), and so may the store be (to share it with the embedded verifier).
 */
export const productionAdapters = (
  config: MinerConfig,
  endpoint: ChainEndpoint,
  journal: Layer.Layer<Journal, MiningError>,
  gradientStore: Layer.Layer<GradientStore, MiningError> = gradientStoreLayer(config)
): MinerAdapters => ({
  chain: chainLayer(endpoint),
  // Learning rounds open when the previous one is aggregated: on the devnet, a miner waiting for the next round
  // looks twice a second so it waits about as long as the aggregate takes.
  taskSource: ChainTaskSource.layer(endpoint.devnet ? { pollInterval: "500 millis" } : {}),
  gradientStore,
  trainer: trainerLayer(config),
  journal,
  // Every core: measured with `npm run bench:mining`, training's step time is the same with one PoW thread or
  // two on 2 cores (the solves are ~20 ms bursts), while one thread makes concurrent solves queue (p50 66 ms).
  powSolver: FastPowSolver.layer()
})
