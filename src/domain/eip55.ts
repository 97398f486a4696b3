/**
 * EIP-55 address checksums, so that a mistyped registry address is refused at start instead of failing at the first
 * chain call. Keccak-256 is written out here because the domain imports nothing but effect (as pow.ts writes out
 * SHA-256); it runs once per address at start, so BigInt lanes are plenty fast. test/unit/config.test.ts checks it
 * against viem's `keccak256` and `getAddress`.
 */

const lane = (1n << 64n) - 1n
const rotl = (x: bigint, n: number): bigint => (n === 0 ? x : ((x << BigInt(n)) | (x >> BigInt(64 - n))) & lane)

/** ρ offsets by lane index x + 5y, derived as in the Keccak reference: (x, y) walks (y, 2x + 3y) from (1, 0). */
const rotations: ReadonlyArray<number> = (() => {
  const r = Array<number>(25).fill(0)
  let [x, y] = [1, 0]
  for (let t = 0; t < 24; t++) {
    r[x + 5 * y] = ((t + 1) * (t + 2) / 2) % 64
    ;[x, y] = [y, (2 * x + 3 * y) % 5]
  }
  return r
})()

/** ι constants from the reference's LFSR x^8 + x^6 + x^5 + x^4 + 1. */
const roundConstants: ReadonlyArray<bigint> = (() => {
  const constants: Array<bigint> = []
  let lfsr = 1
  for (let round = 0; round < 24; round++) {
    let rc = 0n
    for (let j = 0; j < 7; j++) {
      if ((lfsr & 1) !== 0) rc |= 1n << BigInt((1 << j) - 1)
      lfsr = (lfsr & 0x80) !== 0 ? ((lfsr << 1) ^ 0x71) & 0xff : lfsr << 1
    }
    constants.push(rc)
  }
  return constants
})()

const permute = (a: Array<bigint>): void => {
  for (const rc of roundConstants) {
    const c = [0, 1, 2, 3, 4].map((x) => a[x]! ^ a[x + 5]! ^ a[x + 10]! ^ a[x + 15]! ^ a[x + 20]!)
    for (let i = 0; i < 25; i++) a[i] = a[i]! ^ c[(i + 4) % 5]! ^ rotl(c[(i + 1) % 5]!, 1)
    const b = Array<bigint>(25)
    for (let x = 0; x < 5; x++) {
      for (let y = 0; y < 5; y++) b[y + 5 * ((2 * x + 3 * y) % 5)] = rotl(a[x + 5 * y]!, rotations[x + 5 * y]!)
    }
    for (let i = 0; i < 25; i++) {
      const x = i % 5
      const row = i - x
      a[i] = b[i]! ^ (~b[row + ((x + 1) % 5)]! & lane & b[row + ((x + 2) % 5)]!)
    }
    a[0] = a[0]! ^ rc
  }
}

const rate = 136

/** Keccak-256 as Ethereum uses it (the original padding 0x01, not SHA-3's 0x06). */
export const keccak256 = (data: Uint8Array): Uint8Array => {
  const padded = new Uint8Array((Math.floor(data.length / rate) + 1) * rate)
  padded.set(data)
  padded[data.length] = 0x01
  padded[padded.length - 1] = padded[padded.length - 1]! | 0x80
  const state = Array<bigint>(25).fill(0n)
  for (let block = 0; block < padded.length; block += rate) {
    for (let i = 0; i < rate / 8; i++) {
      let value = 0n
      for (let k = 7; k >= 0; k--) value = (value << 8n) | BigInt(padded[block + 8 * i + k]!)
      state[i] = state[i]! ^ value
    }
    permute(state)
  }
  const out = new Uint8Array(32)
  for (let i = 0; i < 32; i++) out[i] = Number((state[i >> 3]! >> BigInt(8 * (i & 7))) & 0xffn)
  return out
}

/** `0x` + 40 hex digits in its EIP-55 letter case: a letter is upper case where keccak256(lower-case hex) has a nibble ≥ 8. */
export const checksumAddress = (address: string): string => {
  const hex = address.slice(2).toLowerCase()
  const hash = keccak256(new TextEncoder().encode(hex))
  let out = "0x"
  for (let i = 0; i < hex.length; i++) {
    const nibble = (hash[i >> 1]! >> (i % 2 === 0 ? 4 : 0)) & 0x0f
    out += nibble >= 8 ? hex[i]!.toUpperCase() : hex[i]!
  }
  return out
}

/** Mixed letter case is a checksum claim; all lower or all upper case makes none (EIP-55). */
export const claimsChecksum = (address: string): boolean => {
  const hex = address.slice(2)
  return hex !== hex.toLowerCase() && hex !== hex.toUpperCase()
}
