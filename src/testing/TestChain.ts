import { createHash } from "node:crypto"
import { Context, Effect, Layer } from "effect"
import { ChainRevertError } from "../domain/errors.ts"
import { MinerIdentity, type Submission, SubmissionReceipt } from "../domain/mining.ts"
import { Chain } from "../services/Chain.ts"
import { type FaultPlan, makeFaultInjector } from "./Faults.ts"

export type ChainMethod = "identity" | "submitGradient"

/** A submission the test chain accepted, with the receipt it answered. */
export interface RecordedSubmission {
  readonly roundId: bigint
  readonly chunkId: number
  readonly cid: string
  readonly gradientHash: string
  readonly powNonce: bigint
  readonly receipt: SubmissionReceipt
}

export interface TestChainOptions {
  readonly faults?: FaultPlan<ChainMethod>
  /** Overrides parts of the default identity (anvil's chain id, first deployment address, second account). */
  readonly identity?: Partial<{ readonly chainId: number; readonly registry: string; readonly miner: string }>
}

/** Anvil's defaults: chain 31337, the first contract deployed by account 0, account 1 as the miner. */
export const defaultTestIdentity = {
  chainId: 31337,
  registry: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
  miner: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
} as const

/** Control side of the test Chain. */
export class TestChain extends Context.Service<TestChain, {
  readonly setFaults: (faults: FaultPlan<ChainMethod>) => Effect.Effect<void>
  readonly calls: (method: ChainMethod) => Effect.Effect<number>
  /** Submissions recorded on the chain, in block order (answers `alreadySubmitted: true` add nothing). */
  readonly submissions: Effect.Effect<ReadonlyArray<RecordedSubmission>>
}>()("r3mes/testing/TestChain") {
  /**
   * A Chain with the contract's one-submission-per-chunk rule and nothing else (no lease, PoW or deadline checks):
   * a second submission for a (roundId, chunkId) with the same gradient hash answers the original receipt with
   * `alreadySubmitted: true`, with another hash it is a ChainRevertError `AlreadySubmitted`. Each accepted
   * submission gets the next block number (from 1) and a tx hash of `0x` + sha256 of the identity and the
   * submission's fields.
   */
  static readonly layer = (options: TestChainOptions = {}): Layer.Layer<Chain | TestChain> =>
    Layer.effectContext(Effect.gen(function*() {
      const faults = yield* makeFaultInjector(options.faults)
      const identity = new MinerIdentity({ ...defaultTestIdentity, ...options.identity })
      const byChunk = new Map<string, RecordedSubmission>()
      const recorded: Array<RecordedSubmission> = []
      let blockNumber = 0n

      const txHashOf = (s: Submission): string =>
        `0x${
          createHash("sha256")
            .update(
              [
                identity.chainId,
                identity.registry.toLowerCase(),
                identity.miner.toLowerCase(),
                s.roundId,
                s.chunkId,
                s.cid,
                s.gradientHash.toLowerCase(),
                s.powNonce
              ].join(":")
            )
            .digest("hex")
        }`

      const submit = Effect.fnUntraced(function*(submission: Submission) {
        const chunkKey = `${submission.roundId}:${submission.chunkId}`
        const existing = byChunk.get(chunkKey)
        if (existing !== undefined) {
          if (existing.gradientHash.toLowerCase() === submission.gradientHash.toLowerCase()) {
            return new SubmissionReceipt({ ...existing.receipt, alreadySubmitted: true })
          }
          return yield* new ChainRevertError({
            message:
              `AlreadySubmitted: chunk ${submission.chunkId} of round ${submission.roundId} already holds gradient ` +
              `${existing.gradientHash}, not ${submission.gradientHash}`,
            errorName: "AlreadySubmitted",
            args: [submission.roundId.toString(), submission.chunkId.toString()]
          })
        }
        blockNumber += 1n
        const receipt = new SubmissionReceipt({ txHash: txHashOf(submission), blockNumber, alreadySubmitted: false })
        const entry: RecordedSubmission = {
          roundId: submission.roundId,
          chunkId: submission.chunkId,
          cid: submission.cid,
          gradientHash: submission.gradientHash,
          powNonce: submission.powNonce,
          receipt
        }
        byChunk.set(chunkKey, entry)
        recorded.push(entry)
        return receipt
      })

      const port = Chain.of({
        identity: faults.wrap("identity", Effect.succeed(identity)),
        submitGradient: (submission) => faults.wrap("submitGradient", submit(submission))
      })

      const control = TestChain.of({
        setFaults: faults.set,
        calls: faults.calls,
        submissions: Effect.sync(() => [...recorded])
      })

      return Context.make(Chain, port).pipe(Context.add(TestChain, control))
    }))
}
