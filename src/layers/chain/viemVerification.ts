import { Effect, Option } from "effect"
import { getAddress, type Hex, isAddress, type PrivateKeyAccount } from "viem"
import { type MiningError, ValidationError } from "../../domain/errors.ts"
import type { OnChainSubmission, SignedTransaction } from "../../domain/mining.ts"
import { OnChainVerdict, type VerdictRecord } from "../../domain/verification.ts"
import { receiptOf, type makeViemWriter } from "./viemWriter.ts"

/** A registry view call, its result as viem decodes it. */
type Read = (functionName: string, args?: ReadonlyArray<unknown>) => Effect.Effect<any, MiningError>
/** A registry event query (logs in chain order), filtered by indexed arguments and blocks. */
type Events = (
  eventName: "GradientSubmitted" | "ChunkCompleted",
  args: Record<string, unknown>,
  blocks?: { readonly fromBlock: bigint; readonly toBlock?: bigint }
) => Effect.Effect<ReadonlyArray<any>, MiningError>

/**
 * The verifier's side of the Chain port on viem (DESIGN.md "Verification"): every miner's submissions by block range,
 * verdicts written through the account's one nonce writer (so they share the journal-before-broadcast rule of
 * submissions), and the registry's verdict views.
 */
export const makeViemVerification = (deps: {
  readonly read: Read
  readonly events: Events
  readonly writer: ReturnType<typeof makeViemWriter>
  readonly account: PrivateKeyAccount
  /** A GradientSubmitted log as the domain's submission (its block's timestamp read once per block). */
  readonly submissionOf: (log: any, completed: boolean) => Effect.Effect<OnChainSubmission, MiningError>
}) => {
  const { account, events, read, submissionOf, writer } = deps

  const submissionsBetween = Effect.fn("Chain.submissionsBetween")(function*(fromBlock: bigint, toBlock: bigint) {
    if (toBlock < fromBlock) return [] as ReadonlyArray<OnChainSubmission>
    const submitted = yield* events("GradientSubmitted", {}, { fromBlock, toBlock })
    if (submitted.length === 0) return [] as ReadonlyArray<OnChainSubmission>
    // A chunk is completed after its submission, so completions of these chunks lie at or after `fromBlock`: one query
    // up to the head gives "completed as the chain holds it now" without a read per submission.
    const completed = new Set(
      (yield* events("ChunkCompleted", {}, { fromBlock })).map((l) => `${l.args.roundId}:${l.args.chunkId}`)
    )
    return (yield* Effect.forEach(submitted, (l) =>
      submissionOf(l, completed.has(`${l.args.roundId}:${l.args.chunkId}`)))) as ReadonlyArray<OnChainSubmission>
  })

  const recordVerdict = Effect.fn("Chain.recordVerdict")(function*(
    record: VerdictRecord,
    beforeBroadcast?: (signed: SignedTransaction) => Effect.Effect<void, MiningError>
  ) {
    yield* Effect.annotateCurrentSpan({
      "r3mes.round_id": record.roundId.toString(),
      "r3mes.chunk_id": record.chunkId,
      "r3mes.verdict": record.verdict
    })
    const receipt = yield* writer.write(
      "recordVerdict",
      [record.roundId, record.chunkId, record.verdict, record.reportHash as Hex],
      beforeBroadcast
    )
    return receiptOf(receipt)
  })

  const getVerdict = Effect.fn("Chain.getVerdict")(function*(roundId: bigint, chunkId: number, verifier: string) {
    if (!isAddress(verifier, { strict: false })) {
      return yield* new ValidationError({
        message: `verifier ${verifier} is not a 0x-prefixed 20-byte address`,
        hint: "pass the verifier's account address"
      })
    }
    const [verdict, reportHash] = yield* read("getVerdict", [roundId, chunkId, verifier])
    if (verdict === 0) return Option.none<OnChainVerdict>()
    return Option.some(new OnChainVerdict({ roundId, chunkId, verifier: getAddress(verifier), verdict, reportHash }))
  })

  const isVerifier = read("isVerifier", [account.address]).pipe(
    Effect.map((allowed) => allowed as boolean),
    Effect.withSpan("Chain.isVerifier")
  )

  return { submissionsBetween, recordVerdict, getVerdict, isVerifier }
}
