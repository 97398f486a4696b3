import { Effect } from "effect"
import { ResourceError, ValidationError } from "./errors.ts"
import { PowSolution } from "./mining.ts"

/**
 * Proof of work, bit for bit as the MiningRegistry contract checks it (DESIGN.md "Proof of work"):
 *
 *   challenge = sha256(abi.encode(uint256 chainId, address registry, address miner, uint256 roundId,
 *                                 uint32 chunkId, bytes32 gradientHash, bytes32 sha256(utf8(cid))))
 *   powHash   = sha256(challenge ‖ nonce as 8-byte big-endian uint64)
 *   valid     ⇔ powHash has at least `difficulty` leading zero bits
 *
 * Pure TypeScript (the domain imports nothing but effect). SHA-256 is written out here twice: a general one for the
 * challenge, and one specialised for the 40-byte pow message, which always fits in a single block with fixed
 * padding. The specialised one is the reference solver's hot loop and is what a native/WASM solver is measured
 * against.
 */

// ---------------------------------------------------------------------------------------------------------------
// Hex

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

// ---------------------------------------------------------------------------------------------------------------
// SHA-256 (FIPS 180-4). Words are kept as signed int32 (`| 0`) so V8 stays on small-integer arithmetic.

const K = Int32Array.from([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
])

const IV = Int32Array.from([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
])

const sigma0 = (x: number): number => ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
const sigma1 = (x: number): number => ((x >>> 17) | (x << 15)) ^ ((x >>> 19) | (x << 13)) ^ (x >>> 10)

/** Expands w[0..15] into w[16..63] in place. */
const expandSchedule = (w: Int32Array, from: number): void => {
  for (let t = from; t < 64; t++) {
    const x = w[t - 15]!
    const y = w[t - 2]!
    w[t] = ((((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w[t - 7]! +
      (((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w[t - 16]!) | 0
  }
}

/** Runs rounds [from, to) on the working variables in `state` with schedule `w`; no feed-forward. */
const rounds = (state: Int32Array, w: Int32Array, from: number, to: number): void => {
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

const writeWords = (words: Int32Array, out: Uint8Array): Uint8Array => {
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

// ---------------------------------------------------------------------------------------------------------------
// Challenge

/** What the challenge binds together; `PowInput` is one. */
export interface ChallengeInput {
  readonly chainId: number | bigint
  readonly registry: string
  readonly miner: string
  readonly roundId: bigint
  readonly chunkId: number
  readonly gradientHash: string
  readonly cid: string
}

const UINT256_MAX = (1n << 256n) - 1n
/** The largest nonce: the contract takes it as uint64. */
export const MAX_NONCE = (1n << 64n) - 1n

const writeUint = (out: Uint8Array, word: number, value: bigint, max: bigint, field: string): void => {
  if (value < 0n || value > max) throw new RangeError(`${field} ${value} is out of range 0..${max}`)
  let v = value
  for (let i = 31; i >= 0 && v > 0n; i--) {
    out[word * 32 + i] = Number(v & 0xffn)
    v >>= 8n
  }
}

/**
 * abi.encode(uint256 chainId, address registry, address miner, uint256 roundId, uint32 chunkId,
 * bytes32 gradientHash, bytes32 sha256(utf8(cid))): seven static 32-byte words, integers big-endian and
 * left-padded, addresses left-padded (their checksum case is irrelevant). Throws a RangeError on out-of-range or
 * malformed fields.
 */
export const encodeChallengeInput = (input: ChallengeInput): Uint8Array => {
  const out = new Uint8Array(7 * 32)
  if (typeof input.chainId === "number" && !Number.isSafeInteger(input.chainId)) {
    throw new RangeError(`chainId ${input.chainId} is not a safe integer`)
  }
  writeUint(out, 0, BigInt(input.chainId), UINT256_MAX, "chainId")
  out.set(hexToBytes(input.registry, 20), 32 + 12)
  out.set(hexToBytes(input.miner, 20), 64 + 12)
  writeUint(out, 3, input.roundId, UINT256_MAX, "roundId")
  if (!Number.isInteger(input.chunkId)) throw new RangeError(`chunkId ${input.chunkId} is not an integer`)
  writeUint(out, 4, BigInt(input.chunkId), 0xffffffffn, "chunkId")
  out.set(hexToBytes(input.gradientHash, 32), 5 * 32)
  out.set(sha256(new TextEncoder().encode(input.cid)), 6 * 32)
  return out
}

/** The 32-byte challenge the contract's `powChallenge` returns for these inputs. */
export const challenge = (input: ChallengeInput): Uint8Array => sha256(encodeChallengeInput(input))

// ---------------------------------------------------------------------------------------------------------------
// Difficulty

/** Number of leading zero bits of a byte string (8 × length when all zero). */
export const leadingZeroBits = (hash: Uint8Array): number => {
  let bits = 0
  for (let i = 0; i < hash.length; i++) {
    const b = hash[i]!
    if (b !== 0) return bits + Math.clz32(b) - 24
    bits += 8
  }
  return bits
}

export const meetsDifficulty = (hash: Uint8Array, difficulty: number): boolean => leadingZeroBits(hash) >= difficulty

/**
 * The largest difficulty the solver takes. The contract's field is a uint8, but 2^64 nonces can never be expected to
 * reach more than 64 zero bits, and the configured range is 16..32.
 */
export const MAX_DIFFICULTY = 64

// ---------------------------------------------------------------------------------------------------------------
// The pow hash: one compression per nonce

/*
 * The 40-byte message challenge ‖ nonce is one block: w0..w7 = challenge, w8 = nonce high word, w9 = nonce low word,
 * w10 = 0x80000000 (the padding bit), w11..w14 = 0, w15 = 320 (the bit length). For a fixed challenge, rounds 0..7
 * read only the challenge (their result, the midstate, is computed once per searcher) and round 8 only the high word
 * (once per 2^32 nonces); rounds 10..15 add constants. So a nonce costs 55 rounds and 48 schedule words, on
 * preallocated memory.
 *
 * The hot loop names the working variables instead of shifting them: a round writes its new `a` into the variable
 * that held `h` (the old `h` is dead) and its new `e` into the one that held `d`, so after 8 rounds every name is
 * back in place; the schedule words are computed next to the round that reads them. Measured on Node 24 (bench/pow.ts):
 * about 4 MH/s, 2.5× a plain one-round-per-iteration loop, and faster than unrolling all 64 rounds (2.5 MH/s: V8
 * spills registers).
 */

/** Searches the nonces of one challenge. Holds preallocated scratch state: one searcher per fiber. */
export interface PowSearcher {
  /** The challenge this searcher hashes against (a copy). */
  readonly challenge: Uint8Array
  /**
   * The smallest nonce in [from, to] (inclusive) whose pow hash has at least `difficulty` (0..64) leading zero bits,
   * or -1n when none has. Synchronous, with a cost proportional to the range: callers bound the range.
   */
  readonly search: (from: bigint, to: bigint, difficulty: number) => bigint
  /** The pow hash of one nonce. */
  readonly hash: (nonce: bigint) => Uint8Array
}

const checkChallenge = (c: Uint8Array): void => {
  if (c.length !== 32) throw new RangeError(`a challenge is 32 bytes, got ${c.length}`)
}

const checkNonce = (nonce: bigint): void => {
  if (nonce < 0n || nonce > MAX_NONCE) throw new RangeError(`nonce ${nonce} is out of range 0..2^64-1`)
}

const checkDifficulty = (difficulty: number): void => {
  if (!Number.isInteger(difficulty) || difficulty < 0 || difficulty > MAX_DIFFICULTY) {
    throw new RangeError(`difficulty ${difficulty} is out of range 0..${MAX_DIFFICULTY}`)
  }
}

export const makePowSearcher = (challengeBytes: Uint8Array): PowSearcher => {
  checkChallenge(challengeBytes)
  const challengeCopy = Uint8Array.from(challengeBytes)
  const view = new DataView(challengeCopy.buffer)

  const w = new Int32Array(64)
  for (let i = 0; i < 8; i++) w[i] = view.getInt32(4 * i)
  w[10] = 0x80000000 | 0
  w[15] = 320
  const message = w.slice(0, 16)

  const midstate = Int32Array.from(IV)
  rounds(midstate, w, 0, 8)

  const kw10 = (K[10]! + w[10]!) | 0
  const kw11 = K[11]!, kw12 = K[12]!, kw13 = K[13]!, kw14 = K[14]!
  const kw15 = (K[15]! + w[15]!) | 0

  const afterRound8 = new Int32Array(8)
  let currentHigh = -1
  const enterHigh = (high: number): void => {
    if (high === currentHigh) return
    currentHigh = high
    w[8] = high | 0
    afterRound8.set(midstate)
    rounds(afterRound8, w, 8, 9)
  }

  /** The first low word in [lo, hi] (unsigned) meeting the difficulty under the current high word, or -1. */
  const scan = (lo: number, hi: number, difficulty: number): number => {
    const s0 = afterRound8[0]!, s1 = afterRound8[1]!, s2 = afterRound8[2]!, s3 = afterRound8[3]!
    const s4 = afterRound8[4]!, s5 = afterRound8[5]!, s6 = afterRound8[6]!, s7 = afterRound8[7]!
    const k9 = K[9]!
    const iv0 = IV[0]!, iv1 = IV[1]!
    const wide = difficulty > 32
    const needFirst = wide ? 32 : difficulty
    const needSecond = wide ? difficulty - 32 : 0
    for (let n = lo; n <= hi; n++) {
      const w9 = n | 0
      w[9] = w9
      // Each round is three lines: h += Σ1(e) + Ch(e, f, g) + K[t] + w[t] (that is T1); d += T1 (the new e);
      // h += Σ0(a) + Maj(a, b, c) (the new a). Round 9 starts with a..h in s0..s7, under names rotated by one so
      // that round 16 finds them in place.
      let h = s0, a = s1, b = s2, c = s3, d = s4, e = s5, f = s6, g = s7
      g = (g + (((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7))) + (f ^ (d & (e ^ f))) + k9 + w9) | 0
      c = (c + g) | 0
      g = (g + (((h >>> 2) | (h << 30)) ^ ((h >>> 13) | (h << 19)) ^ ((h >>> 22) | (h << 10))) + ((h & a) | (b & (h | a)))) | 0
      f = (f + (((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7))) + (e ^ (c & (d ^ e))) + kw10) | 0
      b = (b + f) | 0
      f = (f + (((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))) + ((g & h) | (a & (g | h)))) | 0
      e = (e + (((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7))) + (d ^ (b & (c ^ d))) + kw11) | 0
      a = (a + e) | 0
      e = (e + (((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))) + ((f & g) | (h & (f | g)))) | 0
      d = (d + (((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7))) + (c ^ (a & (b ^ c))) + kw12) | 0
      h = (h + d) | 0
      d = (d + (((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))) + ((e & f) | (g & (e | f)))) | 0
      c = (c + (((h >>> 6) | (h << 26)) ^ ((h >>> 11) | (h << 21)) ^ ((h >>> 25) | (h << 7))) + (b ^ (h & (a ^ b))) + kw13) | 0
      g = (g + c) | 0
      c = (c + (((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))) + ((d & e) | (f & (d | e)))) | 0
      b = (b + (((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7))) + (a ^ (g & (h ^ a))) + kw14) | 0
      f = (f + b) | 0
      b = (b + (((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))) + ((c & d) | (e & (c | d)))) | 0
      a = (a + (((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7))) + (h ^ (f & (g ^ h))) + kw15) | 0
      e = (e + a) | 0
      a = (a + (((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))) + ((b & c) | (d & (b | c)))) | 0
      for (let t = 16; t < 64; t += 8) {
        const x0 = w[t - 15]!, y0 = w[t - 2]!
        const w0 = w[t] = ((((y0 >>> 17) | (y0 << 15)) ^ ((y0 >>> 19) | (y0 << 13)) ^ (y0 >>> 10)) + w[t - 7]! +
          (((x0 >>> 7) | (x0 << 25)) ^ ((x0 >>> 18) | (x0 << 14)) ^ (x0 >>> 3)) + w[t - 16]!) | 0
        h = (h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) + (g ^ (e & (f ^ g))) + K[t]! + w0) | 0
        d = (d + h) | 0
        h = (h + (((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) | (c & (a | b)))) | 0
        const x1 = w[t - 14]!, y1 = w[t - 1]!
        const w1 = w[t + 1] = ((((y1 >>> 17) | (y1 << 15)) ^ ((y1 >>> 19) | (y1 << 13)) ^ (y1 >>> 10)) + w[t - 6]! +
          (((x1 >>> 7) | (x1 << 25)) ^ ((x1 >>> 18) | (x1 << 14)) ^ (x1 >>> 3)) + w[t - 15]!) | 0
        g = (g + (((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7))) + (f ^ (d & (e ^ f))) + K[t + 1]! + w1) | 0
        c = (c + g) | 0
        g = (g + (((h >>> 2) | (h << 30)) ^ ((h >>> 13) | (h << 19)) ^ ((h >>> 22) | (h << 10))) + ((h & a) | (b & (h | a)))) | 0
        const x2 = w[t - 13]!, y2 = w[t]!
        const w2 = w[t + 2] = ((((y2 >>> 17) | (y2 << 15)) ^ ((y2 >>> 19) | (y2 << 13)) ^ (y2 >>> 10)) + w[t - 5]! +
          (((x2 >>> 7) | (x2 << 25)) ^ ((x2 >>> 18) | (x2 << 14)) ^ (x2 >>> 3)) + w[t - 14]!) | 0
        f = (f + (((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7))) + (e ^ (c & (d ^ e))) + K[t + 2]! + w2) | 0
        b = (b + f) | 0
        f = (f + (((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))) + ((g & h) | (a & (g | h)))) | 0
        const x3 = w[t - 12]!, y3 = w[t + 1]!
        const w3 = w[t + 3] = ((((y3 >>> 17) | (y3 << 15)) ^ ((y3 >>> 19) | (y3 << 13)) ^ (y3 >>> 10)) + w[t - 4]! +
          (((x3 >>> 7) | (x3 << 25)) ^ ((x3 >>> 18) | (x3 << 14)) ^ (x3 >>> 3)) + w[t - 13]!) | 0
        e = (e + (((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7))) + (d ^ (b & (c ^ d))) + K[t + 3]! + w3) | 0
        a = (a + e) | 0
        e = (e + (((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))) + ((f & g) | (h & (f | g)))) | 0
        const x4 = w[t - 11]!, y4 = w[t + 2]!
        const w4 = w[t + 4] = ((((y4 >>> 17) | (y4 << 15)) ^ ((y4 >>> 19) | (y4 << 13)) ^ (y4 >>> 10)) + w[t - 3]! +
          (((x4 >>> 7) | (x4 << 25)) ^ ((x4 >>> 18) | (x4 << 14)) ^ (x4 >>> 3)) + w[t - 12]!) | 0
        d = (d + (((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7))) + (c ^ (a & (b ^ c))) + K[t + 4]! + w4) | 0
        h = (h + d) | 0
        d = (d + (((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))) + ((e & f) | (g & (e | f)))) | 0
        const x5 = w[t - 10]!, y5 = w[t + 3]!
        const w5 = w[t + 5] = ((((y5 >>> 17) | (y5 << 15)) ^ ((y5 >>> 19) | (y5 << 13)) ^ (y5 >>> 10)) + w[t - 2]! +
          (((x5 >>> 7) | (x5 << 25)) ^ ((x5 >>> 18) | (x5 << 14)) ^ (x5 >>> 3)) + w[t - 11]!) | 0
        c = (c + (((h >>> 6) | (h << 26)) ^ ((h >>> 11) | (h << 21)) ^ ((h >>> 25) | (h << 7))) + (b ^ (h & (a ^ b))) + K[t + 5]! + w5) | 0
        g = (g + c) | 0
        c = (c + (((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))) + ((d & e) | (f & (d | e)))) | 0
        const x6 = w[t - 9]!, y6 = w[t + 4]!
        const w6 = w[t + 6] = ((((y6 >>> 17) | (y6 << 15)) ^ ((y6 >>> 19) | (y6 << 13)) ^ (y6 >>> 10)) + w[t - 1]! +
          (((x6 >>> 7) | (x6 << 25)) ^ ((x6 >>> 18) | (x6 << 14)) ^ (x6 >>> 3)) + w[t - 10]!) | 0
        b = (b + (((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7))) + (a ^ (g & (h ^ a))) + K[t + 6]! + w6) | 0
        f = (f + b) | 0
        b = (b + (((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))) + ((c & d) | (e & (c | d)))) | 0
        const x7 = w[t - 8]!, y7 = w[t + 5]!
        const w7 = w[t + 7] = ((((y7 >>> 17) | (y7 << 15)) ^ ((y7 >>> 19) | (y7 << 13)) ^ (y7 >>> 10)) + w[t]! +
          (((x7 >>> 7) | (x7 << 25)) ^ ((x7 >>> 18) | (x7 << 14)) ^ (x7 >>> 3)) + w[t - 9]!) | 0
        a = (a + (((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7))) + (h ^ (f & (g ^ h))) + K[t + 7]! + w7) | 0
        e = (e + a) | 0
        a = (a + (((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))) + ((b & c) | (d & (b | c)))) | 0
      }
      if (Math.clz32((a + iv0) | 0) >= needFirst && (!wide || Math.clz32((b + iv1) | 0) >= needSecond)) return n
    }
    return -1
  }

  const search = (from: bigint, to: bigint, difficulty: number): bigint => {
    checkNonce(from)
    checkNonce(to)
    checkDifficulty(difficulty)
    let start = from
    while (start <= to) {
      const high = start >> 32n
      const lastOfHigh = (high << 32n) | 0xffffffffn
      const end = to < lastOfHigh ? to : lastOfHigh
      enterHigh(Number(high))
      const low = scan(Number(start & 0xffffffffn), Number(end & 0xffffffffn), difficulty)
      if (low >= 0) return (high << 32n) | BigInt(low)
      start = end + 1n
    }
    return -1n
  }

  const hash = (nonce: bigint): Uint8Array => {
    checkNonce(nonce)
    const block = new Int32Array(64)
    block.set(message)
    block[8] = Number(nonce >> 32n) | 0
    block[9] = Number(nonce & 0xffffffffn) | 0
    expandSchedule(block, 16)
    const state = Int32Array.from(midstate)
    rounds(state, block, 8, 64)
    for (let i = 0; i < 8; i++) state[i] = (state[i]! + IV[i]!) | 0
    return writeWords(state, new Uint8Array(32))
  }

  return { challenge: challengeCopy, search, hash }
}

/** sha256(challenge ‖ nonce as 8-byte big-endian uint64). */
export const powHash = (challengeBytes: Uint8Array, nonce: bigint): Uint8Array => {
  checkChallenge(challengeBytes)
  checkNonce(nonce)
  const message = new Uint8Array(40)
  message.set(challengeBytes)
  new DataView(message.buffer).setBigUint64(32, nonce)
  return sha256(message)
}

// ---------------------------------------------------------------------------------------------------------------
// The reference solver

export interface SolveOptions {
  /** First nonce tried (default 0). */
  readonly startNonce?: bigint
  /** Last nonce tried, inclusive (default 2^64 − 1). */
  readonly maxNonce?: bigint
  /** Nonces hashed between two yields to the scheduler (default 4096). */
  readonly batchSize?: number
}

/** What the solver needs: the challenge's inputs and the difficulty. `PowInput` is one. */
export interface SolveInput extends ChallengeInput {
  readonly difficulty: number
}

export const DEFAULT_BATCH_SIZE = 4096

/** A search every solver can run: a valid difficulty, a non-empty uint64 nonce range, an encodable challenge. */
export interface PreparedSearch {
  readonly challengeBytes: Uint8Array
  readonly difficulty: number
  readonly startNonce: bigint
  readonly maxNonce: bigint
}

/** Checks a solve request the same way for every solver, and computes its challenge. */
export const prepareSearch = (
  input: SolveInput,
  options: { readonly startNonce?: bigint | undefined; readonly maxNonce?: bigint | undefined } = {}
): Effect.Effect<PreparedSearch, ValidationError> =>
  Effect.gen(function*() {
    const difficulty = input.difficulty
    if (!Number.isInteger(difficulty) || difficulty < 0 || difficulty > MAX_DIFFICULTY) {
      return yield* new ValidationError({
        message: `proof-of-work difficulty ${difficulty} is not searchable: the solver takes 0..${MAX_DIFFICULTY}`,
        field: "difficulty",
        hint: "a difficulty over 64 leading zero bits cannot be expected within the uint64 nonce range"
      })
    }
    const startNonce = options.startNonce ?? 0n
    const maxNonce = options.maxNonce ?? MAX_NONCE
    if (startNonce < 0n || maxNonce > MAX_NONCE || startNonce > maxNonce) {
      return yield* new ValidationError({
        message: `nonce range ${startNonce}..${maxNonce} is empty or outside the uint64 range`,
        field: "nonce"
      })
    }
    const challengeBytes = yield* Effect.try({
      try: () => challenge(input),
      catch: (cause) => {
        const detail = cause instanceof Error ? cause.message : String(cause)
        return new ValidationError({ message: `cannot encode the proof-of-work challenge: ${detail}`, cause: detail })
      }
    })
    return { challengeBytes, difficulty, startNonce, maxNonce }
  })

/**
 * Finds the smallest nonce in [startNonce, maxNonce] whose pow hash meets `input.difficulty`, hashing in batches
 * and yielding to the scheduler between batches (a macrotask turn), so the search is interruptible and other fibers
 * and I/O keep running. Reports the number of hashes computed. An exhausted range fails with a ResourceError; bad
 * inputs (difficulty outside 0..64, malformed fields, an empty or out-of-range nonce range) with a ValidationError.
 */
export const solveReference = Effect.fnUntraced(function*(
  input: SolveInput,
  options: SolveOptions = {}
): Effect.fn.Return<PowSolution, ValidationError | ResourceError> {
  const { challengeBytes, difficulty, maxNonce, startNonce } = yield* prepareSearch(input, options)
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
    return yield* new ValidationError({ message: `batch size ${batchSize} is not a positive integer`, field: "batchSize" })
  }

  const searcher = makePowSearcher(challengeBytes)
  const step = BigInt(batchSize)
  let from = startNonce
  for (;;) {
    const to = maxNonce - from < step ? maxNonce : from + step - 1n
    const nonce = searcher.search(from, to, difficulty)
    if (nonce >= 0n) {
      return new PowSolution({
        nonce,
        powHash: bytesToHex(searcher.hash(nonce)),
        hashes: Number(nonce - startNonce + 1n)
      })
    }
    if (to === maxNonce) {
      return yield* new ResourceError({
        message: `no nonce in ${startNonce}..${maxNonce} meets difficulty ${difficulty} ` +
          `(${maxNonce - startNonce + 1n} hashes)`,
        resource: "pow nonce range",
        hint: "the nonce range is exhausted: lower the difficulty or widen the range"
      })
    }
    from = to + 1n
    yield* Effect.yieldNow
  }
})
