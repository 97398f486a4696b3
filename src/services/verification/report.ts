import { canonicalJson, type DeterminismProfile } from "../../domain/gradientEnvelope.ts"
import type { MinerIdentity, OnChainSubmission } from "../../domain/mining.ts"
import type { TensorDistance } from "../../domain/verdict.ts"
import { verdictCodes, type VerdictName } from "../../domain/verification.ts"

/** What the verifier concluded about one submission, before it is written down. */
export interface Judgement {
  readonly verdict: VerdictName
  /** One line: why. */
  readonly reason: string
  readonly distances: ReadonlyArray<TensorDistance>
  /** The verifier's own training of the chunk, when it got that far. */
  readonly recomputed: {
    readonly lossBefore: number | null
    readonly lossAfter: number | null
    readonly gradientHash: string
  } | null
  /** The profile the submission's header names, when it decoded. */
  readonly claimedProfile: DeterminismProfile | null
}

export const reportFormat = "r3mes-verification-report"

/**
 * The verification report (DESIGN.md "Verification"): canonical JSON of the verdict, the distances, the recomputed
 * losses, the verifier's profile and the submission it judges. Nothing in it depends on when or how often it was
 * computed (no time, no attempt count), so a verifier that restarts writes the same bytes, the same CID and the same
 * reportHash. Non-finite distances are null: JSON has no Infinity.
 */
export const reportBytes = (input: {
  readonly identity: MinerIdentity
  readonly submission: OnChainSubmission
  readonly judgement: Judgement
  readonly profile: DeterminismProfile
  readonly tolerance: number
}): Uint8Array => {
  const { identity, judgement, submission } = input
  const finite = (n: number | null) => (n !== null && Number.isFinite(n) ? n : null)
  const report = {
    format: reportFormat,
    version: 1,
    chain_id: identity.chainId,
    registry: identity.registry.toLowerCase(),
    verifier: identity.miner.toLowerCase(),
    submission: {
      round_id: submission.roundId.toString(),
      chunk_id: submission.chunkId,
      miner: submission.miner.toLowerCase(),
      cid: submission.cid,
      gradient_hash: submission.gradientHash.toLowerCase(),
      tx_hash: submission.txHash.toLowerCase()
    },
    verdict: judgement.verdict,
    verdict_code: verdictCodes[judgement.verdict],
    reason: judgement.reason,
    distances: judgement.distances.map((d) => ({ name: d.name, relative_l2: finite(d.distance) })),
    recomputed: judgement.recomputed === null ? null : {
      gradient_hash: judgement.recomputed.gradientHash,
      loss_before: finite(judgement.recomputed.lossBefore),
      loss_after: finite(judgement.recomputed.lossAfter)
    },
    submitted_profile: judgement.claimedProfile,
    profile: input.profile,
    tolerance: input.tolerance
  }
  return new TextEncoder().encode(canonicalJson(report))
}
