/**
 * Hex as the chain writes it. The domain's own (it imports nothing but effect); tests check it against viem's.
 */

/** A 0x-prefixed lowercase hex string. */
export type Hex = `0x${string}`

const hexDigits = "0123456789abcdef"

/** Bytes → 0x-prefixed lowercase hex. */
export const bytesToHex = (bytes: Uint8Array): Hex => {
  let out = "0x"
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!
    out += hexDigits[b >>> 4]! + hexDigits[b & 15]!
  }
  return out as Hex
}

/**
 * 0x-prefixed hex (either case) → bytes. Throws a RangeError on malformed input, or when `byteLength` is given and
 * differs: callers hold values that a Schema already checked, so a bad one here is a programming error.
 */
export const hexToBytes = (hex: string, byteLength?: number): Uint8Array => {
  if (!/^0x(?:[0-9a-fA-F]{2})*$/.test(hex)) throw new RangeError(`not 0x-prefixed hex of whole bytes: ${JSON.stringify(hex)}`)
  const n = (hex.length - 2) / 2
  if (byteLength !== undefined && n !== byteLength) {
    throw new RangeError(`expected ${byteLength} bytes of hex, got ${n}: ${hex}`)
  }
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = Number.parseInt(hex.slice(2 + 2 * i, 4 + 2 * i), 16)
  return out
}
