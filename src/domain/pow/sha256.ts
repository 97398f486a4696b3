/**
 * SHA-256 (FIPS 180-4) in TypeScript. The domain keeps its own rather than node:crypto or viem's: the domain imports
 * nothing but effect, and the pow searcher (search.ts) needs the compression function itself, to hash the fixed
 * first eight rounds of a challenge once (the midstate). Tests check it against node:crypto.
 *
 * Words are kept as signed int32 (`| 0`) so V8 stays on small-integer arithmetic.
 */

export const K = Int32Array.from([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
])

export const IV = Int32Array.from([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
])

/** Expands w[0..15] into w[16..63] in place. */
export const expandSchedule = (w: Int32Array, from: number): void => {
  for (let t = from; t < 64; t++) {
    const x = w[t - 15]!
    const y = w[t - 2]!
    w[t] = ((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w[t - 7]! +
      (((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w[t - 16]!) | 0
  }
}

/** Runs rounds [from, to) on the working variables in `state` with schedule `w`; no feed-forward. */
export const rounds = (state: Int32Array, w: Int32Array, from: number, to: number): void => {
  let a = state[0]!, b = state[1]!, c = state[2]!, d = state[3]!
  let e = state[4]!, f = state[5]!, g = state[6]!, h = state[7]!
  for (let t = from; t < to; t++) {
    const t1 = (h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) +
      (g ^ (e & (f ^ g))) + K[t]! + w[t]!) | 0
    const t2 = ((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) +
      ((a & b) | (c & (a | b)))) | 0
    h = g
    g = f
    f = e
    e = (d + t1) | 0
    d = c
    c = b
    b = a
    a = (t1 + t2) | 0
  }
  state[0] = a
  state[1] = b
  state[2] = c
  state[3] = d
  state[4] = e
  state[5] = f
  state[6] = g
  state[7] = h
}

export const writeWords = (words: Int32Array, out: Uint8Array): Uint8Array => {
  for (let i = 0; i < words.length; i++) {
    const x = words[i]!
    out[4 * i] = x >>> 24
    out[4 * i + 1] = x >>> 16
    out[4 * i + 2] = x >>> 8
    out[4 * i + 3] = x
  }
  return out
}

/** SHA-256 of any byte string (used for the challenge and sha256(utf8(cid)); not on the hot path). */
export const sha256 = (message: Uint8Array): Uint8Array => {
  const blocks = Math.floor((message.length + 8) / 64) + 1
  const padded = new Uint8Array(blocks * 64)
  padded.set(message)
  padded[message.length] = 0x80
  const bitLength = message.length * 8
  const view = new DataView(padded.buffer)
  view.setUint32(padded.length - 8, Math.floor(bitLength / 2 ** 32))
  view.setUint32(padded.length - 4, bitLength >>> 0)

  const hash = Int32Array.from(IV)
  const state = new Int32Array(8)
  const w = new Int32Array(64)
  for (let block = 0; block < blocks; block++) {
    for (let i = 0; i < 16; i++) w[i] = view.getInt32(block * 64 + 4 * i)
    expandSchedule(w, 16)
    state.set(hash)
    rounds(state, w, 0, 64)
    for (let i = 0; i < 8; i++) hash[i] = (hash[i]! + state[i]!) | 0
  }
  return writeWords(hash, new Uint8Array(32))
}
