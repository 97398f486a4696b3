import { tmpdir } from "node:os"
import { join } from "node:path"
import { Duration, type Layer, Option } from "effect"
import type { MinerConfig } from "../domain/MinerConfig.ts"
import { Settings } from "../services/Settings.ts"

let configs = 0

/**
 * A MinerConfig for tests: DESIGN.md's defaults with timings short enough for a test (retries from 100 ms up to
 * 1 s, transaction timeout 30 s, circuit breaker reset 1 s), the lowest allowed PoW difficulty (16), no secrets or
 * endpoints, the stats server on port 0 (any free port, so parallel tests do not collide on 8080), and a data dir
 * under the OS tmp dir that is unique per call and not created (the log file lives inside it).
 */
export const testMinerConfig = (overrides: Partial<MinerConfig> = {}): MinerConfig => {
  const dataDir = overrides.dataDir ?? join(tmpdir(), `r3mes-miner-test-${process.pid}-${++configs}`)
  return {
    transactionTimeout: Duration.seconds(30),
    maxRetries: 3,
    powDifficulty: 16,
    retryInitialDelay: Duration.millis(100),
    retryMaxDelay: Duration.seconds(1),
    retryBackoffFactor: 2,
    maxGradientSizeMb: 100,
    maxActiveTransactions: 10,
    circuitBreakerThreshold: 5,
    circuitBreakerReset: Duration.seconds(1),
    maxConsecutiveFailures: 10,
    verifySample: 1,
    verifyTolerance: 1e-4,
    verifyWindow: Duration.seconds(120),
    ipfsPeers: [],
    ipfsListen: Option.none(),
    privateKey: Option.none(),
    rpcUrl: Option.none(),
    registryAddress: Option.none(),
    ipfsApi: "embedded",
    device: "auto",
    statsHost: "127.0.0.1",
    statsPort: 0,
    adminToken: Option.none(),
    fleetDatabaseUrl: Option.none(),
    fleetRunner: Option.none(),
    fleetAddress: Option.none(),
    fleetSigners: [],
    fleetLease: Duration.seconds(35),
    logFile: join(dataDir, "miner.log"),
    ...overrides,
    dataDir
  }
}

/** `Settings` holding `testMinerConfig(overrides)`. */
export const testSettingsLayer = (overrides: Partial<MinerConfig> = {}): Layer.Layer<Settings> =>
  Settings.layerOf(testMinerConfig(overrides))
