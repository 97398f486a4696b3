import { Layer } from "effect"
import type { MiningError } from "../domain/errors.ts"
import type { MinerConfig } from "../domain/MinerConfig.ts"
import type { Chain } from "../services/Chain.ts"
import type { GradientStore } from "../services/GradientStore.ts"
import type { Journal } from "../services/Journal.ts"
import { MiningCoordinator } from "../services/MiningCoordinator.ts"
import { MiningLoop } from "../services/MiningLoop.ts"
import { MiningStats } from "../services/MiningStats.ts"
import type { PowSolver } from "../services/PowSolver.ts"
import { Settings } from "../services/Settings.ts"
import type { TaskSource } from "../services/TaskSource.ts"
import type { Trainer } from "../services/Trainer.ts"

/** One layer per port: what `minerLayer` wires the core services onto. Swap any of them (see src/testing). */
export interface MinerAdapters<E = MiningError, R = never> {
  readonly chain: Layer.Layer<Chain, E, R>
  /** Built on the chain (ChainTaskSource), or independent. */
  readonly taskSource: Layer.Layer<TaskSource, E, R | Chain>
  readonly gradientStore: Layer.Layer<GradientStore, E, R>
  /** May use the gradient store (to check and fetch round models). */
  readonly trainer: Layer.Layer<Trainer, E, R | GradientStore>
  readonly journal: Layer.Layer<Journal, E, R>
  readonly powSolver: Layer.Layer<PowSolver, E, R>
}

export type Miner = MiningLoop | MiningCoordinator | MiningStats | Settings | Chain | GradientStore | Journal

/**
 * The whole miner as one layer: the core services (MiningLoop, MiningCoordinator, MiningStats) on the given
 * adapters and configuration. The ports stay visible so a composing application can read the chain, the store or
 * the journal too.
 */
export const minerLayer = <E, R>(config: MinerConfig, adapters: MinerAdapters<E, R>): Layer.Layer<Miner, E, R> => {
  const chain = adapters.chain
  const ports = Layer.mergeAll(
    chain,
    adapters.taskSource.pipe(Layer.provide(chain)),
    adapters.gradientStore,
    adapters.trainer.pipe(Layer.provide(adapters.gradientStore)),
    adapters.journal,
    adapters.powSolver,
    MiningStats.layer,
    Settings.layerOf(config)
  )
  const coordinator = MiningCoordinator.layer.pipe(Layer.provideMerge(ports))
  return MiningLoop.layer.pipe(Layer.provideMerge(coordinator))
}
