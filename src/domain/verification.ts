import { Schema } from "effect"
import { ChunkId, Hex32, RoundId } from "./mining.ts"

/**
 * Verification (DESIGN.md "Verification"): verdict codes as the MiningRegistry records them. Below 16 a gradient is
 * accepted; 16 and above it is rejected, with the reason in the code.
 */
export const verdictCodes = {
  accepted_exact: 1,
  accepted_within_tolerance: 2,
  rejected_unavailable: 16,
  rejected_malformed: 17,
  rejected_wrong_task: 18,
  rejected_recompute_mismatch: 19,
  rejected_no_improvement: 20
} as const

export type VerdictName = keyof typeof verdictCodes
export type VerdictCode = (typeof verdictCodes)[VerdictName]

export const verdictNames: ReadonlyArray<VerdictName> = Object.keys(verdictCodes) as Array<VerdictName>

const byCode = new Map<number, VerdictName>(verdictNames.map((name) => [verdictCodes[name], name]))

/** The name of a verdict code, none for a code the contract does not define. */
export const verdictName = (code: number): VerdictName | undefined => byCode.get(code)

export const isAccepted = (code: number): boolean => code >= 1 && code < 16

export const VerdictCodeSchema = Schema.Literals(Object.values(verdictCodes) as [VerdictCode, ...Array<VerdictCode>])

/** A verdict as the chain holds it: one per (round, chunk, verifier). */
export class OnChainVerdict extends Schema.Class<OnChainVerdict>("r3mes/OnChainVerdict")({
  roundId: RoundId,
  chunkId: ChunkId,
  verifier: Schema.String,
  verdict: Schema.Int,
  /** sha256 of the verification report (canonical JSON), which is pinned too. */
  reportHash: Hex32
}) {}

/** What a verifier asks the chain to record. */
export class VerdictRecord extends Schema.Class<VerdictRecord>("r3mes/VerdictRecord")({
  roundId: RoundId,
  chunkId: ChunkId,
  verdict: VerdictCodeSchema,
  reportHash: Hex32
}) {}
