import { bytesToHex, sha256 } from "../../domain/pow.ts"

/**
 * Whether this verifier recomputes a submission: the first 52 bits of sha256("r3mes-verify-sample:" ‖ chain id ‖
 * registry ‖ verifier ‖ round ‖ chunk) as a fraction of 2^52, below `fraction`. A hash and not a random draw, so a
 * restart decides the same for every chunk, and two verifiers with the same fraction check different chunks.
 */
export const isSampled = (input: {
  readonly chainId: number
  readonly registry: string
  readonly verifier: string
  readonly roundId: bigint
  readonly chunkId: number
  readonly fraction: number
}): boolean => {
  if (input.fraction >= 1) return true
  if (input.fraction <= 0) return false
  const digest = sha256(new TextEncoder().encode(
    ["r3mes-verify-sample", input.chainId, input.registry.toLowerCase(), input.verifier.toLowerCase(), input.roundId,
      input.chunkId].join(":")
  ))
  const draw = Number.parseInt(bytesToHex(digest).slice(2, 15), 16) / 2 ** 52
  return draw < input.fraction
}
