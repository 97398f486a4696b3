import { describe, it } from "@effect/vitest"
import { Clock, Context, Duration, Effect, Exit, Layer, Redacted, Schedule, Scope } from "effect"
import { TestClock } from "effect/testing"
import { type Hex, parseEventLogs } from "viem"
import { Submission } from "../../src/domain/mining.ts"
import { solveReference } from "../../src/domain/pow.ts"
import { miningRegistryAbi } from "../../src/layers/chain/MiningRegistryArtifact.ts"
import { ViemChain } from "../../src/layers/chain/ViemChain.ts"
import { Chain } from "../../src/services/Chain.ts"
import { TestChain } from "../../src/testing/TestChain.ts"
import { type RegistryChainShape, makeRegistryChain } from "../support/anvil.ts"
import { CID, type ChainSubject, chainContract, gradientHash, subjectRound } from "../support/chainContract.ts"
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
  return {
    layer: Layer.succeed(Chain, port),
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
})

describe("Chain contract: ViemChain on anvil", () => {
  chainContract(it.live, anvilSubject)
  chainVerdictContract(it.live, anvilSubject)
})
