import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs"
import { join, resolve } from "node:path"
import { Context, Duration, Effect, Layer, Result, Schema, Schedule, type Scope, Semaphore } from "effect"
import {
  type Address,
  createPublicClient,
  createWalletClient,
  defineChain,
  encodeDeployData,
  getAddress,
  type Hex,
  http
} from "viem"
import { privateKeyToAccount } from "viem/accounts"
import { classify } from "../../../domain/classify.ts"
import { type MiningError, ResourceError, ValidationError } from "../../../domain/errors.ts"
import { canonicalRoundSpec, defaultRoundSpec } from "../../../domain/training/spec.ts"
import { miningRegistryAbi, miningRegistryBytecode } from "../MiningRegistryArtifact.ts"
import { fromViemError } from "../viemErrors.ts"
import type { AnvilInstance, DevAccount } from "./Anvil.ts"
import { type AnvilHealth, type RestartPolicy, startSupervisedAnvil } from "./AnvilSupervisor.ts"

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

/** What one round is opened with. */
export interface RoundParams {
  readonly modelCid: string
  /** The round's task spec, canonical JSON. */
  readonly spec: string
  readonly chunkCount: number
  /** The on-chain PoW floor, 1..64. */
  readonly difficulty: number
  /** The deadline is chain time at opening + this. */
  readonly durationSeconds: number
}

/**
 * The parameters of round `roundId`: the round coordinator's policy. May be effectful (e.g. computing the CID of
 * the round's initial weights).
 */
export type RoundPlan = (roundId: bigint) => RoundParams | Effect.Effect<RoundParams, MiningError>

/**
 * The model CID of the built-in default plan: a placeholder (an empty UnixFS directory), because this adapter cannot
 * compute the CID of the generated weights (that takes the IPFS import settings of another adapter). The CLI's
 * devnets (`mine` without --rpc-url, and `devnet`) pass `devnetRoundPlan` (src/cli/roundPlan.ts), whose modelCid is
 * that CID, as DESIGN.md "CLI" asks; a trainer that checks modelCid would fail to fetch this placeholder.
 */
export const placeholderModelCid = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"

/**
 * The default task spec of round `roundId`: the trainer's quick MNIST MLP spec (src/domain/training/spec.ts),
 * seeded by the round id, as canonical JSON.
 */
export const defaultRoundSpecJson = (roundId: bigint): string =>
  canonicalRoundSpec(defaultRoundSpec(Number(BigInt.asUintN(32, roundId))))

/** 64 chunks, an hour per round, the given PoW floor, {@link defaultRoundSpecJson}, {@link placeholderModelCid}. */
export const defaultRoundPlan = (difficulty: number): RoundPlan => (roundId) => ({
  modelCid: placeholderModelCid,
  spec: defaultRoundSpecJson(roundId),
  chunkCount: 64,
  difficulty,
  durationSeconds: 3600
})

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
  /**
   * anvil's ten funded dev accounts. accounts[0] is the owner, whose nonces the round keeper uses: give miners
   * accounts 1..9.
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
  accounts: info.accounts.map((a) => ({ address: a.address, private_key: a.privateKey }))
})

/** A running devnet: how to reach it, and its round keeper on demand. */
export interface RunningDevnet extends DevnetInfo {
  /**
   * One round-keeper step now (the background fiber does the same every `keeperInterval`): the id of a round with
   * free chunks, opened first when the newest round is fully claimed or near its deadline.
   */
  readonly keepRound: Effect.Effect<bigint, MiningError>
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

// ---------------------------------------------------------------------------------------------------------------
// Persistent mode's files

const devnetFileName = "devnet.json"
const stateFileName = "anvil-state.json"
const lockFileName = "devnet.lock"

const AddressString = Schema.String.check(Schema.isPattern(/^0x[0-9a-fA-F]{40}$/, { expected: "an address" }))

/** `<dataDir>/devnet.json`. */
const DevnetFile = Schema.Struct({
  registry: AddressString,
  chain_id: Schema.Int,
  owner: AddressString,
  lease_seconds: Schema.Int
})
type DevnetFile = typeof DevnetFile.Type

const readDevnetFile = (dataDir: string): Effect.Effect<DevnetFile | undefined, ValidationError> => {
  const path = join(dataDir, devnetFileName)
  let text: string
  try {
    text = readFileSync(path, "utf8")
  } catch {
    return Effect.succeed(undefined)
  }
  const invalid = (cause: string) =>
    new ValidationError({
      message: `${path} is not a devnet description`,
      field: "data dir",
      cause,
      hint: "remove the data dir's devnet files (devnet.json, anvil-state.json) to start a fresh devnet"
    })
  return Effect.try({ try: () => JSON.parse(text) as unknown, catch: (e) => invalid(String(e)) }).pipe(
    Effect.flatMap((json) => Schema.decodeUnknownEffect(DevnetFile)(json)),
    Effect.mapError((e) => (e instanceof ValidationError ? e : invalid(e.message)))
  )
}

const writeDevnetFile = (dataDir: string, file: DevnetFile): Effect.Effect<void, MiningError> =>
  Effect.try({
    try: () => {
      const path = join(dataDir, devnetFileName)
      writeFileSync(`${path}.tmp`, `${JSON.stringify(file, null, 2)}\n`)
      renameSync(`${path}.tmp`, path)
    },
    catch: (e) => classify(e, `writing ${join(dataDir, devnetFileName)}`)
  })

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** `<dataDir>/devnet.lock` holds our pid while the devnet runs; a lock whose process is gone is taken over. */
const lockDataDir = (dataDir: string): Effect.Effect<void, MiningError, Scope.Scope> => {
  const path = join(dataDir, lockFileName)
  const take = (): void => {
    for (let attempt = 0;; attempt++) {
      try {
        const fd = openSync(path, "wx")
        writeSync(fd, `${process.pid}\n`)
        closeSync(fd)
        return
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw e
        const holder = Number.parseInt(readFileSync(path, "utf8"), 10)
        // Our own pid too: a second devnet of this process on the same directory would fight over the state file.
        if (Number.isSafeInteger(holder) && isAlive(holder)) {
          throw new ResourceError({
            message: `the devnet data dir ${dataDir} is in use by process ${holder}`,
            resource: "data dir",
            hint: "stop that devnet, or give this one another data dir"
          })
        }
        rmSync(path, { force: true })
      }
    }
  }
  return Effect.acquireRelease(
    Effect.try({ try: take, catch: (e) => classify(e, `locking ${path}`) }),
    () => Effect.sync(() => rmSync(path, { force: true }))
  )
}

// ---------------------------------------------------------------------------------------------------------------
// The devnet

const checkRoundParams = (roundId: bigint, p: RoundParams): ValidationError | undefined => {
  const problem = !Number.isInteger(p.chunkCount) || p.chunkCount < 1 || p.chunkCount > 0xffffffff
    ? `chunkCount ${p.chunkCount} is not in 1..2^32-1`
    : !Number.isInteger(p.difficulty) || p.difficulty < 1 || p.difficulty > 64
    ? `difficulty ${p.difficulty} is not in 1..64`
    : !Number.isSafeInteger(p.durationSeconds) || p.durationSeconds < 1
    ? `durationSeconds ${p.durationSeconds} is not a positive whole number`
    : typeof p.spec !== "string" || typeof p.modelCid !== "string"
    ? "modelCid and spec must be strings"
    : undefined
  return problem === undefined ? undefined : new ValidationError({
    message: `the round plan for round ${roundId} is invalid: ${problem}`,
    field: "roundPlan"
  })
}

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

  const chain = defineChain({
    id: anvil.chainId,
    name: `r3mes-devnet-${anvil.chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [anvil.rpcUrl] } }
  })
  const transport = http(anvil.rpcUrl, { timeout: 10_000, retryCount: 0 })
  const client = createPublicClient({ chain, transport, pollingInterval: 50 })
  const ownerAccount = privateKeyToAccount(anvil.accounts[0]!.privateKey)
  const wallet = createWalletClient({ chain, transport, account: ownerAccount })
  const owner = ownerAccount.address

  const rpc = <A>(context: string, f: () => Promise<A>): Effect.Effect<A, MiningError> =>
    Effect.tryPromise({ try: f, catch: (e) => fromViemError(e, `devnet: ${context}`) })

  const deploy = Effect.fnUntraced(function*(leaseSeconds: number) {
    const receipt = yield* rpc("deploying MiningRegistry", () =>
      wallet.sendTransactionSync({
        data: encodeDeployData({
          abi: miningRegistryAbi,
          bytecode: miningRegistryBytecode,
          args: [BigInt(leaseSeconds)]
        }),
        throwOnReceiptRevert: true
      }))
    const address = receipt.contractAddress
    if (address === null || address === undefined) {
      return yield* new ValidationError({ message: `the MiningRegistry deployment ${receipt.transactionHash} made no contract` })
    }
    yield* Effect.logInfo(`devnet: deployed MiningRegistry at ${address} (lease ${leaseSeconds} s)`)
    return getAddress(address)
  })

  const hasCode = (address: Address) =>
    rpc(`reading the code at ${address}`, () => client.getCode({ address })).pipe(
      Effect.map((code) => code !== undefined && code !== "0x")
    )

  // The registry: reused from devnet.json when the chain state still holds it, else deployed.
  const previous = dataDir === undefined ? undefined : yield* readDevnetFile(dataDir)
  if (previous !== undefined && previous.chain_id !== anvil.chainId) {
    return yield* new ValidationError({
      message: `the devnet in ${dataDir} runs chain ${previous.chain_id}, not ${anvil.chainId}`,
      field: "chain id",
      hint: `start it with chain id ${previous.chain_id}, or use another data dir for a new chain`
    })
  }
  let registry: Address
  if (previous !== undefined && (yield* hasCode(previous.registry as Address))) {
    registry = getAddress(previous.registry)
    yield* Effect.logInfo(`devnet: reusing MiningRegistry at ${registry} from ${dataDir}`)
  } else {
    if (previous !== undefined) {
      yield* Effect.logWarning(
        `devnet: ${dataDir}/${devnetFileName} names ${previous.registry}, but the chain state has no code there ` +
          `(${stateFileName} lost or replaced): deploying a new registry`
      )
    }
    registry = yield* deploy(options.leaseSeconds ?? 600)
  }
  const leaseSeconds = Number(
    yield* rpc("reading the lease duration", () =>
      client.readContract({ address: registry, abi: miningRegistryAbi, functionName: "leaseDuration" }))
  )
  if (dataDir !== undefined) {
    yield* writeDevnetFile(dataDir, { registry, chain_id: anvil.chainId, owner, lease_seconds: leaseSeconds })
  }

  // The round keeper.

  /** Chain time as the next block will see it: the pending block's timestamp (the latest one is stale when idle). */
  const chainNow = rpc("reading the chain time", () => client.getBlock({ blockTag: "pending" })).pipe(
    Effect.map((block) => block.timestamp)
  )

  /** The plan's parameters for a round, checked; a plan that throws is a ValidationError, not a dead keeper. */
  const planOf = (roundId: bigint): Effect.Effect<RoundParams, ValidationError> =>
    Effect.try({
      try: () => roundPlan(roundId),
      catch: (e) =>
        new ValidationError({ message: `the round plan failed for round ${roundId}: ${String(e)}`, field: "roundPlan" })
    }).pipe(
      Effect.flatMap((planned) => (Effect.isEffect(planned) ? planned : Effect.succeed(planned))),
      Effect.mapError((e) =>
        e._tag === "ValidationError"
          ? e
          : new ValidationError({ message: `the round plan failed for round ${roundId}: ${e.message}`, field: "roundPlan" })
      ),
      Effect.flatMap((params) => {
        const invalidParams = checkRoundParams(roundId, params)
        return invalidParams === undefined ? Effect.succeed(params) : Effect.fail(invalidParams)
      })
    )

  const openRound = Effect.fnUntraced(function*(roundId: bigint) {
    const params = yield* planOf(roundId)
    const deadline = (yield* chainNow) + BigInt(params.durationSeconds)
    yield* rpc(`opening round ${roundId}`, () =>
      wallet.writeContractSync({
        address: registry,
        abi: miningRegistryAbi,
        functionName: "openRound",
        args: [roundId, params.modelCid, params.spec, params.chunkCount, params.difficulty, deadline],
        throwOnReceiptRevert: true
      })).pipe(
        // Opened meanwhile by someone else with the owner key: it exists, which is all the keeper wants.
        Effect.catchTag("ChainRevertError", (e) => e.errorName === "RoundExists" ? Effect.void : Effect.fail(e))
      )
    yield* Effect.logInfo(
      `devnet: opened round ${roundId} (${params.chunkCount} chunks, difficulty ${params.difficulty}, ` +
        `deadline ${deadline})`
    )
    return roundId
  })

  const read = <const F extends "roundCount" | "roundIdAt" | "getRound">(
    functionName: F,
    args: ReadonlyArray<bigint>
  ) =>
    rpc(`calling ${functionName}`, () =>
      client.readContract({ address: registry, abi: miningRegistryAbi, functionName, args } as never)) as Effect.Effect<
        F extends "getRound" ? readonly [string, Hex, number, number, bigint, number, number, boolean] : bigint,
        MiningError
      >

  const keepStep = Effect.gen(function*() {
    const count = yield* read("roundCount", [])
    if (count === 0n) return yield* openRound(firstRoundId)
    const newest = yield* read("roundIdAt", [count - 1n])
    const [, , chunkCount, , deadline, nextChunk] = yield* read("getRound", [newest])
    const now = yield* chainNow
    const planned = (yield* planOf(newest)).durationSeconds
    const margin = BigInt(Math.floor(Math.min(marginSeconds, planned / 4)))
    if (nextChunk >= chunkCount || now + margin >= deadline) return yield* openRound(newest + 1n)
    return newest
  })

  const keeperPermit = yield* Semaphore.make(1)
  const keepRound = Semaphore.withPermit(keeperPermit, keepStep).pipe(Effect.withSpan("Devnet.keepRound"))

  /**
   * After a restart: the chain must still hold the registry the miners use. A chain without it is a new chain
   * (state lost, or none kept): the registry is deployed again, which lands at the same address on a fresh chain.
   * Holding the keeper's permit keeps the keeper from opening rounds on a registry being replaced.
   */
  const recheckRegistry = (restarted: AnvilInstance) =>
    Semaphore.withPermit(
      keeperPermit,
      Effect.gen(function*() {
        if (yield* hasCode(registry)) {
          const block = yield* rpc("reading the block number", () => client.getBlockNumber({ cacheTime: 0 }))
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
        const redeployed = yield* deploy(leaseSeconds)
        if (redeployed !== registry) {
          return yield* new ResourceError({
            message: `the restarted chain lost the registry ${registry}, and its new deployment landed at ${redeployed}`,
            resource: "devnet",
            hint: "start the miner again: it connects to the registry of the devnet it starts"
          })
        }
      })
    ).pipe(Effect.andThen(Effect.ignore(keepRound)))

  // The keeper speaks when its outcome changes, not at every tick: a dead chain would write a warning a second.
  // While anvil is not running the supervisor speaks for it, and the keeper waits.
  let keeperProblem: string | undefined
  const keeperTick = Effect.gen(function*() {
    if ((yield* supervised.health).state !== "running") return
    const outcome = yield* Effect.result(keepRound)
    if (Result.isSuccess(outcome)) {
      if (keeperProblem !== undefined) yield* Effect.logInfo("devnet round keeper: working again")
      keeperProblem = undefined
    } else if (keeperProblem === undefined && (yield* supervised.health).state === "running") {
      keeperProblem = outcome.failure.message
      yield* Effect.logWarning(
        `devnet round keeper: ${keeperProblem} (retrying every ${Duration.format(keeperInterval)}; said once)`
      )
    }
  })

  yield* keepRound
  // Forked in this order, they stop in the reverse one: the keeper, the supervisor, then anvil itself.
  yield* supervised.supervise(recheckRegistry)
  yield* keeperTick.pipe(Effect.repeat(Schedule.spaced(keeperInterval)), Effect.forkScoped)

  return {
    rpcUrl: anvil.rpcUrl,
    chainId: anvil.chainId,
    registry,
    owner,
    accounts: anvil.accounts,
    leaseSeconds,
    get pid() {
      return supervised.current().pid
    },
    dataDir,
    keepRound,
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
