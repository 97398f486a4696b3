import { Layer } from "effect"
import type { MinerConfig } from "../../src/domain/MinerConfig.ts"
import { MiningCoordinator } from "../../src/services/MiningCoordinator.ts"
import { MiningLoop } from "../../src/services/MiningLoop.ts"
import { MiningStats } from "../../src/services/MiningStats.ts"
import { InMemoryJournal, type InMemoryJournalOptions } from "../../src/testing/InMemoryJournal.ts"
import { TestChain, type TestChainOptions } from "../../src/testing/TestChain.ts"
import { testSettingsLayer } from "../../src/testing/testConfig.ts"
import { TestGradientStore, type TestGradientStoreOptions } from "../../src/testing/TestGradientStore.ts"
import { TestPowSolver, type TestPowSolverOptions } from "../../src/testing/TestPowSolver.ts"
import { TestTaskSource, type TestTaskSourceOptions } from "../../src/testing/TestTaskSource.ts"
import { TestTrainer, type TestTrainerOptions } from "../../src/testing/TestTrainer.ts"

export interface HarnessOptions {
  readonly config?: Partial<MinerConfig>
  readonly trainer?: TestTrainerOptions
  readonly store?: TestGradientStoreOptions
  readonly chain?: TestChainOptions
  readonly tasks?: TestTaskSourceOptions
  readonly journal?: InMemoryJournalOptions
  readonly pow?: TestPowSolverOptions
}

/** The coordinator and loop on the in-memory ports, with every control service exposed to the test. */
export const harness = (options: HarnessOptions = {}) => {
  const ports = Layer.mergeAll(
    TestTrainer.layer(options.trainer),
    TestGradientStore.layer(options.store),
    TestChain.layer(options.chain),
    TestTaskSource.layer(options.tasks),
    InMemoryJournal.layer(options.journal),
    TestPowSolver.layer(options.pow),
    MiningStats.layer,
    testSettingsLayer(options.config)
  )
  const coordinator = MiningCoordinator.layer.pipe(Layer.provideMerge(ports))
  return MiningLoop.layer.pipe(Layer.provideMerge(coordinator))
}
