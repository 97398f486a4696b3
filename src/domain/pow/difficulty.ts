/** valid ⇔ powHash has at least `difficulty` leading zero bits (DESIGN.md "Proof of work"). */

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
