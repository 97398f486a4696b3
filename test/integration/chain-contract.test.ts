import { assert, describe, it } from "@effect/vitest"
import { Clock, Context, Duration, Effect, Exit, Fiber, Layer, Option, Redacted, Schedule, Scope } from "effect"
import { TestClock } from "effect/testing"
import { type Hex, parseEventLogs } from "viem"
import { NetworkError } from "../../src/domain/errors.ts"
import { Submission } from "../../src/domain/mining.ts"
import { solveReference } from "../../src/domain/pow.ts"
import { miningRegistryAbi } from "../../src/layers/chain/MiningRegistryArtifact.ts"
import { ViemChain } from "../../src/layers/chain/ViemChain.ts"
import { ViemRoundAuthority } from "../../src/layers/chain/ViemRoundAuthority.ts"
import { Chain } from "../../src/services/Chain.ts"
import { RoundAuthority } from "../../src/services/RoundAuthority.ts"
import { TestChain } from "../../src/testing/TestChain.ts"
import { TestRoundAuthority } from "../../src/testing/TestRoundAuthority.ts"
import { type RegistryChainShape, makeRegistryChain } from "../support/anvil.ts"
import { CID, type ChainSubject, chainContract, gradientHash, subjectRound } from "../support/chainContract.ts"
import { chainRoundContract } from "../support/chainRoundContract.ts"
import { chainVerdictContract } from "../support/chainVerdictContract.ts"

/** The other miner of `submitAs`: anvil's account 2. */
const otherMiner = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"

/** The fake, as the contract runs it: claims required, proofs of work checked, chain time on the TestClock. */
const testChainSubject = Effect.gen(function*() {
  const start = Math.floor((yield* Clock.currentTimeMillis) / 1000)
  const { chunkCount, deadlineIn, difficulty, leaseSeconds } = subjectRound
  const context = yield* Layer.build(TestChain.layer({
    rounds: [{ roundId: 1n, chunkCount, difficulty, deadline: start + deadlineIn }],
    leaseSeconds,
    requireClaim: true,
    checkPow: true
  }))
  const control = Context.get(context, TestChain)
  const port = Context.get(context, Chain)
  let nextRound = 2n
  const onThisChain = Layer.succeed(TestChain, control)
  return {
    layer: Layer.succeed(Chain, port),
    authority: Layer.provide(TestRoundAuthority.layer(), onThisChain),
    outsider: Layer.provide(TestRoundAuthority.layer({ owner: false }), onThisChain),
    openRound: Effect.fnUntraced(function*(count: number, deadlineIn: number) {
      const now = Math.floor((yield* Clock.currentTimeMillis) / 1000)
      const info = yield* control.openRound({ roundId: nextRound++, chunkCount: count, difficulty, deadline: now + deadlineIn })
      return info.roundId
    }),
    advanceTime: (seconds) => TestClock.adjust(Duration.seconds(seconds)),
    reset: control.reset,
    setVerifier: control.setVerifier,
    submitAs: Effect.fnUntraced(function*(roundId: bigint, seed: string) {
      const round = yield* Effect.flatMap(port.getRound(roundId), Effect.fromOption)
      const hash = gradientHash(seed)
      const submitted = yield* control.submitAs(
        otherMiner,
        new Submission({ roundId, chunkId: round.nextChunk, cid: CID, gradientHash: hash, powNonce: 0n })
      )
      return { chunkId: submitted.chunkId, miner: submitted.miner, gradientHash: hash, blockNumber: submitted.blockNumber }
    }, Effect.orDie)
  } satisfies ChainSubject
})

/** A registry deployed on a fresh anvil by account 0, with its first round open; the miner is account 1. */
const deployRegistry = Effect.fnUntraced(function*(chain: RegistryChainShape) {
  const registry = yield* chain.deploy(subjectRound.leaseSeconds)
  yield* openRoundOn(chain, registry, 1n, subjectRound.chunkCount, subjectRound.deadlineIn)
  return registry
})

const openRoundOn = Effect.fnUntraced(function*(
  chain: RegistryChainShape,
  registry: Hex,
  roundId: bigint,
  chunkCount: number,
  deadlineIn: number
) {
  const now = yield* chain.now
  yield* chain.send(0, registry, "openRound", [
    roundId,
    "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
    `{"round":${roundId}}`,
    chunkCount,
    subjectRound.difficulty,
    now + BigInt(deadlineIn)
  ])
})

/**
 * The real adapter on a real anvil of its own (a reset replaces the process, on the same port). The genesis block's
 * timestamp is anvil's start in whole seconds, so a reset waits for the next second: a chain restarted within the
 * same second would have the same genesis hash (measured: `anvil_reset` keeps the genesis hash, whatever the time).
 */
const anvilSubject = Effect.gen(function*() {
  const start = Effect.fnUntraced(function*(port?: number) {
    const scope = yield* Scope.make()
    const chain = yield* Scope.provide(scope)(makeRegistryChain(port === undefined ? {} : { port })).pipe(
      Effect.retry({ schedule: Schedule.spaced("200 millis"), times: port === undefined ? 0 : 10 })
    )
    const registry = yield* deployRegistry(chain)
    return { scope, chain, registry, startedSecond: Math.floor(Date.now() / 1000) }
  })
  let current = yield* start()
  yield* Effect.addFinalizer(() => Scope.close(current.scope, Exit.void))
  let nextRound = 2n

  const layer = ViemChain.layer({
    rpcUrl: current.chain.anvil.rpcUrl,
    registry: current.registry,
    privateKey: Redacted.make(current.chain.anvil.accounts[1]!.privateKey),
    pollingInterval: "20 millis"
  })
  /** The RoundAuthority as dev account `index` (0 deployed the registry: the owner). */
  const authorityAs = (index: number) =>
    ViemRoundAuthority.layer({
      rpcUrl: current.chain.anvil.rpcUrl,
      registry: current.registry,
      privateKey: Redacted.make(current.chain.anvil.accounts[index]!.privateKey),
      pollingInterval: "20 millis"
    })
  const reset = Effect.gen(function*() {
    const wait = (current.startedSecond + 1) * 1000 - Date.now()
    if (wait > 0) yield* Effect.sleep(Duration.millis(wait + 10))
    const { port } = current.chain.anvil
    const registry = current.registry
    yield* Scope.close(current.scope, Exit.void)
    current = yield* start(port)
    if (current.registry !== registry) {
      return yield* Effect.die(new Error(`the registry was redeployed at ${current.registry}, not ${registry}`))
    }
  })
  return {
    layer,
    authority: authorityAs(0),
    outsider: authorityAs(3),
    openRound: (chunkCount, deadlineIn) =>
      Effect.as(openRoundOn(current.chain, current.registry, nextRound, chunkCount, deadlineIn), nextRound++),
    advanceTime: (seconds) => Effect.andThen(current.chain.increaseTime(seconds), current.chain.mine),
    reset,
    setVerifier: (address, allowed) =>
      Effect.asVoid(current.chain.send(0, current.registry, "setVerifier", [address as Hex, allowed])),
    submitAs: Effect.fnUntraced(function*(roundId: bigint, seed: string) {
      const { chain, registry } = current
      const claimed = yield* chain.send(2, registry, "claimChunk", [roundId])
      const [event] = parseEventLogs({ abi: miningRegistryAbi, logs: claimed.logs, eventName: "ChunkClaimed", strict: true })
      const chunkId = event!.args.chunkId
      const miner = chain.account(2).address
      const hash = gradientHash(seed) as Hex
      const [, , , difficulty] = yield* chain.call(registry, "getRound", [roundId])
      const solution = yield* solveReference({
        chainId: chain.anvil.chainId,
        registry,
        miner,
        roundId,
        chunkId,
        gradientHash: hash,
        cid: CID,
        difficulty
      })
      const receipt = yield* chain.send(2, registry, "submitGradient", [roundId, chunkId, CID, hash, solution.nonce])
      return { chunkId, miner, gradientHash: hash, blockNumber: receipt.blockNumber }
    })
  } satisfies ChainSubject
})

describe("Chain contract: TestChain", () => {
  chainContract(it.effect, testChainSubject)
  chainVerdictContract(it.effect, testChainSubject)
  chainRoundContract(it.effect, testChainSubject)
})

describe("Chain contract: ViemChain on anvil", () => {
  chainContract(it.live, anvilSubject)
  chainVerdictContract(it.live, anvilSubject)
  chainRoundContract(it.live, anvilSubject)
})

describe("TestChain and TestRoundAuthority: finalization in the fake's own controls", () => {
  const fake = (options: Parameters<typeof TestRoundAuthority.layer>[0] = {}) =>
    Layer.provideMerge(TestRoundAuthority.layer(options), TestChain.layer())
  const finalize = { modelCid: CID, weightsHash: gradientHash("weights"), acceptedCount: 2, testAccuracyPpm: 500_000 }

  it.effect("rewindTo before the finalization's block forgets it (the round is open again); reset forgets it too", () =>
    Effect.gen(function*() {
      const chain = yield* Chain
      const control = yield* TestChain
      const before = (yield* chain.head).number
      const receipt = yield* control.finalizeRound({ roundId: 1n, ...finalize })
      assert.strictEqual(receipt.blockNumber, before + 1n)
      assert.isTrue(Option.isSome(yield* chain.getFinalization(1n)))
      yield* control.rewindTo(before)
      assert.isTrue(Option.isNone(yield* chain.getFinalization(1n)))
      yield* chain.claimChunk(1n)
      yield* control.finalizeRound({ roundId: 1n, ...finalize })
      yield* control.reset
      assert.isTrue(Option.isNone(yield* chain.getFinalization(1n)))
    }).pipe(Effect.provide(TestChain.layer())))

  it.effect("TestRoundAuthority: failAfter finalizes and loses the answer, so the retry meets RoundAlreadyFinalized; calls are counted", () =>
    Effect.gen(function*() {
      const authority = yield* RoundAuthority
      const control = yield* TestRoundAuthority
      const chain = yield* Chain
      const lost = new NetworkError({ message: "connection reset", service: "chain" })
      yield* control.setFaults({ finalizeRound: { failAfter: { times: 1, error: lost } } })
      assert.deepStrictEqual(yield* Effect.flip(authority.finalizeRound({ roundId: 1n, ...finalize })), lost)
      assert.strictEqual(Option.getOrThrow(yield* chain.getFinalization(1n)).acceptedCount, 2)
      const again = yield* Effect.flip(authority.finalizeRound({ roundId: 1n, ...finalize }))
      assert.strictEqual(again._tag === "ChainRevertError" ? again.errorName : again._tag, "RoundAlreadyFinalized")
      assert.strictEqual(yield* control.calls("finalizeRound"), 2)
      yield* control.setFaults({ finalizeRound: { alwaysFail: lost } })
      assert.deepStrictEqual(yield* Effect.flip(authority.finalizeRound({ roundId: 1n, ...finalize })), lost)
    }).pipe(Effect.provide(fake())))

  it.effect("TestRoundAuthority({ owner: false }) reverts NotOwner and records nothing", () =>
    Effect.gen(function*() {
      const refused = yield* Effect.flip((yield* RoundAuthority).finalizeRound({ roundId: 1n, ...finalize }))
      assert.strictEqual(refused._tag === "ChainRevertError" ? refused.errorName : refused._tag, "NotOwner")
      assert.isTrue(Option.isNone(yield* (yield* Chain).getFinalization(1n)))
    }).pipe(Effect.provide(fake({ owner: false }))))
})

describe("ViemRoundAuthority on anvil", () => {
  it.live("a finalization waiting in the pool refuses a second one before it is sent (RoundAlreadyFinalized); the first is mined", () =>
    Effect.gen(function*() {
      const chain = yield* makeRegistryChain()
      const registry = yield* deployRegistry(chain)
      const authority = Context.get(
        yield* Layer.build(ViemRoundAuthority.layer({
          rpcUrl: chain.anvil.rpcUrl,
          registry,
          privateKey: Redacted.make(chain.anvil.accounts[0]!.privateKey),
          pollingInterval: "20 millis"
        })),
        RoundAuthority
      )
      const owner = chain.account(0).address
      const pendingNonce = Effect.promise(() => chain.client.getTransactionCount({ address: owner, blockTag: "pending" }))
      const request = (method: string, params: ReadonlyArray<unknown>) =>
        Effect.promise(() => chain.client.request({ method, params } as never))
      const f = { roundId: 1n, modelCid: CID, weightsHash: gradientHash("race"), acceptedCount: 1, testAccuracyPpm: 1 }

      // Another coordinator's finalization (the same owner key) sent, not yet mined.
      yield* request("evm_setAutomine", [false])
      const start = yield* pendingNonce
      const first = yield* Effect.forkChild(authority.finalizeRound(f))
      for (let i = 0; (yield* pendingNonce) === start; i++) {
        if (i > 250) return assert.fail("the first finalization never reached the pool")
        yield* Effect.sleep("20 millis")
      }

      // Simulated on the pending state: the revert is decoded there, and nothing is sent.
      const refused = yield* Effect.flip(authority.finalizeRound({ ...f, acceptedCount: 2 }))
      assert.strictEqual(refused._tag === "ChainRevertError" ? refused.errorName : refused._tag, "RoundAlreadyFinalized")
      assert.strictEqual(yield* pendingNonce, start + 1)

      yield* request("evm_mine", [])
      const receipt = yield* Fiber.join(first)
      assert.deepStrictEqual(yield* Effect.promise(() => chain.client.getBlock({ blockNumber: receipt.blockNumber })).pipe(
        Effect.map((block) => block.hash)
      ), receipt.blockHash)
      const [finalized, , , acceptedCount] = yield* chain.call(registry, "getFinalization", [1n])
      assert.deepStrictEqual([finalized, acceptedCount], [true, 1])
    }), 60_000)
})
