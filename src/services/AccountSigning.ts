import type { Effect } from "effect"
import type { MiningError } from "../domain/errors.ts"
import type { SignedTransaction } from "../domain/mining.ts"

/*
 * The account's signer as the writers of a fleet reach it (DESIGN.md "Fleet": one signer per account). The protocol
 * of a lend, shared by the writer that serves it (layers/chain/viemWriter.ts), the writers that use it, and the
 * cluster entity that carries it between runners (layers/fleet/accountSigner.ts).
 */

/**
 * How long bytes lent to a caller wait for it before a gap fill sends them: its intent is one journal write
 * (milliseconds), and every later transaction of the account waits behind a lent nonce the node lacks.
 */
export const lendPatienceMs = 5_000

/** A call of the registry to sign: what the signer needs (the caller simulated it and estimated its gas). */
export interface CallToSign {
  readonly functionName: string
  readonly data: `0x${string}`
  readonly gas: bigint | undefined
  /** The arguments name the transaction (a submission, a completion; not a claim): see `reservedSameCall`. */
  readonly idempotent: boolean
}

/** Bytes signed for a caller: reserved in the ledger at their nonce, theirs to journal and broadcast. */
export interface LentTransaction {
  readonly signed: SignedTransaction
  /**
   * The account's transaction reserved before for this very call (another signer's, a caller that died): the caller
   * journals and sends it as it is, and never gives it back.
   */
  readonly reservedBefore: boolean
}

/**
 * The account's signer, as the writers of a fleet reach it (the writer's serving side is viemWriter.ts `signer`). The rules of
 * a lend: the caller journals its intent with the lent bytes, then broadcasts them; an intent that failed is given
 * back at once (`release`); bytes a node refused outright are reported (`refused`). A caller silent for
 * `lendPatienceMs` (it died, it froze) loses the lend: its bytes are the account's from then on, sent by the next gap
 * fill (the caller may have journaled them), and a late `release` answers "kept".
 */
export interface AccountSigning {
  readonly lend: (call: CallToSign) => Effect.Effect<LentTransaction, MiningError>
  /** "undone": the nonce now carries a no-op, the bytes are never sent; "kept": they are the account's, go on. */
  readonly release: (signed: SignedTransaction) => Effect.Effect<"undone" | "kept", MiningError>
  readonly refused: (signed: SignedTransaction) => Effect.Effect<void, MiningError>
  readonly fillGapBelow: (nonce: number) => Effect.Effect<void, MiningError>
}

