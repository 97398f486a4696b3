import { Effect } from "effect"
import type { PseudoGradient, Tensors } from "./aggregation.ts"
import { ValidationError } from "./errors.ts"
import { decodeEnvelope, float32Values } from "./gradientEnvelope.ts"
import type { OnChainSubmission } from "./mining.ts"
import { bytesToHex, sha256 } from "./pow.ts"
import { trainableParameters } from "./training/model.ts"
import { modelHash, type RoundSpec } from "./training/spec.ts"
import { taskMismatch } from "./verdict.ts"
import { isAccepted } from "./verification.ts"

/**
 * The rules of a learning round (DESIGN.md "Learning rounds") that anyone recomputing it applies alike: which
 * submissions the aggregate takes, when the round may close, and what an accepted pseudo-gradient must be.
 */

/** Where a submission stands for the aggregate. */
export type Standing = "accepted" | "rejected" | "unjudged"

/**
 * A submission's standing from the verdicts the round's verifiers (the spec's `aggregation.verifiers`) recorded on
 * it: rejected when any of them rejected it, accepted when one accepted it and none rejected it, else unjudged. A
 * round that names no verifier takes every submission (robust aggregation alone holds back what is bad).
 */
export const standingOf = (verdicts: ReadonlyArray<number>, verifierCount: number): Standing => {
  if (verifierCount === 0) return "accepted"
  if (verdicts.some((code) => !isAccepted(code))) return "rejected"
  return verdicts.length > 0 ? "accepted" : "unjudged"
}

/** Why a round may close now: every chunk submitted and judged, or its deadline passed (chain time, strictly). */
export type Closing = "complete" | "deadline"

export const closingOf = (input: {
  readonly chunkCount: number
  readonly standings: ReadonlyArray<Standing>
  readonly now: number
  readonly deadline: number
}): Closing | undefined => {
  if (input.standings.length >= input.chunkCount && input.standings.every((s) => s !== "unjudged")) return "complete"
  // Past it, not at it: the contract still takes a submission mined in the deadline's own second.
  return input.now > input.deadline ? "deadline" : undefined
}

const invalid = (chunkId: number, message: string) =>
  new ValidationError({
    message: `chunk ${chunkId}: ${message}`,
    field: "gradient",
    hint: "the submission's content is not a pseudo-gradient of this round: the aggregate leaves it out"
  })

/**
 * The pseudo-gradient of an accepted submission, read from its envelope: sha256 = the on-chain gradient hash, encoding
 * "pseudo-gradient", the header's round, chunk, miner and model are the submission's, and the tensors are the
 * model's trainable parameters (names, float32, shapes) in order.
 */
export const pseudoGradientOf = Effect.fnUntraced(function*(
  spec: RoundSpec,
  submission: OnChainSubmission,
  bytes: Uint8Array
): Effect.fn.Return<PseudoGradient, ValidationError> {
  const { chunkId } = submission
  const actual = bytesToHex(sha256(bytes))
  if (actual.toLowerCase() !== submission.gradientHash.toLowerCase()) {
    return yield* invalid(chunkId, `content hash ${actual} is not the submitted ${submission.gradientHash}`)
  }
  const { header, tensors } = yield* Effect.mapError(decodeEnvelope(bytes), (e) => invalid(chunkId, e.message))
  if (header.encoding !== "pseudo-gradient") return yield* invalid(chunkId, `encoding is ${header.encoding}`)
  const mismatch = taskMismatch(header, { ...submission, modelHash: modelHash(spec) })
  if (mismatch !== undefined) return yield* invalid(chunkId, mismatch)
  const params = trainableParameters(spec.model)
  if (tensors.length !== params.length) return yield* invalid(chunkId, `${tensors.length} tensors, the model trains ${params.length}`)
  const named: Array<Tensors[number]> = []
  for (const [i, p] of params.entries()) {
    const t = tensors[i]!
    if (t.spec.name !== p.name || t.spec.dtype !== "float32" || t.spec.shape.join(",") !== p.shape.join(",")) {
      return yield* invalid(chunkId, `tensor ${i} is ${t.spec.name} ${t.spec.dtype} [${t.spec.shape}], expected ${p.name} float32 [${p.shape}]`)
    }
    const values = float32Values(t)
    // One NaN would make the coordinate-wise sort, and so the whole aggregate, fail: the gradient is left out instead.
    if (values.some((v) => !Number.isFinite(v))) return yield* invalid(chunkId, `tensor ${p.name} has a non-finite value`)
    named.push({ name: p.name, shape: p.shape, values })
  }
  return { chunkId, tensors: named }
})

/**
 * The most bytes a pseudo-gradient envelope of this round can take: float32 trainable tensors, the envelope's prefix,
 * and room for any header. Content beyond it cannot be one, whatever the size limit of whoever recomputes the round.
 */
export const pseudoGradientBound = (spec: RoundSpec): number =>
  trainableParameters(spec.model).reduce((n, p) => n + 4 * p.shape.reduce((a, d) => a * d, 1), 0) + 9 + 64 * 1024
