/**
 * Proof of work, bit for bit as the MiningRegistry contract checks it (DESIGN.md "Proof of work"):
 *
 *   challenge = sha256(abi.encode(uint256 chainId, address registry, address miner, uint256 roundId,
 *                                 uint32 chunkId, bytes32 gradientHash, bytes32 sha256(utf8(cid))))
 *   powHash   = sha256(challenge ‖ nonce as 8-byte big-endian uint64)
 *   valid     ⇔ powHash has at least `difficulty` leading zero bits
 *
 * Pure TypeScript (the domain imports nothing but effect), in pow/: hex.ts and sha256.ts (the primitives),
 * challenge.ts (the abi encoding), difficulty.ts and limits.ts (what is valid, what is searchable), search.ts (the
 * searcher's hot loop, one SHA-256 compression per nonce from a midstate), solve.ts (the reference solver). This
 * file is the module's public face: the names below are what the rest of the miner and `Pow` (index.ts) export.
 */

export { challenge, type ChallengeInput, encodeChallengeInput } from "./pow/challenge.ts"
export { leadingZeroBits, meetsDifficulty } from "./pow/difficulty.ts"
export { bytesToHex, type Hex, hexToBytes } from "./pow/hex.ts"
export { MAX_DIFFICULTY, MAX_NONCE, searchProblem } from "./pow/limits.ts"
export { makePowSearcher, powHash, type PowSearcher } from "./pow/search.ts"
export { sha256 } from "./pow/sha256.ts"
export {
  DEFAULT_BATCH_SIZE,
  exhaustedRange,
  type PreparedSearch,
  prepareSearch,
  solveReference,
  type SolveInput,
  type SolveOptions
} from "./pow/solve.ts"
