import { Context, Deferred, Duration, Effect, Fiber, Layer, Option, Redacted } from "effect"
import type { Hex } from "viem"
import { privateKeyToAccount } from "viem/accounts"
import packageJson from "../../package.json" with { type: "json" }
import type { MiningError } from "../domain/errors.ts"
import type { MinerConfig } from "../domain/MinerConfig.ts"
import { exposedApiWarning } from "../domain/minerSettings.ts"
import { redactUrl } from "../domain/redaction.ts"
import type { TransactionRecord } from "../domain/TransactionRecord.ts"
import type { RoundSpecV1 } from "../domain/training/spec.ts"
import { MonitoringApi } from "../layers/http/MonitoringApi.ts"
import { deviceSection, sharedDeviceSelection } from "../layers/onnx/devices.ts"
import { Readiness } from "../layers/http/Readiness.ts"
import { MiningCoordinator, type RecoverySummary } from "../services/MiningCoordinator.ts"
import { ChainTaskSource } from "../layers/chain/ChainTaskSource.ts"
import { lookForGoneRunners, watchFleet } from "../services/FleetRecovery.ts"
import { FleetRoster } from "../services/FleetRoster.ts"
import { type LoopSummary, MiningLoop, noTransactions } from "../services/MiningLoop.ts"
import type { LatestRound, RoundCoordinator } from "../services/RoundCoordinator.ts"
import { crashPointsFromEnv, withCrashPoints } from "../testing/CrashPoints.ts"
import { gradientStoreLayer, journalLayer, productionAdapters } from "./adapters.ts"
import { chainEndpoint } from "./chainEndpoint.ts"
import { checkFleetConfig, fleetChainLayer, fleetJournalLayer, fleetOf, fleetRosterLayer, fleetSection } from "./fleet.ts"
import { devnetRoundPlan } from "./devnetRoundPlan.ts"
import { type EmbeddedVerifier, startEmbeddedVerifier, type TransactionVerdict } from "./embeddedVerifier.ts"
import { makeLearningPlan, networkSection, startRoundCoordinator } from "./learningRounds.ts"
import { type MinerAdapters, minerLayer } from "./minerLayer.ts"
import { withSignalHandler } from "./signals.ts"

export interface RunMinerOptions {
  readonly iterations: number | undefined
  /** Called once the miner is up: where its monitoring API listens, what recovery did. */
  readonly onStarted?: (started: {
    readonly statsUrl: string
    readonly recovery: RecoverySummary
    readonly endpoint: { readonly rpcUrl: string; readonly registry: string; readonly devnet: boolean }
    /** The compute device training runs on. */
    readonly device: string
  }) => Effect.Effect<void>
  readonly onFinished?: (record: TransactionRecord) => Effect.Effect<void>
  /** Called when a shutdown signal arrives and in-flight transactions are being finished. */
  readonly onStopping?: (inFlight: number) => Effect.Effect<void>
  /** Called once on a second stop signal (an abort: what is in flight is interrupted at once). */
  readonly onAborting?: () => Effect.Effect<void>
  /** On the embedded devnet: called with each verdict of the devnet's verifier on one of this miner's transactions. */
  readonly onVerdict?: (verdict: TransactionVerdict) => Effect.Effect<void>
  /**
   * On the embedded devnet, its verifier judges every submission beside the miner (default true); it recomputes
   * each gradient, so it costs about one training step per transaction (R3MES_VERIFY_SAMPLE lowers it).
   */
  readonly embeddedVerifier?: boolean
  /**
   * On the embedded devnet, rounds are learning rounds (default true): eight chunks each, aggregated by the devnet's
   * round coordinator into the next round's model. false: the devnet's throughput rounds (256 chunks, each round
   * from generated weights; for benchmarks of the mining pipeline alone).
   */
  readonly learningRounds?: boolean
  /**
   * On the embedded devnet's throughput rounds (`learningRounds: false`): the spec of the round seeded `seed`
   * (default defaultRoundSpec; bench/utilisation.ts gives a training-dominated one).
   */
  readonly throughputSpec?: (seed: number) => RoundSpecV1
  /** Replaces or wraps adapters before the miner is built (harnesses and benchmarks: a slow or dishonest trainer…). */
  readonly adapters?: (adapters: MinerAdapters) => MinerAdapters
}

export interface MinerRun {
  readonly summary: LoopSummary
  readonly recovery: RecoverySummary
  readonly interrupted: boolean
  /** The embedded verifier's verdicts on this run's transactions, by name; undefined without one. */
  readonly verdicts?: Readonly<Record<string, number>> | undefined
  /** On the embedded devnet's learning rounds: the newest finalized round at the end (none finalized yet: null). */
  readonly latestRound?: LatestRound | null | undefined
}

/** What a start-up gives the run: the miner's context, the embedded verifier, what recovery did. */
interface Started {
  readonly context: Context.Context<MiningCoordinator | MiningLoop | MonitoringApi>
  readonly embedded: EmbeddedVerifier | undefined
  readonly rounds: RoundCoordinator["Service"] | undefined
  readonly devnetFailure: Effect.Effect<never, MiningError> | undefined
  readonly recovery: RecoverySummary
  readonly readiness: Readiness["Service"]
  /** A fleet runner's watch for gone runners (watchFleet): stopped with the loop, a takeover under way finished. */
  readonly fleetWatch: FleetWatch | undefined
}

interface FleetWatch {
  readonly stop: Deferred.Deferred<void>
  readonly fiber: Fiber.Fiber<void>
}

/**
 * Ends a fleet runner's watch once its loop is over: a takeover under way gets the stop grace to finish what it took
 * (the runner may be the fleet's last); an abort, or the grace running out, interrupts it and leaves those
 * transactions to the next runner that looks, as a crash would.
 */
const endFleetWatch = (watch: FleetWatch, abort: Effect.Effect<void>, grace: Duration.Duration) =>
  Deferred.succeed(watch.stop, undefined).pipe(
    Effect.andThen(Effect.raceFirst(Fiber.await(watch.fiber), Effect.raceFirst(abort, Effect.sleep(grace)))),
    Effect.andThen(Fiber.interrupt(watch.fiber))
  )

const stoppedBeforeStart: MinerRun = {
  summary: noTransactions,
  recovery: { recovered: 0, committed: 0, rolled_back: 0, failed: 0, suspended: 0, orphan_pins_released: [] },
  interrupted: true
}

/**
 * Start-up: the journal (locking the data dir), the chain (the embedded devnet, or the configured one), the store,
 * the miner and its monitoring API, the embedded verifier; then the audit against the chain and recovery.
 */
const start = Effect.fnUntraced(function*(config: MinerConfig, options: RunMinerOptions) {
  // Test hook (chaos test): R3MES_CRASH_AT=POINT[:N] makes the miner SIGKILL itself at a crash point.
  const crashPoints = yield* crashPointsFromEnv()
  // The compute device before anything starts: an explicit device that cannot train stops the miner here, and
  // `auto` tries the GPU devices once for every trainer of the process (the logged choice).
  const device = yield* sharedDeviceSelection(config.device)
  // The journal next: it locks the data dir (one miner per data dir, whatever the IPFS backend) and refuses a
  // corrupted file before a devnet or an IPFS node starts in that dir; released last.
  // A fleet runner journals into the fleet's Postgres and signs through its nonce ledger (fleet.ts).
  const fleet = fleetOf(config)
  if (fleet !== undefined) {
    yield* checkFleetConfig(config)
    yield* Effect.logInfo(`fleet runner ${fleet.runner}: journal and nonces in the fleet's Postgres`)
  }
  const journal = yield* Layer.build(fleet === undefined ? journalLayer(config.dataDir) : fleetJournalLayer(config, fleet))
  const learning = options.learningRounds === false ? undefined : makeLearningPlan({
    difficulty: config.powDifficulty,
    // The embedded verifier runs unless turned off or the miner holds its key (see below); a round waits for its
    // verdicts only when it judges every submission (a sampled-out chunk would hold the round to its deadline).
    judged: (verifier) =>
      options.embeddedVerifier !== false && config.verifySample >= 1 &&
      Option.match(config.privateKey, {
        onNone: () => true,
        onSome: (key) => privateKeyToAccount(Redacted.value(key) as Hex).address.toLowerCase() !== verifier.toLowerCase()
      })
  })
  const endpoint = yield* chainEndpoint(
    config,
    learning !== undefined
      ? { roundPlan: learning.plan }
      : options.throughputSpec === undefined
      ? {}
      : { roundPlan: devnetRoundPlan(config.powDifficulty, options.throughputSpec) }
  )
  const embeddedStore = config.ipfsApi === "embedded"
  const readiness = yield* Readiness.make()
  // Built here, not inside the miner, so the embedded verifier reads the content the miner pins.
  const store = yield* Layer.build(gradientStoreLayer(config))
  const ownAdapters = productionAdapters(config, endpoint, Layer.succeedContext(journal), Layer.succeedContext(store))
  const adapters = fleet === undefined ? ownAdapters : {
    ...ownAdapters,
    chain: fleetChainLayer(endpoint, fleet),
    // A runner that died between a claim and its journal record leaves a claim of the account nobody works on.
    taskSource: ChainTaskSource.layer({ ownClaimsWhileFree: true })
  }
  const chosen = options.adapters === undefined ? adapters : options.adapters(adapters)
  const miner = yield* Layer.build(
    minerLayer(config, crashPoints === undefined ? chosen : withCrashPoints(chosen, crashPoints))
  )
  // A miner given the devnet's verifier key would share its nonces with the verifier (and judge itself): no verifier.
  const minesAsVerifier = endpoint.embedded !== undefined &&
    Redacted.value(endpoint.privateKey).toLowerCase() === endpoint.embedded.verifier.privateKey.toLowerCase()
  if (minesAsVerifier) {
    yield* Effect.logWarning("mining with the devnet's verifier key: the embedded verifier does not run (give the miner another key)")
  }
  const embedded: EmbeddedVerifier | undefined =
    endpoint.embedded === undefined || options.embeddedVerifier === false || minesAsVerifier
      ? undefined
      : yield* startEmbeddedVerifier(config, endpoint.embedded, { journal, store }, options.onVerdict ?? (() => Effect.void))
        .pipe(Effect.provide(miner))
  const rounds = endpoint.embedded === undefined || learning === undefined
    ? undefined
    : yield* startRoundCoordinator(config, endpoint.embedded, store, learning)
  const roster = fleet === undefined ? undefined : yield* Layer.build(fleetRosterLayer(fleet))
  const app = MonitoringApi.layer({
    fleet: roster === undefined ? undefined : fleetSection(Context.get(roster, FleetRoster)),
    verifier: embedded === undefined
      ? undefined
      : { snapshot: embedded.verifier.snapshot, metricRegistry: embedded.verifier.metricRegistry, verdictOf: embedded.verdictOf },
    network: rounds === undefined ? undefined : networkSection(rounds),
    readiness: readiness.status,
    version: packageJson.version,
    miner: {
      chain: { rpc: endpoint.devnet ? "embedded devnet" : redactUrl(endpoint.rpcUrl), registry: endpoint.registry },
      ipfs: { api: embeddedStore ? "embedded" : redactUrl(config.ipfsApi) },
      device: deviceSection(device)
    },
    components: endpoint.embedded === undefined ? undefined : endpoint.embedded.health.pipe(
      Effect.map((devnet) => ({
        devnet: { ...devnet, alive: devnet.state !== "down", ready: devnet.state === "running" }
      }))
    )
  }).pipe(Layer.provide(Layer.succeedContext(miner)))
  const context = Context.merge(miner, yield* Layer.build(app))

  return yield* Effect.gen(function*() {
    const coordinator = yield* MiningCoordinator
    const api = yield* MonitoringApi
    // The journal is a cache of the chain: what the chain lost (a reset devnet) is found before anything resumes.
    yield* coordinator.auditChain
    // The embedded store is the miner's own: pins the journal does not know are leftovers, released too (unless
    // the chain records them as ours) — but not while the embedded verifier or the round coordinator shares it:
    // their reports and the rounds' weights are pins the miner's journal does not know either.
    const recovery = yield* coordinator.recoverTransactions({
      orphanGrace: "0 seconds",
      releaseUnknownPins: embeddedStore && embedded === undefined && rounds === undefined
    })
    // A fleet runner takes over the work of runners that are gone: before its own new work, then every few seconds.
    let fleetWatch: FleetWatch | undefined
    if (roster !== undefined) {
      yield* lookForGoneRunners().pipe(Effect.provide(roster))
      const stop = yield* Deferred.make<void>()
      const fiber = yield* Effect.forkScoped(watchFleet({ stop: Deferred.await(stop) }).pipe(Effect.provide(roster)))
      fleetWatch = { stop, fiber }
    }
    yield* readiness.markReady
    const exposed = exposedApiWarning(config.statsHost, api.url)
    if (exposed !== undefined) yield* Effect.logWarning(exposed)
    if (options.onStarted) {
      yield* options.onStarted({
        statsUrl: api.url,
        recovery,
        endpoint: { rpcUrl: redactUrl(endpoint.rpcUrl), registry: endpoint.registry, devnet: endpoint.devnet },
        device: device.device
      })
    }
    if (embedded !== undefined) yield* embedded.follow
    return {
      context,
      embedded,
      rounds,
      devnetFailure: endpoint.embedded?.failure,
      recovery,
      readiness,
      fleetWatch
    } satisfies Started
  }).pipe(Effect.provide(context))
})

/**
 * The main job: the whole miner on its real adapters. Recovery runs before new work. Signals are the miner's own
 * from the start: a first SIGINT/SIGTERM during start-up stops it there (what was built is released; a recovery
 * cut short is journaled and goes on at the next start), afterwards it stops claiming and lets in-flight
 * transactions finish (their state is journaled at every step either way); a second one interrupts them, which runs
 * their compensations before their commit point and leaves them to recovery past it.
 */
/**
 * How long a stop waits for the transactions in flight (and, in a fleet, for a takeover under way) before it
 * interrupts them: the transaction timeout, at most 30 s.
 */
export const stopGraceOf = (config: Pick<MinerConfig, "transactionTimeout">): Duration.Duration =>
  Duration.min(config.transactionTimeout, Duration.seconds(30))

export const runMiner: (config: MinerConfig, options: RunMinerOptions) => Effect.Effect<MinerRun, MiningError> = Effect
  .fn("runMiner")(
    function*(config: MinerConfig, options: RunMinerOptions) {
      const stop = yield* Deferred.make<void>()
      const abort = yield* Deferred.make<void>()
      yield* withSignalHandler((count) => Effect.runFork(Deferred.succeed(count === 1 ? stop : abort, undefined)))
      const started = yield* Effect.raceFirst(
        Effect.map(start(config, options), Option.some),
        Effect.as(Deferred.await(stop), Option.none<Started>())
      )
      if (Option.isNone(started)) return stoppedBeforeStart
      const { context, devnetFailure, embedded, fleetWatch, readiness, recovery, rounds } = started.value
      // A stop signal ends the fleet watch too: no takeover starts while the runner winds down.
      if (fleetWatch !== undefined) yield* Effect.forkScoped(Deferred.await(stop).pipe(Effect.andThen(Deferred.succeed(fleetWatch.stop, undefined))))
      const stopGrace = stopGraceOf(config)
      if (options.onAborting !== undefined) yield* Effect.forkScoped(Deferred.await(abort).pipe(Effect.andThen(options.onAborting())))

      return yield* Effect.gen(function*() {
        const coordinator = yield* MiningCoordinator
        const loop = yield* MiningLoop
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
          stopGrace,
          abort: Deferred.await(abort),
          onFinished: options.onFinished
        })
        // An embedded devnet that cannot be restarted stops the miner with its cause (exit 1): the transactions in
        // flight are interrupted — compensated before their commit point, left to recovery past it.
        const summary = yield* (devnetFailure === undefined ? mining : Effect.raceFirst(mining, devnetFailure))
        if (fleetWatch !== undefined) yield* endFleetWatch(fleetWatch, Deferred.await(abort), stopGrace)
        const interrupted = yield* Deferred.isDone(stop)
        // A run of N transactions ends with their verdicts: the verifier judges what is left (a stopped one does not wait).
        if (embedded !== undefined && !interrupted) yield* embedded.finish("30 seconds")
        // …and a round those verdicts completed is aggregated before the summary names the newest finalized one.
        if (rounds !== undefined && !interrupted) yield* Effect.ignore(rounds.step)
        const latestRound = rounds === undefined
          ? undefined
          : Option.getOrNull(yield* rounds.latest.pipe(Effect.orElseSucceed(() => Option.none<LatestRound>())))
        return { summary, recovery, interrupted, verdicts: embedded?.verdicts(), latestRound } satisfies MinerRun
      }).pipe(Effect.provide(context))
    },
    Effect.scoped
  )
