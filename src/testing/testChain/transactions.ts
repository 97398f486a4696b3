import { Effect } from "effect"
import { type MiningError, NetworkError, ValidationError } from "../../domain/errors.ts"
import { type MinerIdentity, SignedTransaction, Submission, SubmissionReceipt, type TransactionStatus } from "../../domain/mining.ts"
import { VerdictRecord } from "../../domain/verification.ts"
import { sha256Hex } from "../../layers/sha256Hex.ts"
import type { Blocks } from "./blocks.ts"
import { chainNow, type Registry } from "./registry.ts"
import type { SignedSubmission, SignedVerdict } from "./types.ts"
import type { Verdicts } from "./verdicts.ts"

/** A registry call the account signs: a submission or a verdict. */
type Call =
  | { readonly _tag: "submitGradient"; readonly submission: Submission }
  | { readonly _tag: "recordVerdict"; readonly record: VerdictRecord }

interface Entry {
  readonly signed: SignedTransaction
  readonly call: Call
  readonly mined?: { readonly success: boolean; readonly receipt: SubmissionReceipt } | undefined
}

/**
 * The account's transactions (submissions and verdicts): signed with the account's next nonce and mined at once,
 * unless their broadcast is lost (`loseBroadcasts`). A transaction whose nonce another one used is dropped; one never
 * broadcast is pending until its bytes are re-sent. The registry's checks run when signing (the simulation) and again
 * when mining.
 */
export const makeTransactions = (deps: {
  readonly identity: MinerIdentity
  readonly registry: Registry
  readonly verdicts: Verdicts
  readonly blocks: Blocks
}) => {
  const { blocks, identity, registry, verdicts } = deps
  const entries: Array<Entry> = []
  /** How many of the account's transactions are mined (or dropped in favour of another). */
  let accountNonce = 0
  let lostBroadcasts = 0

  const account = () => [identity.chainId, identity.registry.toLowerCase(), identity.miner.toLowerCase()]

  /**
   * `0x` + sha256 of the identity, the call's fields and the nonce: the same across instances. A submission's is as it
   * always was (no call name), so hashes journaled by earlier versions still match.
   */
  const txHashOf = (call: Call, nonce: number): string =>
    sha256Hex(
      (call._tag === "submitGradient"
        ? [...account(), call.submission.roundId, call.submission.chunkId, call.submission.cid,
          call.submission.gradientHash.toLowerCase(), call.submission.powNonce, nonce]
        : ["recordVerdict", ...account(), call.record.roundId, call.record.chunkId, call.record.verdict,
          call.record.reportHash.toLowerCase(), nonce]).join(":")
    )

  /** What the test chain "signs": the call's fields and the nonce as JSON, hashed like a transaction. */
  const sign = (call: Call, nonce: number): SignedTransaction => {
    const fields = call._tag === "submitGradient"
      ? [call.submission.roundId.toString(), call.submission.chunkId, call.submission.cid, call.submission.gradientHash,
        call.submission.powNonce.toString(), nonce]
      : ["recordVerdict", call.record.roundId.toString(), call.record.chunkId, call.record.verdict, call.record.reportHash, nonce]
    return new SignedTransaction({
      hash: txHashOf(call, nonce),
      raw: `0x${Buffer.from(JSON.stringify(fields)).toString("hex")}`,
      nonce
    })
  }

  const decodeRaw = (raw: string): Call | undefined => {
    try {
      const fields = JSON.parse(Buffer.from(raw.slice(2), "hex").toString())
      if (fields[0] === "recordVerdict") {
        const [, roundId, chunkId, verdict, reportHash] = fields
        return { _tag: "recordVerdict", record: new VerdictRecord({ roundId: BigInt(roundId), chunkId, verdict, reportHash }) }
      }
      const [roundId, chunkId, cid, gradientHash, powNonce] = fields
      return {
        _tag: "submitGradient",
        submission: new Submission({ roundId: BigInt(roundId), chunkId, cid, gradientHash, powNonce: BigInt(powNonce) })
      }
    } catch {
      return undefined
    }
  }

  const check = (call: Call): Effect.Effect<unknown, MiningError> =>
    call._tag === "submitGradient" ? registry.check(call.submission) : verdicts.check(call.record)

  /** Mines a signed call at its nonce: applied on success, a reverted receipt otherwise. */
  const mine = Effect.fnUntraced(function*(entry: Entry) {
    const index = entries.indexOf(entry)
    const outcome = yield* Effect.result(check(entry.call))
    const block = blocks.mine(yield* chainNow)
    accountNonce = Math.max(accountNonce, entry.signed.nonce + 1)
    const receipt = new SubmissionReceipt({
      txHash: entry.signed.hash,
      blockNumber: block,
      blockHash: blocks.hashOf(block)!,
      alreadySubmitted: false
    })
    entries[index] = { ...entry, mined: { success: outcome._tag === "Success", receipt } }
    if (outcome._tag === "Failure") return yield* outcome.failure
    if (entry.call._tag === "submitGradient") registry.record(entry.call.submission, receipt)
    else verdicts.record(entry.call.record, block)
    return receipt
  })

  const send = Effect.fnUntraced(function*(
    call: Call,
    beforeBroadcast?: (signed: SignedTransaction) => Effect.Effect<void, MiningError>
  ) {
    yield* check(call) // the simulation
    const entry: Entry = { signed: sign(call, accountNonce), call }
    if (beforeBroadcast !== undefined) yield* beforeBroadcast(entry.signed)
    entries.push(entry)
    if (lostBroadcasts > 0) {
      lostBroadcasts--
      return yield* new NetworkError({ message: `broadcasting ${entry.signed.hash}: connection reset`, service: "chain" })
    }
    return yield* mine(entry)
  })

  const entryOf = (signed: SignedTransaction) => entries.find((e) => e.signed.hash === signed.hash)

  const transactionStatus = (signed: SignedTransaction): TransactionStatus => {
    const entry = entryOf(signed)
    if (entry?.mined !== undefined) return { _tag: "Mined", success: entry.mined.success, receipt: entry.mined.receipt }
    return signed.nonce < accountNonce ? { _tag: "Dropped" } : { _tag: "Pending" }
  }

  const rebroadcast = Effect.fnUntraced(function*(signed: SignedTransaction) {
    const known = entryOf(signed)
    if (known?.mined !== undefined || signed.nonce < accountNonce) return // "already known" / "nonce too low"
    if (signed.nonce > accountNonce) return // waits in the pool for the nonces before it
    const call = known?.call ?? decodeRaw(signed.raw)
    if (call === undefined) return yield* new ValidationError({ message: `cannot decode ${signed.hash}` })
    const entry = known ?? { signed, call }
    if (known === undefined) entries.push(entry)
    yield* mine(entry).pipe(Effect.ignore)
  })

  /** Forgets the mining of transactions in blocks after `target`: they are pending again, their nonces free. */
  const rewindTo = (target: bigint): void => {
    for (let i = 0; i < entries.length; i++) {
      const { call, mined, signed } = entries[i]!
      if (mined !== undefined && mined.receipt.blockNumber > target) entries[i] = { signed, call }
    }
    accountNonce = entries.filter((e) => e.mined !== undefined).reduce((n, e) => Math.max(n, e.signed.nonce + 1), 0)
  }

  const reset = (): void => {
    entries.length = 0
    accountNonce = 0
  }

  return {
    submitGradient: (
      submission: Submission,
      beforeBroadcast?: (signed: SignedTransaction) => Effect.Effect<void, MiningError>
    ) => send({ _tag: "submitGradient", submission }, beforeBroadcast),
    recordVerdict: (
      record: VerdictRecord,
      beforeBroadcast?: (signed: SignedTransaction) => Effect.Effect<void, MiningError>
    ) => send({ _tag: "recordVerdict", record }, beforeBroadcast),
    transactionStatus,
    rebroadcast,
    rewindTo,
    reset,
    /** The submission transactions, in signing order. */
    all: (): ReadonlyArray<SignedSubmission> =>
      entries.flatMap(({ call, mined, signed }) =>
        call._tag !== "submitGradient"
          ? []
          : [mined === undefined ? { signed, submission: call.submission } : { signed, submission: call.submission, mined }]
      ),
    /** The verdict transactions, in signing order. */
    verdicts: (): ReadonlyArray<SignedVerdict> =>
      entries.flatMap(({ call, mined, signed }) =>
        call._tag !== "recordVerdict"
          ? []
          : [mined === undefined ? { signed, record: call.record } : { signed, record: call.record, mined }]
      ),
    loseBroadcasts: (count: number) => void (lostBroadcasts += count),
    useNextNonce: () => void accountNonce++
  }
}
