import { hexToBytes } from "./hex.ts"
import { sha256 } from "./sha256.ts"

/**
 * The challenge, encoded as Solidity's abi.encode does, written here rather than taken from viem: the domain imports
 * nothing but effect, and an encoder of our own checked against viem's and the contract's `powChallenge` in the tests
 * (and ../shared's independently computed vectors) is what proves the miner and the contract agree.
 */

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
