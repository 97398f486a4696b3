import { PowInput } from "../../src/domain/mining.ts"
import fixture from "../fixtures/pow-vectors.json" with { type: "json" }

/** One proof-of-work test vector, computed by an independent implementation (copied from shared/pow-vectors.json). */
export interface PowVector {
  readonly chain_id: number
  readonly registry: string
  readonly miner: string
  readonly round_id: string
  readonly chunk_id: number
  readonly gradient_hash: string
  readonly cid: string
  readonly difficulty: number
  readonly challenge: string
  readonly first_valid_nonce: number
  readonly pow_hash: string
  readonly pow_hash_nonce_0: string
  readonly pow_hash_nonce_max: string
}

export const powVectors: ReadonlyArray<PowVector> = fixture.vectors

/** The solver input a vector describes. */
export const powInputOf = (v: PowVector): PowInput =>
  new PowInput({
    chainId: v.chain_id,
    registry: v.registry,
    miner: v.miner,
    roundId: BigInt(v.round_id),
    chunkId: v.chunk_id,
    gradientHash: v.gradient_hash,
    cid: v.cid,
    difficulty: v.difficulty
  })
