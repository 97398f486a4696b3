import { join } from "node:path"
import { Deferred, Effect, Exit, Fiber, Layer, Option, Redacted } from "effect"
import type { Scope } from "effect"
import packageJson from "../../package.json" with { type: "json" }
import { type MiningError, ValidationError } from "../domain/errors.ts"
import type { MinerConfig } from "../domain/MinerConfig.ts"
import type { TransactionRecord } from "../domain/TransactionRecord.ts"
import { ChainTaskSource } from "../layers/chain/ChainTaskSource.ts"
import { startDevnet } from "../layers/chain/devnet/Devnet.ts"
import { ViemChain } from "../layers/chain/ViemChain.ts"
import { MonitoringApi } from "../layers/http/MonitoringApi.ts"
import { Readiness } from "../layers/http/Readiness.ts"
import { HeliaStore } from "../layers/ipfs/HeliaStore.ts"
import { KuboStore } from "../layers/ipfs/KuboStore.ts"
import { SqliteJournal } from "../layers/journal/SqliteJournal.ts"
import { OnnxTrainer } from "../layers/onnx/OnnxTrainer.ts"
import { FastPowSolver } from "../layers/pow/WorkerPowSolver.ts"
import { minerLayer } from "../miner.ts"
import { devnetRoundPlan } from "./roundPlan.ts"
import { CrashPoints, crashPointsFromEnv } from "../services/CrashPoints.ts"
import { MiningCoordinator, type RecoverySummary } from "../services/MiningCoordinator.ts"
import { type LoopSummary, MiningLoop } from "../services/MiningLoop.ts"

/** Where the chain is and who mines on it. */
interface ChainEndpoint {
  readonly rpcUrl: string
  readonly registry: string
  readonly privateKey: Redacted.Redacted<string>
  readonly devnet: boolean
}

/** The chain: the configured one (RPC URL, registry, key all required), else the embedded devnet in the data dir. */
const chainEndpoint = (config: MinerConfig): Effect.Effect<ChainEndpoint, MiningError, Scope.Scope> =>
  Option.match(config.rpcUrl, {
    onSome: (rpcUrl) =>
      Effect.gen(function*() {
        const registry = yield* Option.match(config.registryAddress, {
          onSome: Effect.succeed,
          onNone: () =>
            Effect.fail(
              new ValidationError({
                message: "R3MES_RPC_URL is set but R3MES_REGISTRY_ADDRESS is not",
                hint: "give --registry (the MiningRegistry's address), or unset R3MES_RPC_URL to use the embedded devnet"
              })
            )
        })
        const privateKey = yield* Option.match(config.privateKey, {
          onSome: Effect.succeed,
          onNone: () =>
            Effect.fail(
              new ValidationError({
                message: "R3MES_RPC_URL is set but R3MES_PRIVATE_KEY is not",
                hint: "set R3MES_PRIVATE_KEY to the miner account's key (in the environment, not on the command line)"
              })
            )
        })
        return { rpcUrl, registry, privateKey, devnet: false }
      }),
    onNone: () =>
      Effect.gen(function*() {
        const devnet = yield* startDevnet({
          dataDir: join(config.dataDir, "devnet"),
          difficulty: config.powDifficulty,
          roundPlan: devnetRoundPlan(config.powDifficulty)
        })
        yield* Effect.logInfo(`embedded devnet at ${devnet.rpcUrl}, registry ${devnet.registry}`)
        // Account 0 owns the registry and opens rounds; the miner is account 1 unless a key is configured.
        const privateKey = Option.getOrElse(config.privateKey, () => Redacted.make(devnet.accounts[1]!.privateKey))
        return { rpcUrl: devnet.rpcUrl, registry: devnet.registry, privateKey, devnet: true }
      })
  })

/**
 * Takes SIGINT and SIGTERM over for the scope (the runtime's handlers would interrupt the whole program at once)
 * and gives them back afterwards.
 */
const withSignalHandler = (onSignal: (count: number) => void): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const saved = { SIGINT: process.listeners("SIGINT"), SIGTERM: process.listeners("SIGTERM") }
      let count = 0
      const handler = () => onSignal(++count)
      for (const signal of ["SIGINT", "SIGTERM"] as const) {
        process.removeAllListeners(signal)
        process.on(signal, handler)
      }
      return { saved, handler }
    }),
    ({ handler, saved }) =>
      Effect.sync(() => {
        for (const signal of ["SIGINT", "SIGTERM"] as const) {
          process.removeListener(signal, handler)
          for (const listener of saved[signal]) process.on(signal, listener as () => void)
        }
      })
  ).pipe(Effect.asVoid)

export interface RunMinerOptions {
  readonly iterations: number | undefined
  /** Called once the miner is up: where its monitoring API listens, what recovery did. */
  readonly onStarted?: (started: { readonly statsUrl: string; readonly recovery: RecoverySummary; readonly endpoint: { readonly rpcUrl: string; readonly registry: string; readonly devnet: boolean } }) => Effect.Effect<void>
  readonly onFinished?: (record: TransactionRecord) => Effect.Effect<void>
  /** Called when a shutdown signal arrives and in-flight transactions are being finished. */
  readonly onStopping?: (inFlight: number) => Effect.Effect<void>
}

export interface MinerRun {
  readonly summary: LoopSummary
  readonly recovery: RecoverySummary
  readonly interrupted: boolean
}

/**
 * The main job: the whole miner on its real adapters. Recovery runs before new work; a first SIGINT/SIGTERM stops
 * claiming and lets in-flight transactions finish (their state is journaled at every step either way); a second
 * one interrupts them, which runs their compensations.
 */
export const runMiner = (config: MinerConfig, options: RunMinerOptions): Effect.Effect<MinerRun, MiningError> =>
  Effect.scoped(
    Effect.gen(function*() {
      // Test hook (chaos test): R3MES_CRASH_AT=POINT[:N] makes the miner SIGKILL itself at a crash point.
      const crashPoints = yield* crashPointsFromEnv()
      const endpoint = yield* chainEndpoint(config)
      const embeddedStore = config.ipfsApi === "embedded"
      const readiness = yield* Readiness.make()
      const miner = minerLayer(config, {
        chain: ViemChain.layer({ rpcUrl: endpoint.rpcUrl, registry: endpoint.registry, privateKey: endpoint.privateKey }),
        taskSource: ChainTaskSource.layer(),
        gradientStore: embeddedStore ? HeliaStore.layer({ dataDir: config.dataDir }) : KuboStore.layer({ url: config.ipfsApi }),
        trainer: OnnxTrainer.layerWithModelStore(),
        journal: SqliteJournal.layer({ path: join(config.dataDir, "journal.sqlite") }),
        // Every core: measured with `npm run bench:mining`, training's step time is the same with one PoW thread or
        // two on 2 cores (the solves are ~20 ms bursts), while one thread makes concurrent solves queue (p50 66 ms).
        powSolver: FastPowSolver.layer()
      })
      const app = MonitoringApi.layer({
        readiness: readiness.status,
        version: packageJson.version,
        miner: {
          chain: { rpc: endpoint.devnet ? "embedded devnet" : "configured", registry: endpoint.registry },
          ipfs: { api: embeddedStore ? "embedded" : "kubo" }
        },
        secrets: [endpoint.rpcUrl]
      }).pipe(Layer.provideMerge(miner))
      const context = yield* Layer.build(
        crashPoints === undefined ? app : app.pipe(Layer.provide(Layer.succeed(CrashPoints, crashPoints)))
      )

      return yield* Effect.gen(function*() {
        const coordinator = yield* MiningCoordinator
        const loop = yield* MiningLoop
        const api = yield* MonitoringApi
        // The embedded store is the miner's own: pins the journal does not know are leftovers, released too.
        const recovery = yield* coordinator.recoverTransactions({
          orphanGrace: "0 seconds",
          releaseUnknownPins: embeddedStore
        })
        yield* readiness.markReady
        if (options.onStarted) {
          yield* options.onStarted({
            statsUrl: api.url,
            recovery,
            endpoint: { rpcUrl: endpoint.devnet ? endpoint.rpcUrl : "(configured)", registry: endpoint.registry, devnet: endpoint.devnet }
          })
        }

        const stop = yield* Deferred.make<void>()
        const mining = yield* Effect.forkChild(
          loop.run({ iterations: options.iterations, stop: Deferred.await(stop), onFinished: options.onFinished })
        )
        // Signals are the miner's own while it mines: the first stops claiming and lets in-flight transactions
        // finish, a second interrupts them (their compensations run). Either way the run ends with its summary.
        const firstSignal = yield* Deferred.make<void>()
        const secondSignal = yield* Deferred.make<void>()
        yield* withSignalHandler((count) => Effect.runFork(Deferred.succeed(count === 1 ? firstSignal : secondSignal, undefined)))
        yield* Effect.forkChild(
          Deferred.await(firstSignal).pipe(
            Effect.andThen(readiness.markNotReady("shutting down")),
            Effect.andThen(Deferred.succeed(stop, undefined)),
            Effect.andThen(coordinator.activeCount),
            Effect.flatMap((inFlight) => (options.onStopping ? options.onStopping(inFlight) : Effect.void))
          )
        )
        yield* Effect.forkChild(Deferred.await(secondSignal).pipe(Effect.andThen(Fiber.interrupt(mining))))
        const exit = yield* Fiber.await(mining)
        const interrupted = yield* Deferred.isDone(firstSignal)
        if (Exit.isSuccess(exit)) return { summary: exit.value, recovery, interrupted } satisfies MinerRun
        if (!Exit.hasInterrupts(exit)) return yield* Effect.failCause(exit.cause)
        return {
          summary: { transactions: 0, committed: 0, failed: 0, rolled_back: 0, task_completed: 0, records: [] },
          recovery,
          interrupted: true
        } satisfies MinerRun
      }).pipe(Effect.provide(context))
    })
  )
