import { Effect, Schema } from "effect"
import { ValidationError } from "./errors.ts"
import { SignedTransaction } from "./mining.ts"

/**
 * Intents are journaled as events before their side effect (DESIGN.md "Durability"): `pin_intent` carries the CID,
 * `submit_intent` the signed transaction (hash, raw bytes, nonce) as JSON. Recovery reads them back from there.
 */
export const PIN_INTENT = "pin_intent"
export const SUBMIT_INTENT = "submit_intent"

const SubmitIntentJson = Schema.fromJsonString(Schema.Struct({ hash: Schema.String, raw: Schema.String, nonce: Schema.Int }))

export const encodeSubmitIntent = (signed: SignedTransaction): string =>
  JSON.stringify({ hash: signed.hash, raw: signed.raw, nonce: signed.nonce })

export const decodeSubmitIntent = (detail: string | null): Effect.Effect<SignedTransaction, ValidationError> =>
  Schema.decodeUnknownEffect(SubmitIntentJson)(detail ?? "").pipe(
    Effect.flatMap((v) => Schema.decodeUnknownEffect(SignedTransaction)(v)),
    Effect.mapError((e) => new ValidationError({ message: `unreadable submit intent in the journal: ${e.message}` }))
  )
