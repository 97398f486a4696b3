import { canonicalJson, type DecodedEnvelope, type DeterminismProfile, type EnvelopeHeader, type Tensor } from "./gradientEnvelope.ts"
import type { VerdictName } from "./verification.ts"

/**
 * The verifier's judgement of a recomputation (DESIGN.md "Verification"), pure: the distance between a submitted
 * gradient and the verifier's own, and the verdict they give. No I/O, no hashing: the service fetches, decodes and
 * recomputes, this decides.
 *
 * Distances are accumulated in float64 whatever the tensors' dtype, so the figure does not depend on summation
 * error in the tensors' own precision (a float32 sum of 10^6 squares loses about 3 digits).
 */

/** A tensor's distance to its recomputation; null when they cannot be compared (another name, dtype or shape). */
export interface TensorDistance {
  readonly name: string
  readonly distance: number | null
}

export interface Comparison {
  readonly verdict: Extract<
    VerdictName,
    "accepted_exact" | "accepted_within_tolerance" | "rejected_recompute_mismatch" | "rejected_no_improvement"
  >
  /** One line for the report and the logs: why this verdict. */
  readonly reason: string
  readonly distances: ReadonlyArray<TensorDistance>
  /** Every tensor's bytes are the recomputation's. */
  readonly bitIdentical: boolean
}

const halfToNumber = (h: number): number => {
  const sign = h & 0x8000 ? -1 : 1
  const exponent = (h >> 10) & 0x1f
  const fraction = h & 0x3ff
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024)
  if (exponent === 31) return fraction === 0 ? sign * Infinity : NaN
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024)
}

/** The values of a tensor's little-endian bytes as float64, whatever its dtype. */
export const tensorValues = (tensor: Tensor): Float64Array => {
  const { bytes, spec } = tensor
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const read: (offset: number) => number = {
    float32: (o: number) => view.getFloat32(o, true),
    float64: (o: number) => view.getFloat64(o, true),
    float16: (o: number) => halfToNumber(view.getUint16(o, true)),
    int32: (o: number) => view.getInt32(o, true),
    int8: (o: number) => view.getInt8(o),
    uint8: (o: number) => view.getUint8(o)
  }[spec.dtype]
  const width = { float32: 4, float64: 8, float16: 2, int32: 4, int8: 1, uint8: 1 }[spec.dtype]
  const out = new Float64Array(bytes.byteLength / width)
  for (let i = 0; i < out.length; i++) out[i] = read(i * width)
  return out
}

/**
 * ‖submitted − reference‖₂ / ‖reference‖₂, in float64. A zero reference gives 0 when the submitted tensor is zero
 * too and Infinity otherwise; any non-finite value (NaN included) gives Infinity, so it never passes a tolerance.
 */
export const relativeL2 = (submitted: ArrayLike<number>, reference: ArrayLike<number>): number => {
  if (submitted.length !== reference.length) return Infinity
  let difference = 0
  let norm = 0
  for (let i = 0; i < reference.length; i++) {
    const d = submitted[i]! - reference[i]!
    difference += d * d
    norm += reference[i]! * reference[i]!
  }
  if (!Number.isFinite(difference) || !Number.isFinite(norm)) return Infinity
  if (difference === 0) return 0
  return norm === 0 ? Infinity : Math.sqrt(difference) / Math.sqrt(norm)
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}

/** |claimed − recomputed| / |recomputed| (0 when both are equal, Infinity when only the recomputation is 0). */
export const relativeDifference = (claimed: number, recomputed: number): number => {
  if (claimed === recomputed) return 0
  if (!Number.isFinite(claimed) || !Number.isFinite(recomputed) || recomputed === 0) return Infinity
  return Math.abs(claimed - recomputed) / Math.abs(recomputed)
}

/** What the header says about the training run, other than its task and its losses: must match the recomputation. */
const runMismatch = (submitted: EnvelopeHeader, recomputed: EnvelopeHeader): string | undefined => {
  for (const field of ["encoding", "steps", "batch_size", "lr"] as const) {
    if (submitted[field] !== recomputed[field]) {
      return `header ${field} ${JSON.stringify(submitted[field])} is not the recomputed ${JSON.stringify(recomputed[field])}`
    }
  }
  if (submitted.tensors.length !== recomputed.tensors.length) {
    return `${submitted.tensors.length} tensors where the recomputation has ${recomputed.tensors.length}`
  }
  for (const [i, spec] of submitted.tensors.entries()) {
    const expected = recomputed.tensors[i]!
    if (spec.name !== expected.name || spec.dtype !== expected.dtype || spec.shape.join(",") !== expected.shape.join(",")) {
      return `tensor ${i} is ${spec.name} ${spec.dtype} [${spec.shape.join(",")}], the recomputation's ` +
        `${expected.name} ${expected.dtype} [${expected.shape.join(",")}]`
    }
  }
  return undefined
}

/**
 * The header names the submission's task: its round, chunk and miner (an address, compared case-insensitively) and
 * the round's model. The reason when it does not, undefined when it does. `modelHash` undefined skips the model
 * (it is compared once known, from the recomputation's header).
 */
export const taskMismatch = (
  header: EnvelopeHeader,
  task: { readonly roundId: bigint; readonly chunkId: number; readonly miner: string; readonly modelHash?: string | undefined }
): string | undefined => {
  if (header.round_id !== task.roundId.toString()) return `header round_id ${header.round_id} is not round ${task.roundId}`
  if (header.chunk_id !== task.chunkId) return `header chunk_id ${header.chunk_id} is not chunk ${task.chunkId}`
  if (header.miner.toLowerCase() !== task.miner.toLowerCase()) {
    return `header miner ${header.miner} is not the submitter ${task.miner}`
  }
  if (task.modelHash !== undefined && header.model_hash.toLowerCase() !== task.modelHash.toLowerCase()) {
    return `header model_hash ${header.model_hash} is not the round's model ${task.modelHash}`
  }
  return undefined
}

/**
 * Whether a recomputation under `own` must give the submission's bytes: the same profile, on the CPU provider. A GPU
 * provider's profile names the provider but not the GPU or its driver (ONNX Runtime does not say which adapter it
 * got), and two GPUs compile the same shaders and kernels differently: two "webgpu" profiles may round apart, so they
 * are compared within the tolerance.
 */
export const reproducesExactly = (claimed: DeterminismProfile, own: DeterminismProfile): boolean =>
  own.ep === "cpu" && canonicalJson(claimed) === canonicalJson(own)

/**
 * The verdict on a well-formed submission of the right task, from the verifier's recomputation of it:
 * - same determinism profile: the tensors must be bit-identical and the header's losses exactly the recomputed ones;
 * - another profile: every tensor within `tolerance` (relative L2) and each loss within `tolerance` (relative);
 * - then the recomputed training must have improved the loss (loss_after < loss_before).
 * Tensors are judged before losses: a gradient that is not the recomputed one is a mismatch whatever it claims.
 */
export const compareRecomputation = (input: {
  readonly submitted: DecodedEnvelope
  readonly recomputed: DecodedEnvelope
  readonly sameProfile: boolean
  readonly tolerance: number
}): Comparison => {
  const { recomputed, sameProfile, submitted, tolerance } = input
  const structural = runMismatch(submitted.header, recomputed.header)
  if (structural !== undefined) {
    return {
      verdict: "rejected_recompute_mismatch",
      reason: structural,
      distances: submitted.tensors.map((t) => ({ name: t.spec.name, distance: null })),
      bitIdentical: false
    }
  }
  let bitIdentical = true
  const distances = submitted.tensors.map((tensor, i): TensorDistance => {
    const reference = recomputed.tensors[i]!
    if (sameBytes(tensor.bytes, reference.bytes)) return { name: tensor.spec.name, distance: 0 }
    bitIdentical = false
    return { name: tensor.spec.name, distance: relativeL2(tensorValues(tensor), tensorValues(reference)) }
  })
  const mismatch = (reason: string): Comparison => ({ verdict: "rejected_recompute_mismatch", reason, distances, bitIdentical })
  if (sameProfile && !bitIdentical) {
    const first = distances.find((d) => d.distance !== 0)!
    return mismatch(`same determinism profile but tensor ${first.name} differs (relative L2 ${first.distance})`)
  }
  // `!(d <= tolerance)` and not `d > tolerance`: a NaN must fail too.
  const over = distances.find((d) => !(d.distance! <= tolerance))
  if (over !== undefined) {
    return mismatch(`tensor ${over.name} is at relative L2 ${over.distance} from the recomputation, over ${tolerance}`)
  }

  const noImprovement = (reason: string): Comparison => ({ verdict: "rejected_no_improvement", reason, distances, bitIdentical })
  const claimed = submitted.header
  const own = recomputed.header
  if (own.loss_before === null || own.loss_after === null) return noImprovement("the recomputation reports no losses")
  for (const [name, value, reference] of [
    ["loss_before", claimed.loss_before, own.loss_before],
    ["loss_after", claimed.loss_after, own.loss_after]
  ] as const) {
    if (value === null) return noImprovement(`header ${name} is missing`)
    const off = relativeDifference(value, reference)
    if (sameProfile ? off !== 0 : !(off <= tolerance)) {
      return noImprovement(`header ${name} ${value} is not the recomputed ${reference}`)
    }
  }
  if (!(own.loss_after < own.loss_before)) {
    return noImprovement(`the recomputed loss does not improve (${own.loss_before} → ${own.loss_after})`)
  }
  const exact = bitIdentical && claimed.loss_before === own.loss_before && claimed.loss_after === own.loss_after
  return {
    verdict: exact ? "accepted_exact" : "accepted_within_tolerance",
    reason: exact ? "bit-identical to the recomputation" : `every tensor within relative L2 ${tolerance}`,
    distances,
    bitIdentical
  }
}
