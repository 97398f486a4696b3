import { Context, type Effect, Schema } from "effect"
import { type MiningError, ValidationError } from "../domain/errors.ts"

/** What a signer records at a nonce before anyone broadcasts it. */
export interface NonceReservation {
  /** keccak256 of `signedBytes`, 0x-prefixed. */
  readonly transactionHash: string
  /** The signed, serialized transaction, 0x-prefixed hex: any runner can send it again. */
  readonly signedBytes: string
  /** Who signed it (a runner id): the only one that may `replace` it (see the rules on `NonceLedger`). */
  readonly holder: string
}

/** A reserved nonce of an account, as the ledger holds it. Hex is lower-case whatever was given. */
export interface NonceEntry extends NonceReservation {
  /** Lower-case. */
  readonly account: string
  readonly chainId: number
  readonly nonce: number
  /** 0 as reserved, +1 per `replace` (a takeover included). */
  readonly revision: number
  /** The hashes this nonce held before, oldest first: a replaced row keeps its history, never deleted. */
  readonly replacedHashes: ReadonlyArray<string>
}

export interface NonceListQuery {
  /** Only nonces at or above. */
  readonly fromNonce?: number | undefined
  readonly limit?: number | undefined
}

/**
 * Another transaction holds the nonce: the fence refused a second one. Carries what is there, so the loser knows
 * which bytes own the nonce (and whose they are). Never retryable as it is: signing again at the same nonce loses again.
 */
export class NonceTaken extends Schema.TaggedError<NonceTaken>()("NonceTaken", {
  message: Schema.String,
  hint: Schema.optional(Schema.String),
  account: Schema.String,
  chainId: Schema.Number,
  nonce: Schema.Number,
  /** The transaction that holds the nonce. */
  transactionHash: Schema.String,
  /** Its holder. */
  holder: Schema.String
}) {}

export const nonceTaken = (entry: NonceEntry, attempted: string): NonceTaken =>
  new NonceTaken({
    message: `nonce ${entry.nonce} of ${entry.account} on chain ${entry.chainId} is taken by ${entry.transactionHash} ` +
      `(held by ${entry.holder}); ${attempted} was refused`,
    hint: "do not broadcast the refused bytes: sign again at the ledger's next nonce (another signer of the account " +
      "is running: check that one runner holds the signer)",
    account: entry.account,
    chainId: entry.chainId,
    nonce: entry.nonce,
    transactionHash: entry.transactionHash,
    holder: entry.holder
  })

const addressPattern = /^0x[0-9a-fA-F]{40}$/
const hashPattern = /^0x[0-9a-fA-F]{64}$/
const bytesPattern = /^0x(?:[0-9a-fA-F]{2})+$/

const invalid = (message: string, field: string) =>
  new ValidationError({ message: `nonce ledger: ${message}`, field, hint: "a bug in the caller: report it" })

/** The account lower-cased, or why the arguments cannot be a row; shared by every ledger so they refuse alike. */
export const checkKey = (account: string, chainId: number, nonce?: number): string | ValidationError => {
  if (!addressPattern.test(account)) return invalid(`${JSON.stringify(account)} is not an address`, "account")
  if (!Number.isSafeInteger(chainId) || chainId <= 0) return invalid(`chain id ${chainId} is not a positive integer`, "chainId")
  if (nonce !== undefined && (!Number.isSafeInteger(nonce) || nonce < 0)) {
    return invalid(`nonce ${nonce} is not a non-negative safe integer`, "nonce")
  }
  return account.toLowerCase()
}

/** The reservation with its hex lower-cased, or why it cannot be stored. */
export const checkReservation = (r: NonceReservation): NonceReservation | ValidationError => {
  if (!hashPattern.test(r.transactionHash)) return invalid(`${r.transactionHash} is not a transaction hash`, "transactionHash")
  if (!bytesPattern.test(r.signedBytes)) return invalid("the signed bytes are not 0x-prefixed hex bytes", "signedBytes")
  if (r.holder === "") return invalid("the holder is empty", "holder")
  return { transactionHash: r.transactionHash.toLowerCase(), signedBytes: r.signedBytes.toLowerCase(), holder: r.holder }
}

/**
 * Port: the account's nonces, one row per (chain id, account, nonce) under a uniqueness constraint — the fleet's
 * fence. A signer's lease is not a fence (a runner paused past its lease still believes it signs); this is: of two
 * signers that sign different transactions at one nonce, only the one whose `reserve` won may broadcast.
 *
 * Rules for every signer of an account:
 * 1. Sign, then `reserve`, then broadcast (and journal the intent): bytes are broadcast at a nonce only if the
 *    ledger holds them there. A `NonceTaken` means: never broadcast the refused bytes; sign again at a later nonce.
 * 2. Rows are never deleted. A reserved nonce must be filled (a gap blocks every later transaction of the account):
 *    by its recorded bytes, which any runner may send again — after taking the row over (rule 4) when another
 *    holder reserved it.
 * 3. `replace` is for the holder's own bytes that no node was ever given (their journaling failed before the first
 *    send, or the node refused them outright): a compare-and-set on the current (hash, holder), so it loses to
 *    anyone who took the row over or replaced it first.
 * 4. Taking over = `replace` with the same hash and bytes and oneself as holder: from then on the former holder's
 *    `replace` fails, so the bytes one runner sends are never swapped by another.
 * Account is case-insensitive (stored lower-case); nonces are non-negative safe integers (viem's `number`). Every
 * write is durable when it returns.
 */
export class NonceLedger extends Context.Service<NonceLedger, {
  /**
   * Records the signed bytes at `nonce`. Idempotent for the same transaction hash and holder (a retry after a lost
   * answer). Another transaction there, or the same bytes reserved by another holder: `NonceTaken` — two signers of
   * one account sign identical bytes for identical calls (same nonce, calldata and gas), and two writes must never
   * take one transaction for their own.
   */
  readonly reserve: (
    account: string,
    chainId: number,
    nonce: number,
    reservation: NonceReservation
  ) => Effect.Effect<void, NonceTaken | MiningError>
  /**
   * Compare-and-set of the row at `nonce`: written when it holds `expected` (hash and holder), also when it already
   * holds `next` (a retry). Something else there: `NonceTaken`; nothing reserved there: `ValidationError`.
   */
  readonly replace: (
    account: string,
    chainId: number,
    nonce: number,
    expected: { readonly transactionHash: string; readonly holder: string },
    next: NonceReservation
  ) => Effect.Effect<void, NonceTaken | MiningError>
  /** The highest reserved nonce + 1; undefined when the account has none on that chain. */
  readonly next: (account: string, chainId: number) => Effect.Effect<number | undefined, MiningError>
  readonly get: (account: string, chainId: number, nonce: number) => Effect.Effect<NonceEntry | undefined, MiningError>
  /** Ascending by nonce. */
  readonly list: (
    account: string,
    chainId: number,
    query?: NonceListQuery
  ) => Effect.Effect<ReadonlyArray<NonceEntry>, MiningError>
}>()("r3mes/services/NonceLedger") {}
