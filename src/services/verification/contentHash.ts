import { Effect } from "effect"

/**
 * `0x` + sha256 of bytes, by the platform's Web Crypto (native speed on envelopes of many MiB, without importing an
 * adapter into a core service); the domain's pure-TS SHA-256 is the reference, too slow for 100 MiB.
 */
export const sha256Hex = (bytes: Uint8Array): Effect.Effect<string> =>
  Effect.map(
    Effect.promise(() => globalThis.crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>)),
    (digest) => `0x${Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("")}`
  )
