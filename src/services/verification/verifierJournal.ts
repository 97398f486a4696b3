import { Effect, Schema } from "effect"
import { ValidationError } from "../../domain/errors.ts"
import { type MinerIdentity, SignedTransaction } from "../../domain/mining.ts"
import { VerdictCodeSchema } from "../../domain/verification.ts"
import type { Journal } from "../Journal.ts"

/**
 * What the verifier keeps in the journal's meta entries (a key/value store), under one prefix per
 * (chain id, registry, verifier address) so a journal that served another chain or account never misleads it:
 *
 * - `…:cursor`  the next block to read (decimal). Every submission in the blocks before it is settled: its verdict
 *               is on chain, or it was not sampled, or the chain refused it a verdict for good;
 * - `…:intent`  the verdict being recorded, with its signed transaction, written before the broadcast
 *               (DESIGN.md "Durability"); empty once the chain has ruled. Submissions are judged one at a time, in
 *               block order, so there is at most one, and a start finds it under this one key.
 *
 * Journals written before submissions carried their block time also hold `…:fetch` (when the first fetch of the
 * chunk being judged was tried, the window's start then). The window now runs from the submission's block time, a
 * fact of the chain, so that entry is no longer read: an old journal works as it is, and the leftover is a few bytes.
 */

export interface VerifierKeys {
  readonly cursor: string
  readonly intent: string
}

export const verifierKeys = (identity: MinerIdentity): VerifierKeys => {
  const prefix = `verifier:${identity.chainId}:${identity.registry.toLowerCase()}:${identity.miner.toLowerCase()}`
  return { cursor: `${prefix}:cursor`, intent: `${prefix}:intent` }
}

/** A verdict journaled before its broadcast. */
export class VerdictIntent extends Schema.Class<VerdictIntent>("r3mes/VerdictIntent")({
  round_id: Schema.String,
  chunk_id: Schema.Int,
  verdict: VerdictCodeSchema,
  report_hash: Schema.String,
  report_cid: Schema.String,
  tx: Schema.Struct({ hash: Schema.String, raw: Schema.String, nonce: Schema.Int })
}) {
  get signed(): SignedTransaction {
    return new SignedTransaction(this.tx)
  }
}

const IntentJson = Schema.fromJsonString(VerdictIntent)

const corrupt = (key: string, value: string) =>
  new ValidationError({
    message: `the journal's meta entry ${key} is not what the verifier wrote: ${value.slice(0, 200)}`,
    field: key,
    hint: "the journal was changed by something else; stop the verifier and delete this meta entry " +
      "(the chain keeps every verdict, a restart finds them)"
  })

/** The verifier's view of the journal. */
export const makeVerifierJournal = (journal: Journal["Service"], keys: VerifierKeys) => ({
  /** The next block to read; `fallback` when the verifier never ran against this chain. */
  cursor: (fallback: bigint) =>
    Effect.flatMap(journal.getMeta(keys.cursor), (value) => {
      if (value === undefined) return Effect.succeed(fallback)
      return /^[0-9]+$/.test(value) ? Effect.succeed(BigInt(value)) : Effect.fail(corrupt(keys.cursor, value))
    }),
  setCursor: (next: bigint) => journal.setMeta(keys.cursor, next.toString()),

  intent: Effect.flatMap(journal.getMeta(keys.intent), (value) =>
    value === undefined || value === ""
      ? Effect.succeed(undefined)
      : Schema.decodeUnknownEffect(IntentJson)(value).pipe(Effect.mapError(() => corrupt(keys.intent, value)))),
  setIntent: (intent: VerdictIntent) =>
    Effect.flatMap(Schema.encodeEffect(IntentJson)(intent).pipe(Effect.orDie), (json) => journal.setMeta(keys.intent, json)),
  clearIntent: journal.setMeta(keys.intent, "")
})

export type VerifierJournal = ReturnType<typeof makeVerifierJournal>
