/**
 * SHA-256 as a `0x`-prefixed lowercase hex string, the form content hashes take on chain and in
 * manifests. Lives in layers (not domain) because it uses node:crypto; the domain keeps its own
 * pure-TS SHA-256 as the reference implementation.
 */
import { createHash } from "node:crypto"

/** Hashes bytes as-is and strings as UTF-8. */
export const sha256Hex = (data: Uint8Array | string): `0x${string}` =>
  `0x${createHash("sha256").update(data).digest("hex")}`

/** The raw 32-byte digest, for callers that build on it (multihashes, derived test bytes). */
export const sha256Bytes = (...parts: ReadonlyArray<Uint8Array | string>): Uint8Array => {
  const hash = createHash("sha256")
  for (const part of parts) hash.update(part)
  return new Uint8Array(hash.digest())
}
