import { Effect } from "effect"
import { type MiningError, NetworkError, ValidationError } from "../../domain/errors.ts"
import { type MinerIdentity, SignedTransaction, Submission, SubmissionReceipt, type TransactionStatus } from "../../domain/mining.ts"
import { sha256Hex } from "../../layers/sha256Hex.ts"
import type { Blocks } from "./blocks.ts"
import type { Registry } from "./registry.ts"
import type { SignedSubmission } from "./types.ts"

/**
 * The miner account's submission transactions: signed with the account's next nonce and mined at once, unless their
 * broadcast is lost (`loseBroadcasts`). A transaction whose nonce another one used is dropped; one never broadcast is
 * pending until its bytes are re-sent. The registry's checks run when signing (the simulation) and again when mining.
 */
export const makeTransactions = (deps: {
  readonly identity: MinerIdentity
  readonly registry: Registry
  readonly blocks: Blocks
}) => {
  const { blocks, identity, registry } = deps
  const signedTransactions: Array<SignedSubmission> = []
  /** How many of the account's transactions are mined (or dropped in favour of another). */
  let accountNonce = 0
  let lostBroadcasts = 0

  /** `0x` + sha256 of the identity, the submission's fields and the nonce: the same across instances. */
  const txHashOf = (s: Submission, nonce: number): string =>
    sha256Hex(
      [
        identity.chainId,
        identity.registry.toLowerCase(),
        identity.miner.toLowerCase(),
        s.roundId,
        s.chunkId,
        s.cid,
        s.gradientHash.toLowerCase(),
        s.powNonce,
        nonce
      ].join(":")
    )

  /** What the test chain "signs": the submission's fields and the nonce as JSON, hashed like a transaction. */
  const sign = (s: Submission, nonce: number): SignedTransaction =>
    new SignedTransaction({
      hash: txHashOf(s, nonce),
      raw: `0x${
        Buffer.from(JSON.stringify([s.roundId.toString(), s.chunkId, s.cid, s.gradientHash, s.powNonce.toString(), nonce]))
          .toString("hex")
      }`,
      nonce
    })

  const decodeRaw = (raw: string): Submission | undefined => {
    try {
      const [roundId, chunkId, cid, gradientHash, powNonce] = JSON.parse(Buffer.from(raw.slice(2), "hex").toString())
      return new Submission({ roundId: BigInt(roundId), chunkId, cid, gradientHash, powNonce: BigInt(powNonce) })
    } catch {
      return undefined
    }
  }

  /** Mines a signed submission at its nonce: recorded on success, a reverted receipt otherwise. */
  const mine = Effect.fnUntraced(function*(entry: SignedSubmission) {
    const index = signedTransactions.indexOf(entry)
    const outcome = yield* Effect.result(registry.check(entry.submission))
    const block = blocks.mine()
    accountNonce = Math.max(accountNonce, entry.signed.nonce + 1)
    const receipt = new SubmissionReceipt({
      txHash: entry.signed.hash,
      blockNumber: block,
      blockHash: blocks.hashOf(block)!,
      alreadySubmitted: false
    })
    signedTransactions[index] = { ...entry, mined: { success: outcome._tag === "Success", receipt } }
    if (outcome._tag === "Failure") return yield* outcome.failure
    registry.record(entry.submission, receipt)
    return receipt
  })

  const submitGradient = Effect.fnUntraced(function*(
    submission: Submission,
    beforeBroadcast?: (signed: SignedTransaction) => Effect.Effect<void, MiningError>
  ) {
    yield* registry.check(submission) // the simulation
    const entry: SignedSubmission = { signed: sign(submission, accountNonce), submission }
    if (beforeBroadcast !== undefined) yield* beforeBroadcast(entry.signed)
    signedTransactions.push(entry)
    if (lostBroadcasts > 0) {
      lostBroadcasts--
      return yield* new NetworkError({ message: `broadcasting ${entry.signed.hash}: connection reset`, service: "chain" })
    }
    return yield* mine(entry)
  })

  const entryOf = (signed: SignedTransaction) => signedTransactions.find((e) => e.signed.hash === signed.hash)

  const transactionStatus = (signed: SignedTransaction): TransactionStatus => {
    const entry = entryOf(signed)
    if (entry?.mined !== undefined) return { _tag: "Mined", success: entry.mined.success, receipt: entry.mined.receipt }
    return signed.nonce < accountNonce ? { _tag: "Dropped" } : { _tag: "Pending" }
  }

  const rebroadcast = Effect.fnUntraced(function*(signed: SignedTransaction) {
    const known = entryOf(signed)
    if (known?.mined !== undefined || signed.nonce < accountNonce) return // "already known" / "nonce too low"
    if (signed.nonce > accountNonce) return // waits in the pool for the nonces before it
    const submission = known?.submission ?? decodeRaw(signed.raw)
    if (submission === undefined) return yield* new ValidationError({ message: `cannot decode ${signed.hash}` })
    const entry = known ?? { signed, submission }
    if (known === undefined) signedTransactions.push(entry)
    yield* mine(entry).pipe(Effect.ignore)
  })

  /** Forgets the mining of transactions in blocks after `target`: they are pending again, their nonces free. */
  const rewindTo = (target: bigint): void => {
    for (let i = 0; i < signedTransactions.length; i++) {
      const { mined, signed, submission } = signedTransactions[i]!
      if (mined !== undefined && mined.receipt.blockNumber > target) signedTransactions[i] = { signed, submission }
    }
    accountNonce = signedTransactions.filter((e) => e.mined !== undefined).reduce(
      (n, e) => Math.max(n, e.signed.nonce + 1),
      0
    )
  }

  const reset = (): void => {
    signedTransactions.length = 0
    accountNonce = 0
  }

  return {
    submitGradient,
    transactionStatus,
    rebroadcast,
    rewindTo,
    reset,
    all: () => [...signedTransactions],
    loseBroadcasts: (count: number) => void (lostBroadcasts += count),
    useNextNonce: () => void accountNonce++
  }
}
