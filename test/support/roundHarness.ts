import { Effect, Layer } from "effect"
import { Submission } from "../../src/domain/mining.ts"
import { canonicalRoundSpec, type RoundSpecV2 } from "../../src/domain/training/spec.ts"
import { verdictCodes, type VerdictName, VerdictRecord } from "../../src/domain/verification.ts"
import { sha256Hex } from "../../src/layers/sha256Hex.ts"
import { Chain } from "../../src/services/Chain.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { RoundAggregator } from "../../src/services/RoundAggregator.ts"
import type { RoundAuthority } from "../../src/services/RoundAuthority.ts"
import { RoundCoordinator } from "../../src/services/RoundCoordinator.ts"
import { TestChain, type TestRound } from "../../src/testing/TestChain.ts"
import { defaultTestIdentity } from "../../src/testing/testChain/types.ts"
import { TestGradientStore } from "../../src/testing/TestGradientStore.ts"
import { TestRoundAuthority, type TestRoundAuthorityOptions } from "../../src/testing/TestRoundAuthority.ts"
import { TestTrainingData } from "../../src/testing/TestTrainingData.ts"
import { type GradientOptions, honestGradient } from "./roundGradients.ts"

/**
 * The round coordinator on the test ports: one TestChain (its own account is the registry's owner and the one
 * verifier), a TestRoundAuthority on that chain, an in-memory store and the real digits. Other miners submit with
 * `TestChain.submitAs`; the chain's account judges with `Chain.recordVerdict`.
 */

/** The address whose verdicts count in a spec that names a verifier: the TestChain's own account. */
export const judge = defaultTestIdentity.miner.toLowerCase()
export const alice = "0x1111111111111111111111111111111111111111"
export const bob = "0x2222222222222222222222222222222222222222"
export const mallory = "0x6666666666666666666666666666666666666666"

/** Chain time under TestClock starts at 0: rounds end at this deadline unless told otherwise. */
export const deadline = 1_000
/** Room for the 8-hidden MLP's gradients (about 26 KB) and the adversary's. */
export const maxGradientBytes = 1024 * 1024

export const learningRound = (roundId: bigint, spec: RoundSpecV2, chunkCount: number, end = deadline): TestRound => ({
  roundId,
  spec: canonicalRoundSpec(spec),
  chunkCount,
  difficulty: 16,
  deadline: end
})

export interface RoundHarnessOptions {
  readonly rounds: ReadonlyArray<TestRound>
  readonly authority?: TestRoundAuthorityOptions
  /** Replaces the TestRoundAuthority (e.g. one that races another finalizer); it may use the TestChain. */
  readonly authorityLayer?: Layer.Layer<RoundAuthority, never, TestChain | Chain>
}

export const roundHarness = (options: RoundHarnessOptions) => {
  const chain = TestChain.layer({ verifier: true, rounds: options.rounds })
  // A replacement authority is merged last: its RoundAuthority wins, and TestRoundAuthority still counts nothing.
  const ports = Layer.mergeAll(
    TestRoundAuthority.layer(options.authority),
    TestGradientStore.layer(),
    TestTrainingData.layer(),
    options.authorityLayer ?? Layer.empty
  ).pipe(Layer.provideMerge(chain))
  return RoundCoordinator.layer.pipe(
    Layer.provideMerge(RoundAggregator.layer({ maxGradientBytes })),
    Layer.provideMerge(ports)
  )
}

/** `miner` submits `bytes` as the chunk: pinned first (unless `pin` is false), with its sha256 as gradient hash. */
export const submitBytes = Effect.fnUntraced(function*(
  miner: string,
  roundId: bigint,
  chunkId: number,
  bytes: Uint8Array,
  options: { readonly pin?: boolean; readonly gradientHash?: string } = {}
) {
  const store = yield* GradientStore
  const cid = options.pin === false ? yield* store.computeCid(bytes) : yield* store.add(bytes)
  const chain = yield* TestChain
  return yield* chain.submitAs(
    miner,
    new Submission({ roundId, chunkId, cid, gradientHash: options.gradientHash ?? sha256Hex(bytes), powNonce: 0n })
  )
})

/** `miner` submits an honest-looking pseudo-gradient of the chunk (see `honestGradient`). */
export const submitHonest = Effect.fnUntraced(function*(
  spec: RoundSpecV2,
  miner: string,
  roundId: bigint,
  chunkId: number,
  options: Omit<GradientOptions, "roundId" | "chunkId" | "miner"> = {}
) {
  const bytes = yield* honestGradient(spec, { roundId, chunkId, miner, ...options })
  return yield* submitBytes(miner, roundId, chunkId, bytes)
})

/** The chain's account (the spec's verifier) records its verdict on the chunk. */
export const recordVerdict = Effect.fnUntraced(function*(roundId: bigint, chunkId: number, verdict: VerdictName) {
  const chain = yield* Chain
  return yield* chain.recordVerdict(
    new VerdictRecord({
      roundId,
      chunkId,
      verdict: verdictCodes[verdict],
      reportHash: sha256Hex(`report ${roundId} ${chunkId} ${verdict}`)
    })
  )
})
