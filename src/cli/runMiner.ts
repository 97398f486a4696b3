import { join } from "node:path"
import { Deferred, Duration, Effect, Layer } from "effect"
import type { Scope } from "effect"
import packageJson from "../../package.json" with { type: "json" }
import type { MiningError } from "../domain/errors.ts"
import type { MinerConfig } from "../domain/MinerConfig.ts"
import { redactUrl } from "../domain/redaction.ts"
import type { TransactionRecord } from "../domain/TransactionRecord.ts"
import { ChainTaskSource } from "../layers/chain/ChainTaskSource.ts"
import { ViemChain } from "../layers/chain/ViemChain.ts"
import { MonitoringApi } from "../layers/http/MonitoringApi.ts"
import { Readiness } from "../layers/http/Readiness.ts"
import { HeliaStore } from "../layers/ipfs/HeliaStore.ts"
import { KuboStore } from "../layers/ipfs/KuboStore.ts"
import { SqliteJournal } from "../layers/journal/SqliteJournal.ts"
import { OnnxTrainer } from "../layers/onnx/OnnxTrainer.ts"
import { FastPowSolver } from "../layers/pow/WorkerPowSolver.ts"
import { minerLayer } from "../miner.ts"
import { chainEndpoint } from "./chainEndpoint.ts"
import { crashPointsFromEnv, withCrashPoints } from "../testing/CrashPoints.ts"
import { MiningCoordinator, type RecoverySummary } from "../services/MiningCoordinator.ts"
import { type LoopSummary, MiningLoop } from "../services/MiningLoop.ts"

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
      // The journal first: it locks the data dir (one miner per data dir, whatever the IPFS backend) and refuses a
      // corrupted file before a devnet or an IPFS node starts in that dir; released last.
      const journal = yield* Layer.build(SqliteJournal.layer({ path: join(config.dataDir, "journal.sqlite") }))
      const endpoint = yield* chainEndpoint(config)
      const embeddedStore = config.ipfsApi === "embedded"
      const readiness = yield* Readiness.make()
      const adapters = {
        chain: ViemChain.layer({ rpcUrl: endpoint.rpcUrl, registry: endpoint.registry, privateKey: endpoint.privateKey }),
        taskSource: ChainTaskSource.layer(),
        gradientStore: embeddedStore ? HeliaStore.layer({ dataDir: config.dataDir }) : KuboStore.layer({ url: config.ipfsApi }),
        trainer: OnnxTrainer.layerWithModelStore(),
        journal: Layer.succeedContext(journal),
        // Every core: measured with `npm run bench:mining`, training's step time is the same with one PoW thread or
        // two on 2 cores (the solves are ~20 ms bursts), while one thread makes concurrent solves queue (p50 66 ms).
        powSolver: FastPowSolver.layer()
      }
      const miner = minerLayer(config, crashPoints === undefined ? adapters : withCrashPoints(adapters, crashPoints))
      const app = MonitoringApi.layer({
        readiness: readiness.status,
        version: packageJson.version,
        miner: {
          chain: { rpc: endpoint.devnet ? "embedded devnet" : redactUrl(endpoint.rpcUrl), registry: endpoint.registry },
          ipfs: { api: embeddedStore ? "embedded" : redactUrl(config.ipfsApi) }
        },
        components: endpoint.embedded === undefined ? undefined : endpoint.embedded.health.pipe(
          Effect.map((devnet) => ({
            devnet: { ...devnet, alive: devnet.state !== "down", ready: devnet.state === "running" }
          }))
        )
      }).pipe(Layer.provideMerge(miner))
      const context = yield* Layer.build(app)

      return yield* Effect.gen(function*() {
        const coordinator = yield* MiningCoordinator
        const loop = yield* MiningLoop
        const api = yield* MonitoringApi
        // The journal is a cache of the chain: what the chain lost (a reset devnet) is found before anything resumes.
        yield* coordinator.auditChain
        // The embedded store is the miner's own: pins the journal does not know are leftovers, released too (unless
        // the chain records them as ours).
        const recovery = yield* coordinator.recoverTransactions({
          orphanGrace: "0 seconds",
          releaseUnknownPins: embeddedStore
        })
        yield* readiness.markReady
        if (options.onStarted) {
          yield* options.onStarted({
            statsUrl: api.url,
            recovery,
            endpoint: { rpcUrl: redactUrl(endpoint.rpcUrl), registry: endpoint.registry, devnet: endpoint.devnet }
          })
        }

        const stop = yield* Deferred.make<void>()
        const abort = yield* Deferred.make<void>()
        // Signals are the miner's own while it mines: the first stops claiming and lets in-flight transactions
        // finish; a second interrupts them (compensated before their commit point, left to recovery past it).
        // Either way the run ends with its summary.
        yield* withSignalHandler((count) => Effect.runFork(Deferred.succeed(count === 1 ? stop : abort, undefined)))
        yield* Effect.forkChild(
          Deferred.await(stop).pipe(
            Effect.andThen(readiness.markNotReady("shutting down")),
            Effect.andThen(coordinator.activeCount),
            Effect.flatMap((inFlight) => (options.onStopping ? options.onStopping(inFlight) : Effect.void))
          )
        )
        const mining = loop.run({
          iterations: options.iterations,
          stop: Deferred.await(stop),
          // A stop must end: past the grace, what is still in flight is stopped (compensated before its commit
          // point, left to recovery after it).
          stopGrace: Duration.min(config.transactionTimeout, Duration.seconds(30)),
          abort: Deferred.await(abort),
          onFinished: options.onFinished
        })
        // An embedded devnet that cannot be restarted stops the miner with its cause (exit 1): the transactions in
        // flight are interrupted — compensated before their commit point, left to recovery past it.
        const summary = yield* (endpoint.embedded === undefined
          ? mining
          : Effect.raceFirst(mining, endpoint.embedded.failure))
        return { summary, recovery, interrupted: yield* Deferred.isDone(stop) } satisfies MinerRun
      }).pipe(Effect.provide(context))
    })
  )
