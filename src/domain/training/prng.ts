/**
 * The seeded random numbers of training (data selection, initial weights). Every miner and validator must draw the
 * same numbers from the same seeds, so the generator is specified exactly here and never `Math.random`:
 *
 * - a stream is named by a list of key words (unsigned 64-bit integers, e.g. [stream tag, seed, chunk id]);
 * - the words are folded by SplitMix64: `k ← splitmix64(k ⊕ word)` starting from k = 0, where splitmix64(x) is the
 *   first output of a SplitMix64 generator whose state is x;
 * - the 128-bit state of xoshiro128** (Blackman & Vigna, 2018) is the next two SplitMix64 outputs after state k,
 *   each split high word first; an all-zero state (never seen in practice) becomes [1, 0, 0, 0];
 * - numbers are the xoshiro128** outputs (uint32).
 */

const MASK64 = (1n << 64n) - 1n
const GOLDEN_GAMMA = 0x9e3779b97f4a7c15n

/** One SplitMix64 step: the new state and its output. */
export const splitmix64 = (state: bigint): readonly [state: bigint, output: bigint] => {
  const next = (state + GOLDEN_GAMMA) & MASK64
  let z = next
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64
  return [next, z ^ (z >> 31n)]
}

/** Stream tags keep the streams of different purposes apart even when their seeds are equal. */
export const Stream = {
  weights: 0x57454947n, // "WEIG"
  data: 0x44415441n, // "DATA"
  /** The held-out test split of the bundled digits (data.ts). */
  split: 0x53504c54n // "SPLT"
} as const

const word = (w: number | bigint): bigint => {
  if (typeof w === "number" && (!Number.isSafeInteger(w) || w < 0)) {
    throw new RangeError(`PRNG key words are unsigned integers, got ${w}`)
  }
  return BigInt.asUintN(64, BigInt(w))
}

/** A xoshiro128** generator. Mutable: each call advances it. */
export class Prng {
  private s0: number
  private s1: number
  private s2: number
  private s3: number

  private constructor(s0: number, s1: number, s2: number, s3: number) {
    this.s0 = s0
    this.s1 = s1
    this.s2 = s2
    this.s3 = s3
  }

  /** A generator in the given raw state (for reference vectors). */
  static fromState(state: readonly [number, number, number, number]): Prng {
    const [a, b, c, d] = state.map((x) => x >>> 0) as unknown as [number, number, number, number]
    return (a | b | c | d) === 0 ? new Prng(1, 0, 0, 0) : new Prng(a, b, c, d)
  }

  /** The generator of the stream named by `key` (see the module comment). */
  static fromKey(key: ReadonlyArray<number | bigint>): Prng {
    let k = 0n
    for (const w of key) k = splitmix64(k ^ word(w))[1]
    const [state1, x] = splitmix64(k)
    const [, y] = splitmix64(state1)
    return Prng.fromState([Number(x >> 32n), Number(x & 0xffffffffn), Number(y >> 32n), Number(y & 0xffffffffn)])
  }

  /** The next uint32. */
  nextU32(): number {
    const s1 = this.s1
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0
    const t = s1 << 9
    this.s2 ^= this.s0
    this.s3 ^= this.s1
    this.s1 ^= this.s2
    this.s0 ^= this.s3
    this.s2 ^= t
    this.s3 = rotl(this.s3, 11)
    return result
  }

  /** A float in [0, 1) with 24 random bits: (u32 >>> 8) / 2^24, exact in float32. */
  nextFloat(): number {
    return (this.nextU32() >>> 8) / 16777216
  }

  /** An integer in [0, n), n ≤ 2^21: ⌊u32 · n / 2^32⌋ (exact in float64; the bias is below 2^-11 and fixed). */
  below(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 2 ** 21) throw new RangeError(`below(n) needs 0 < n ≤ 2^21, got ${n}`)
    return Math.floor((this.nextU32() * n) / 4294967296)
  }
}

const rotl = (x: number, k: number): number => (x << k) | (x >>> (32 - k))
