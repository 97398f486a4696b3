/**
 * r3mes-miner/testing: in-memory layers for every port of the miner, each with a control service to inspect its
 * state and inject faults (fail the first N calls, always fail, fail after the side effect, add latency, hang).
 * Compose the miner's core services onto `testPortsLayer()` to get a whole miner that runs in memory.
 */
import { Layer } from "effect"
import type { Chain } from "../services/Chain.ts"
import type { GradientStore } from "../services/GradientStore.ts"
import type { Journal } from "../services/Journal.ts"
import type { PowSolver } from "../services/PowSolver.ts"
import type { TaskSource } from "../services/TaskSource.ts"
import type { Trainer } from "../services/Trainer.ts"
import { InMemoryJournal, type InMemoryJournalOptions } from "./InMemoryJournal.ts"
import { TestChain, type TestChainOptions } from "./TestChain.ts"
import { TestGradientStore, type TestGradientStoreOptions } from "./TestGradientStore.ts"
import { TestPowSolver, type TestPowSolverOptions } from "./TestPowSolver.ts"
import { TestTaskSource, type TestTaskSourceOptions } from "./TestTaskSource.ts"
import { TestTrainer, type TestTrainerOptions } from "./TestTrainer.ts"

export * from "./Cheaters.ts"
export * from "./CrashPoints.ts"
export * from "./Faults.ts"
export * from "./InMemoryJournal.ts"
export * from "./InMemoryNonceLedger.ts"
export * from "./TestChain.ts"
export * from "./TestFleetRoster.ts"
export * from "./testConfig.ts"
export * from "./TestGradientStore.ts"
export * from "./TestPowSolver.ts"
export * from "./TestRoundAuthority.ts"
export * from "./TestTaskSource.ts"
export * from "./TestTrainer.ts"
export * from "./TestTrainingData.ts"

export interface TestPortsOptions {
  readonly trainer?: TestTrainerOptions
  readonly gradientStore?: TestGradientStoreOptions
  readonly chain?: TestChainOptions
  readonly taskSource?: TestTaskSourceOptions
  readonly journal?: InMemoryJournalOptions
  readonly powSolver?: TestPowSolverOptions
}

/** Every port of the miner, in memory, with their control services. Settings are separate: `testSettingsLayer`. */
export type TestPorts =
  | Trainer
  | TestTrainer
  | GradientStore
  | TestGradientStore
  | Chain
  | TestChain
  | TaskSource
  | TestTaskSource
  | Journal
  | InMemoryJournal
  | PowSolver
  | TestPowSolver

/** All six test ports in one layer; each option is forwarded to that port's `layer`. */
export const testPortsLayer = (options: TestPortsOptions = {}): Layer.Layer<TestPorts> =>
  Layer.mergeAll(
    TestTrainer.layer(options.trainer),
    TestGradientStore.layer(options.gradientStore),
    TestChain.layer(options.chain),
    TestTaskSource.layer(options.taskSource),
    InMemoryJournal.layer(options.journal),
    TestPowSolver.layer(options.powSolver)
  )
