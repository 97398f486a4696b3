/**
 * r3mes-miner as a library: the domain values and errors, the ports and core services, and the adapters. The
 * in-memory test layers are exported separately from "r3mes-miner/testing".
 */
export * from "./domain/classify.ts"
export * from "./domain/errors.ts"
export * from "./domain/MinerConfig.ts"
export * from "./domain/mining.ts"
export * from "./domain/retryPolicy.ts"
export * from "./domain/TransactionRecord.ts"
export * from "./domain/TransactionState.ts"
export * as Pow from "./domain/pow.ts"

export { Chain } from "./services/Chain.ts"
export { GradientStore } from "./services/GradientStore.ts"
export { Journal, type JournalEvent, type TransactionQuery } from "./services/Journal.ts"
export {
  type AuditSummary,
  type CleanupResult,
  type CoordinatorStatistics,
  MiningCoordinator,
  type RecoveryOptions,
  type RecoverySummary
} from "./services/MiningCoordinator.ts"
export { type BreakerState, type OutsideService, ServiceBreakers } from "./services/ServiceBreakers.ts"
export { rebuildJournal, type RebuildSummary } from "./services/JournalRebuild.ts"
export { type LoopOptions, type LoopSummary, MiningLoop } from "./services/MiningLoop.ts"
export * as MiningMetrics from "./services/MiningStats.ts"
export { MiningStats, type StatisticsSnapshot } from "./services/MiningStats.ts"
export { PowSolver } from "./services/PowSolver.ts"
export { Settings } from "./services/Settings.ts"
export { TaskSource } from "./services/TaskSource.ts"
export { Trainer } from "./services/Trainer.ts"

export { miningRegistryAbi, miningRegistryBytecode } from "./layers/chain/MiningRegistryArtifact.ts"
export { ViemChain, type ViemChainOptions } from "./layers/chain/ViemChain.ts"
export { FastPowSolver, type FastPowSolverOptions } from "./layers/pow/WorkerPowSolver.ts"
export { ReferencePowSolver } from "./layers/pow/ReferencePowSolver.ts"
export { ChainTaskSource } from "./layers/chain/ChainTaskSource.ts"
export { HeliaStore } from "./layers/ipfs/HeliaStore.ts"
export { KuboStore } from "./layers/ipfs/KuboStore.ts"
export { SqliteJournal, type SqliteJournalOptions } from "./layers/journal/SqliteJournal.ts"
export { checkJournal, type JournalCheck } from "./layers/journal/checkJournal.ts"
export { OnnxTrainer } from "./layers/onnx/OnnxTrainer.ts"
export { MonitoringApi } from "./layers/http/MonitoringApi.ts"
export { MonitoringApiSpec } from "./api/MonitoringApiSpec.ts"
export { type Miner, type MinerAdapters, minerLayer } from "./app/minerLayer.ts"
export { type MinerRun, runMiner, type RunMinerOptions } from "./app/runMiner.ts"
export { chainEndpoint, type ChainEndpoint } from "./app/chainEndpoint.ts"
export { chainLayer, gradientStoreLayer, journalLayer, journalPath, productionAdapters } from "./app/adapters.ts"
export { settingsLayer, settingsLayerFrom } from "./app/settings.ts"
