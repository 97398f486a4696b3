import { Duration, Effect, Result, Schedule, Semaphore } from "effect"
import type { Address, Hex } from "viem"
import { type MiningError, ValidationError } from "../../../domain/errors.ts"
import { canonicalRoundSpec, defaultRoundSpec } from "../../../domain/training/spec.ts"
import { FinalizationReceipt, type FinalizeRound } from "../../../domain/rounds.ts"
import { miningRegistryAbi } from "../MiningRegistryArtifact.ts"
import type { DevnetClients } from "./devnetClients.ts"

/**
 * The devnet's round keeper: the network's round coordinator in miniature (DESIGN.md "CLI" → devnet). It keeps a
 * round with free chunks open, opening the next round (newest id + 1) when the newest one is fully claimed or within
 * the deadline margin, so miners never starve. What a round is opened with is the round plan's business.
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
 * the round's initial weights). `undefined`: not yet — the round cannot be opened now (a learning round waits for
 * its parent's aggregate); the keeper asks again at its next tick. Asked once per round: the keeper remembers the
 * answer it opened the round with.
 */
export type RoundPlan = (
  roundId: bigint,
  devnet: RoundPlanContext
) => RoundParams | undefined | Effect.Effect<RoundParams | undefined, MiningError>

/**
 * The model CID of the built-in default plan: a placeholder (an empty UnixFS directory), because this adapter cannot
 * compute the CID of the generated weights (that takes the IPFS import settings of another adapter). The CLI's
 * devnets (`mine` without --rpc-url, and `devnet`) pass `devnetRoundPlan` (src/app/devnetRoundPlan.ts), whose
 * modelCid is that CID, as DESIGN.md "CLI" asks; a trainer that checks modelCid would fail to fetch this placeholder.
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

/** What a plan may need to know of the devnet it plans for. */
export interface RoundPlanContext {
  /** The devnet's verifier account (a learning round's spec names the verifiers whose verdicts count). */
  readonly verifier: Address
}

export interface RoundKeeperOptions {
  readonly context: RoundPlanContext
  readonly clients: DevnetClients
  readonly registry: Address
  readonly roundPlan: RoundPlan
  readonly firstRoundId: bigint
  /** Open the next round when the newest has less than this left (at most a quarter of its planned duration). */
  readonly marginSeconds: number
}

export interface RoundKeeper {
  /** One keeper step now: the id of a round with free chunks, opened first when needed. */
  readonly keepRound: Effect.Effect<bigint, MiningError>
  /**
   * The owner's `finalizeRound`, between keeper steps: the keeper's round openings and the coordinator's
   * finalizations share the owner's nonces, so they never sign at the same time.
   */
  readonly finalizeRound: (finalization: FinalizeRound) => Effect.Effect<FinalizationReceipt, MiningError>
  /** Forgets the plan's answers (the chain lost state: a round opened before may be planned anew). */
  readonly forgetPlans: Effect.Effect<void>
  /** Runs `effect` while no keeper step runs (e.g. while the registry is being replaced). */
  readonly paused: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * One background tick: a keeper step when `chainUp` says anvil runs. It speaks when its outcome changes, not at
   * every tick: a dead chain would write a warning a second.
   */
  readonly tick: (chainUp: Effect.Effect<boolean>, interval: Duration.Duration) => Effect.Effect<void, never, never>
}

export const makeRoundKeeper = Effect.fnUntraced(function*(options: RoundKeeperOptions) {
  const { clients: { client, rpc, wallet }, context, firstRoundId, marginSeconds, registry, roundPlan } = options

  /** Chain time as the next block will see it: the pending block's timestamp (the latest one is stale when idle). */
  const chainNow = rpc("reading the chain time", () => client.getBlock({ blockTag: "pending" })).pipe(
    Effect.map((block) => block.timestamp)
  )

  const planned = new Map<bigint, RoundParams>()

  /**
   * The plan's parameters for a round, checked and remembered; undefined while the plan says "not yet". A plan that
   * throws is a ValidationError, not a dead keeper.
   */
  const planOf = (roundId: bigint): Effect.Effect<RoundParams | undefined, ValidationError> =>
    planned.has(roundId) ? Effect.succeed(planned.get(roundId)) : askPlan(roundId)

  const askPlan = (roundId: bigint): Effect.Effect<RoundParams | undefined, ValidationError> =>
    Effect.try({
      try: () => roundPlan(roundId, context),
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
        if (params === undefined) return Effect.succeed(undefined)
        const invalidParams = checkRoundParams(roundId, params)
        if (invalidParams !== undefined) return Effect.fail(invalidParams)
        if (planned.size >= 64) planned.delete(planned.keys().next().value!)
        planned.set(roundId, params)
        return Effect.succeed(params)
      })
    )

  /** Opens the round when the plan has its parameters; the id of the newest round with free chunks either way. */
  const openRound = Effect.fn("Devnet.openRound")(function*(roundId: bigint, otherwise: bigint | undefined) {
    const params = yield* planOf(roundId)
    if (params === undefined) {
      if (otherwise !== undefined) return otherwise
      return yield* new ValidationError({
        message: `the round plan has no parameters for the first round ${roundId}`,
        field: "roundPlan"
      })
    }
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
    if (count === 0n) return yield* openRound(firstRoundId, undefined)
    const newest = yield* read("roundIdAt", [count - 1n])
    const [, , chunkCount, , deadline, nextChunk] = yield* read("getRound", [newest])
    const now = yield* chainNow
    const duration = (yield* planOf(newest))?.durationSeconds ?? marginSeconds * 4
    const margin = BigInt(Math.floor(Math.min(marginSeconds, duration / 4)))
    // A round waiting for the plan (e.g. its parent's aggregate) leaves the newest round the one to work on.
    if (nextChunk >= chunkCount || now + margin >= deadline) return yield* openRound(newest + 1n, newest)
    return newest
  })

  const permit = yield* Semaphore.make(1)
  const keepRound = Semaphore.withPermit(permit, keepStep).pipe(Effect.withSpan("Devnet.keepRound"))

  let problem: string | undefined
  const tick = Effect.fnUntraced(function*(chainUp: Effect.Effect<boolean>, interval: Duration.Duration) {
    // While anvil is not running its supervisor speaks for it, and the keeper waits.
    if (!(yield* chainUp)) return
    const outcome = yield* Effect.result(keepRound)
    if (Result.isSuccess(outcome)) {
      if (problem !== undefined) yield* Effect.logInfo("devnet round keeper: working again")
      problem = undefined
    } else if (problem === undefined && (yield* chainUp)) {
      problem = outcome.failure.message
      yield* Effect.logWarning(`devnet round keeper: ${problem} (retrying every ${Duration.format(interval)}; said once)`)
    }
  })

  const finalizeRound = (f: FinalizeRound) =>
    Semaphore.withPermit(
      permit,
      rpc(`finalizing round ${f.roundId}`, () =>
        wallet.writeContractSync({
          address: registry,
          abi: miningRegistryAbi,
          functionName: "finalizeRound",
          args: [f.roundId, f.modelCid, f.weightsHash as Hex, f.acceptedCount, f.testAccuracyPpm],
          throwOnReceiptRevert: true
        }))
    ).pipe(
      Effect.map((receipt) =>
        new FinalizationReceipt({
          txHash: receipt.transactionHash,
          blockNumber: receipt.blockNumber,
          blockHash: receipt.blockHash
        })
      ),
      Effect.withSpan("Devnet.finalizeRound")
    )

  const keeper: RoundKeeper = {
    keepRound,
    finalizeRound,
    forgetPlans: Effect.sync(() => planned.clear()),
    paused: Semaphore.withPermit(permit),
    tick
  }
  return keeper
})

/** The keeper's ticks until the scope closes. */
export const repeatTicks = (keeper: RoundKeeper, chainUp: Effect.Effect<boolean>, interval: Duration.Duration) =>
  keeper.tick(chainUp, interval).pipe(Effect.repeat(Schedule.spaced(interval)), Effect.forkScoped)
