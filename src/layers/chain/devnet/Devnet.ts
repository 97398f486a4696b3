import { mkdirSync } from "node:fs"
import { join, resolve } from "node:path"
import { Context, Duration, Effect, Layer, type Scope } from "effect"
import type { Address } from "viem"
import { classify } from "../../../domain/classify.ts"
import { type MiningError, ResourceError, ValidationError } from "../../../domain/errors.ts"
import type { FinalizationReceipt, FinalizeRound } from "../../../domain/rounds.ts"
import type { AnvilInstance, DevAccount } from "./Anvil.ts"
import { type AnvilHealth, type RestartPolicy, startSupervisedAnvil } from "./AnvilSupervisor.ts"
import { devnetClients } from "./devnetClients.ts"
import { lockDataDir, stateFileName } from "./devnetFiles.ts"
import { deployRegistry, hasCode, registerVerifier, setUpRegistry } from "./devnetRegistry.ts"
import { defaultRoundPlan, makeRoundKeeper, repeatTicks, type RoundPlan } from "./roundKeeper.ts"

export {
  defaultRoundPlan,
  defaultRoundSpecJson,
  placeholderModelCid,
  type RoundParams,
  type RoundPlan,
  type RoundPlanContext
} from "./roundKeeper.ts"

/**
 * The devnet: anvil + a deployed MiningRegistry + a round keeper. It plays the network's round coordinator
 * (DESIGN.md "CLI" → devnet): a background fiber keeps a round with free chunks open, opening the next round
 * (newest id + 1) when the newest one is fully claimed or within `deadlineMarginSeconds` of its deadline, so miners
 * never starve.
 *
 * Persistent mode (`dataDir`): anvil's state lives in `<dataDir>/anvil-state.json` (written on stop and every
 * `stateIntervalSeconds`), and `<dataDir>/devnet.json` records the registry, chain id and owner, so a restart on
 * the same directory reuses the same registry, its rounds and submissions instead of deploying a new one.
 * `<dataDir>/devnet.lock` keeps two devnets off one directory.
 *
 * Supervision (DESIGN.md "Durability"): an anvil that dies on its own is restarted on the same port (clients keep
 * their RPC URL), from its state file in persistent mode, at most `restartPolicy.maxRestarts` times within its
 * window. After a restart the registry is checked: a chain that lost it (state lost, or no data dir: a devnet without
 * one restarts as a new, empty chain) gets it deployed again, at the same address (account 0's first transaction),
 * with a warning — that chain is a new one. A devnet that cannot come back is down: `health` says so and `failure`
 * fails, for the composition root to stop the miner with that error.
 */

/** The devnet's verifier is anvil's account 2: account 0 owns the registry, account 1 mines in `mine`. */
const verifierAccount = 2

export interface DevnetOptions {
  /** anvil's port on 127.0.0.1; 0 or absent picks a free one. */
  readonly port?: number
  /** Default 31337. */
  readonly chainId?: number
  /** Persistent mode: keep the chain and the registry's address in this directory across restarts. */
  readonly dataDir?: string
  /** The registry's lease duration (constructor argument) for a new deployment; default 600 s. */
  readonly leaseSeconds?: number
  /** The PoW floor of the default round plan (1..64, default 20). */
  readonly difficulty?: number
  /** Round parameters per round id; default {@link defaultRoundPlan}(difficulty). */
  readonly roundPlan?: RoundPlan
  /**
   * Whether the keeper opens rounds (default true). false: the chain as it is, for commands that only read it
   * (`rounds`, `aggregate --check`): they must not open a round a miner did not ask for.
   */
  readonly keepRounds?: boolean
  /** The id of the first round on a fresh registry (default 1). */
  readonly firstRoundId?: bigint
  /** How often the round keeper looks (default 1 s). */
  readonly keeperInterval?: Duration.Input
  /**
   * Open the next round when the newest has less than this left (default 60 s; at most a quarter of the newest
   * round's planned duration, so short rounds do not open back to back).
   */
  readonly deadlineMarginSeconds?: number
  /** Persistent mode: anvil also writes its state every N seconds (default 5), so a crash loses at most that. */
  readonly stateIntervalSeconds?: number
  /** Interval mining every N seconds instead of automine. */
  readonly blockTime?: number
  /** An anvil binary instead of the npm platform package's. */
  readonly anvilBinary?: string
  /** Restarts of an anvil that died on its own (default: at most 3 within 60 s, after 250 ms doubling). */
  readonly restartPolicy?: RestartPolicy
}

/** How to reach the devnet. Devnet keys only. */
export interface DevnetInfo {
  readonly rpcUrl: string
  readonly chainId: number
  readonly registry: Address
  /** The registry's owner: anvil's account 0. */
  readonly owner: Address
  /** The account the registry lets record verdicts: anvil's account 2 (`r3mes-miner verify`'s default). */
  readonly verifier: DevAccount
  /**
   * anvil's ten funded dev accounts. accounts[0] is the owner, whose nonces the round keeper uses: give miners
   * accounts 1..9 (account 2 is the verifier: a miner on it shares the verifier's nonces, so give it to one process).
   */
  readonly accounts: ReadonlyArray<DevAccount>
  /** The registry's lease duration (read from the contract: a reused registry keeps its own). */
  readonly leaseSeconds: number
  /** anvil's process id now (another one after a restart). */
  readonly pid: number
  /** Persistent mode's directory, absolute. */
  readonly dataDir: string | undefined
}

/** The JSON that `r3mes-miner devnet` prints (snake_case, like every outside contract of the miner). */
export const devnetInfoJson = (info: DevnetInfo) => ({
  rpc_url: info.rpcUrl,
  chain_id: info.chainId,
  registry: info.registry,
  owner: info.owner,
  verifier: { address: info.verifier.address, private_key: info.verifier.privateKey },
  accounts: info.accounts.map((a) => ({ address: a.address, private_key: a.privateKey }))
})

/** A running devnet: how to reach it, and its round keeper on demand. */
export interface RunningDevnet extends DevnetInfo {
  /**
   * One round-keeper step now (the background fiber does the same every `keeperInterval`): the id of a round with
   * free chunks, opened first when the newest round is fully claimed or near its deadline.
   */
  readonly keepRound: Effect.Effect<bigint, MiningError>
  /**
   * The owner's `finalizeRound` (the devnet's round coordinator records its aggregates with it), never signed at the
   * same time as a round opening: both use the owner's nonces. Reverts are ChainRevertErrors.
   */
  readonly finalizeRound: (finalization: FinalizeRound) => Effect.Effect<FinalizationReceipt, MiningError>
  /** Whether anvil runs, is being restarted, or is down for good; for /health and /ready. */
  readonly health: Effect.Effect<DevnetHealth>
  /**
   * Never completes while the devnet runs or is being restarted; fails with a ResourceError (message and hint) once
   * it is down for good. Race the work that needs the chain against it.
   */
  readonly failure: Effect.Effect<never, MiningError>
}

/** The devnet's state in /health and /ready (snake_case JSON). */
export type DevnetHealth = AnvilHealth

const checkOptions = (options: DevnetOptions): ValidationError | undefined => {
  const bad = (field: string, value: unknown, expected: string) =>
    new ValidationError({ message: `devnet option ${field} = ${String(value)} is not ${expected}`, field })
  const { difficulty, leaseSeconds, deadlineMarginSeconds, stateIntervalSeconds } = options
  if (difficulty !== undefined && (!Number.isInteger(difficulty) || difficulty < 1 || difficulty > 64)) {
    return bad("difficulty", difficulty, "an integer in 1..64")
  }
  if (leaseSeconds !== undefined && (!Number.isSafeInteger(leaseSeconds) || leaseSeconds < 1)) {
    return bad("leaseSeconds", leaseSeconds, "a positive whole number of seconds")
  }
  if (deadlineMarginSeconds !== undefined && !(deadlineMarginSeconds >= 0)) {
    return bad("deadlineMarginSeconds", deadlineMarginSeconds, "a non-negative number of seconds")
  }
  if (stateIntervalSeconds !== undefined && (!Number.isInteger(stateIntervalSeconds) || stateIntervalSeconds < 1)) {
    return bad("stateIntervalSeconds", stateIntervalSeconds, "a positive whole number of seconds")
  }
  if (options.firstRoundId !== undefined && options.firstRoundId < 0n) {
    return bad("firstRoundId", options.firstRoundId, "a round id (≥ 0)")
  }
  return undefined
}

/**
 * Starts a devnet for the enclosing Scope: anvil, the registry (deployed, or reused in persistent mode), a first
 * round with free chunks, and the round keeper fiber. Closing the scope stops the keeper, then anvil (which writes
 * its state in persistent mode), then releases the data dir.
 */
export const startDevnet = Effect.fn("startDevnet")(function*(
  options: DevnetOptions = {}
): Effect.fn.Return<RunningDevnet, MiningError, Scope.Scope> {
  const invalid = checkOptions(options)
  if (invalid !== undefined) return yield* invalid
  const roundPlan = options.roundPlan ?? defaultRoundPlan(options.difficulty ?? 20)
  const firstRoundId = options.firstRoundId ?? 1n
  const marginSeconds = options.deadlineMarginSeconds ?? 60
  const keeperInterval = Duration.fromInputUnsafe(options.keeperInterval ?? "1 second")

  const dataDir = options.dataDir === undefined ? undefined : resolve(options.dataDir)
  if (dataDir !== undefined) {
    yield* Effect.try({
      try: () => mkdirSync(dataDir, { recursive: true }),
      catch: (e) => classify(e, `creating the devnet data dir ${dataDir}`)
    })
    yield* lockDataDir(dataDir)
  }

  const supervised = yield* startSupervisedAnvil({
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.chainId !== undefined ? { chainId: options.chainId } : {}),
    ...(options.blockTime !== undefined ? { blockTime: options.blockTime } : {}),
    ...(options.anvilBinary !== undefined ? { binary: options.anvilBinary } : {}),
    ...(dataDir !== undefined
      ? { stateFile: join(dataDir, stateFileName), stateIntervalSeconds: options.stateIntervalSeconds ?? 5 }
      : {})
  }, options.restartPolicy)
  // Port, chain id and accounts stay the same across restarts; only the pid changes.
  const anvil = supervised.current()
  const clients = devnetClients(anvil)
  const verifier = anvil.accounts[verifierAccount]!
  const { registry, leaseSeconds } = yield* setUpRegistry(
    clients,
    anvil.chainId,
    dataDir,
    options.leaseSeconds ?? 600,
    verifier.address
  )
  const keeper = yield* makeRoundKeeper({
    clients,
    registry,
    roundPlan,
    firstRoundId,
    marginSeconds,
    context: { verifier: verifier.address }
  })

  const redeployIfLost = Effect.fnUntraced(function*(restarted: AnvilInstance) {
    if (yield* hasCode(clients, registry)) {
      const block = yield* clients.rpc("reading the block number", () => clients.client.getBlockNumber({ cacheTime: 0 }))
      return yield* Effect.logInfo(
        `devnet: the restarted chain (pid ${restarted.pid}) still holds the registry ${registry}, at block ` +
          `${block} (anything after its last state dump is lost)`
      )
    }
    yield* Effect.logWarning(
      `devnet: the restarted chain has no registry at ${registry} (${
        dataDir === undefined ? "no data dir: it restarted empty" : `${stateFileName} lost it`
      }): this is a new chain; deploying the registry again`
    )
    const redeployed = yield* deployRegistry(clients, leaseSeconds)
    if (redeployed !== registry) {
      return yield* new ResourceError({
        message: `the restarted chain lost the registry ${registry}, and its new deployment landed at ${redeployed}`,
        resource: "devnet",
        hint: "start the miner again: it connects to the registry of the devnet it starts"
      })
    }
    yield* registerVerifier(clients, registry, verifier.address)
  })

  /**
   * After a restart: the chain must still hold the registry the miners use. A chain without it is a new chain
   * (state lost, or none kept): the registry is deployed again, which lands at the same address on a fresh chain.
   * The keeper is paused meanwhile, so it never opens rounds on a registry being replaced.
   */
  const recheckRegistry = Effect.fn("Devnet.recheckRegistry")(function*(restarted: AnvilInstance) {
    // What the plan said of rounds the restarted chain may have lost is asked again.
    yield* keeper.forgetPlans
    yield* keeper.paused(redeployIfLost(restarted))
    yield* Effect.ignore(keeper.keepRound)
  })

  const keepRounds = options.keepRounds !== false
  if (keepRounds) yield* keeper.keepRound
  // Forked in this order, they stop in the reverse one: the keeper, the supervisor, then anvil itself.
  yield* supervised.supervise(recheckRegistry)
  const chainUp = Effect.map(supervised.health, (health) => health.state === "running")
  if (keepRounds) yield* repeatTicks(keeper, chainUp, keeperInterval)

  return {
    rpcUrl: anvil.rpcUrl,
    chainId: anvil.chainId,
    registry,
    owner: clients.owner,
    verifier,
    accounts: anvil.accounts,
    leaseSeconds,
    get pid() {
      return supervised.current().pid
    },
    dataDir,
    keepRound: keeper.keepRound,
    finalizeRound: keeper.finalizeRound,
    health: supervised.health,
    failure: supervised.failure
  }
})

/** The running devnet as a service (for the embedded devnet of `mine`, and for tests). */
export class Devnet extends Context.Service<Devnet, RunningDevnet>()("r3mes/layers/chain/devnet/Devnet") {
  /** Starts the devnet when the layer is built; stops it (and writes its state) when the layer is released. */
  static readonly layer = (options: DevnetOptions = {}): Layer.Layer<Devnet, MiningError> =>
    Layer.effect(Devnet, startDevnet(options))
}
