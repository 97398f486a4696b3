import { Effect, Schema } from "effect"
import { ValidationError } from "./errors.ts"

/**
 * The gradient envelope (DESIGN.md "Gradient envelope"), what goes to IPFS:
 *
 *   "R3GR" ‖ u8 version ‖ u32 LE header length ‖ header (canonical JSON) ‖ tensor bytes (LE, in header order)
 *
 * The header names its determinism profile (DESIGN.md "Verification"), so a verifier knows whether its
 * recomputation must match bit for bit.
 *
 * Decoding validates every length, the header's schema and canonical form, and that each tensor's dtype × shape
 * matches its bytes. It only ever parses JSON and slices bytes: content is never evaluated.
 */

export const MAGIC = new Uint8Array([0x52, 0x33, 0x47, 0x52]) // "R3GR"
export const VERSION = 1
export const FORMAT = "r3mes-gradient"
const PREFIX_BYTES = 9
/** Far above any real header; bounds what a hostile length field can make us read. */
const MAX_HEADER_BYTES = 1 << 20

export const dtypeBytes = { float32: 4, float64: 8, float16: 2, int32: 4, int8: 1, uint8: 1 } as const
export type Dtype = keyof typeof dtypeBytes
export const Dtype = Schema.Literals(["float32", "float64", "float16", "int32", "int8", "uint8"])

export const TensorSpec = Schema.Struct({
  name: Schema.NonEmptyString,
  dtype: Dtype,
  shape: Schema.Array(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)))
})
export type TensorSpec = typeof TensorSpec.Type

/**
 * The determinism profile (DESIGN.md "Verification"): what decides the last bits of a recomputation. Two runs with
 * the same profile must give bit-identical tensors; across profiles a verifier accepts a bounded relative distance.
 * Free-form strings (a new runtime or ISA must not need a schema change), but every field must be there.
 */
export const DeterminismProfile = Schema.Struct({
  /** The training runtime and its version, e.g. "onnxruntime-node 1.30.0". */
  runtime: Schema.NonEmptyString,
  /** The execution provider the session ran on: "cpu", "cuda", "webgpu". */
  ep: Schema.NonEmptyString,
  /** Threads inside one operator. */
  threads: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
  /** The runtime's graph optimisation level, e.g. "disabled", "basic", "extended", "all". */
  graph_optimization: Schema.NonEmptyString,
  /** The CPU kernel class the runtime dispatches to: "avx512", "avx2", "sse", "neon", "generic". */
  isa: Schema.NonEmptyString,
  /** `${process.platform}-${process.arch}`, e.g. "linux-x64". */
  platform: Schema.NonEmptyString
})
export type DeterminismProfile = typeof DeterminismProfile.Type

export const EnvelopeHeader = Schema.Struct({
  format: Schema.Literal(FORMAT),
  round_id: Schema.String.check(Schema.isPattern(/^(0|[1-9][0-9]{0,77})$/, { expected: "a decimal uint256" })),
  chunk_id: Schema.Int.check(Schema.isUint32()),
  miner: Schema.String.check(Schema.isPattern(/^0x[0-9a-fA-F]{40}$/, { expected: "a 0x-prefixed address" })),
  model_hash: Schema.String,
  /** How the tensors encode the update, e.g. "pseudo-gradient" (initial − final weights) or "weights". */
  encoding: Schema.NonEmptyString,
  tensors: Schema.Array(TensorSpec),
  steps: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)),
  batch_size: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)),
  lr: Schema.Finite,
  loss_before: Schema.NullOr(Schema.Finite),
  loss_after: Schema.NullOr(Schema.Finite),
  /** How these bytes were computed; an envelope without one is malformed (nothing to recompute it against). */
  profile: DeterminismProfile
})
export type EnvelopeHeader = typeof EnvelopeHeader.Type

export interface Tensor {
  readonly spec: TensorSpec
  /** Little-endian bytes (a view into the envelope after decoding: no copy). */
  readonly bytes: Uint8Array
}

export interface DecodedEnvelope {
  readonly header: EnvelopeHeader
  readonly tensors: ReadonlyArray<Tensor>
}

/** JSON with object keys sorted at every level and no whitespace: one byte string per value. */
export const canonicalJson = (value: unknown): string => {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) throw new TypeError("non-finite number in canonical JSON")
    return JSON.stringify(value)
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`
}

export const elementCount = (shape: ReadonlyArray<number>): number => shape.reduce((n, d) => n * d, 1)
export const tensorByteLength = (spec: TensorSpec): number => elementCount(spec.shape) * dtypeBytes[spec.dtype]

const invalid = (message: string, field?: string) =>
  new ValidationError({ message: `invalid gradient envelope: ${message}`, ...(field ? { field } : {}) })

const hostIsLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/** Writes a float32 tensor into `out` (its exact byte length) little-endian, whatever the host's byte order. */
export const writeFloat32LE = (values: Float32Array, out: Uint8Array): void => {
  if (hostIsLittleEndian) {
    out.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength))
    return
  }
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength)
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i]!, true)
}

/** Little-endian bytes of a float32 tensor, independent of the host's byte order. */
export const float32Bytes = (values: Float32Array): Uint8Array => {
  const out = new Uint8Array(values.length * 4)
  writeFloat32LE(values, out)
  return out
}

/** Floats per step of `writeFloat32DifferenceLE`: 64 KiB of scratch. */
const DIFFERENCE_STEP = 16_384

/**
 * Writes a − b (each element rounded to float32) into `out` little-endian, through 64 KiB of scratch: a
 * pseudo-gradient goes straight into its envelope (`encodeEnvelopeWith`), without a tensor-sized difference first.
 * (An envelope's tensors need not be 4-byte aligned, so `out` cannot be viewed as floats.)
 */
export const writeFloat32DifferenceLE = (a: Float32Array, b: Float32Array, out: Uint8Array): void => {
  const scratch = new Float32Array(Math.min(DIFFERENCE_STEP, a.length))
  for (let start = 0; start < a.length; start += DIFFERENCE_STEP) {
    const n = Math.min(DIFFERENCE_STEP, a.length - start)
    for (let i = 0; i < n; i++) scratch[i] = a[start + i]! - b[start + i]!
    writeFloat32LE(scratch.subarray(0, n), out.subarray(start * 4, (start + n) * 4))
  }
}

/** The float32 values of a tensor's little-endian bytes (a copy, so unaligned views are fine). */
export const float32Values = (tensor: Tensor): Float32Array => {
  const view = new DataView(tensor.bytes.buffer, tensor.bytes.byteOffset, tensor.bytes.byteLength)
  const out = new Float32Array(tensor.bytes.byteLength / 4)
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true)
  return out
}

/**
 * Validates the header (and, given `byteLengths`, that the tensors match its specs in order) and lays the envelope
 * out; `write(i, out)` then fills tensor i's bytes in place.
 */
const encodeWith = Effect.fnUntraced(function*(
  header: EnvelopeHeader,
  byteLengths: ReadonlyArray<number> | undefined,
  write: (index: number, out: Uint8Array) => void
): Effect.fn.Return<Uint8Array, ValidationError> {
  const checked = yield* Schema.decodeUnknownEffect(EnvelopeHeader)(header).pipe(
    Effect.mapError((e) => invalid(e.message, "header"))
  )
  if (byteLengths !== undefined && checked.tensors.length !== byteLengths.length) {
    return yield* invalid(`${checked.tensors.length} tensor specs but ${byteLengths.length} tensors`)
  }
  const names = new Set<string>()
  let dataBytes = 0
  for (const [i, spec] of checked.tensors.entries()) {
    if (names.has(spec.name)) return yield* invalid(`duplicate tensor name ${spec.name}`)
    names.add(spec.name)
    const expected = tensorByteLength(spec)
    if (byteLengths !== undefined && byteLengths[i] !== expected) {
      return yield* invalid(`tensor ${spec.name} has ${byteLengths[i]} bytes, ${spec.dtype} ${JSON.stringify(spec.shape)} needs ${expected}`)
    }
    dataBytes += expected
  }
  if (!Number.isSafeInteger(dataBytes)) return yield* invalid(`tensors of ${dataBytes} bytes`)
  const headerBytes = new TextEncoder().encode(canonicalJson(checked))
  const out = new Uint8Array(PREFIX_BYTES + headerBytes.byteLength + dataBytes)
  out.set(MAGIC, 0)
  out[4] = VERSION
  new DataView(out.buffer).setUint32(5, headerBytes.byteLength, true)
  out.set(headerBytes, PREFIX_BYTES)
  let offset = PREFIX_BYTES + headerBytes.byteLength
  for (const [i, spec] of checked.tensors.entries()) {
    const length = tensorByteLength(spec)
    write(i, out.subarray(offset, offset + length))
    offset += length
  }
  return out
})

/** Encodes header and tensors; the tensors must match the header's specs in order, dtype × shape = bytes. */
export const encodeEnvelope = (
  header: EnvelopeHeader,
  tensors: ReadonlyArray<Uint8Array>
): Effect.Effect<Uint8Array, ValidationError> =>
  encodeWith(header, tensors.map((t) => t.byteLength), (i, out) => out.set(tensors[i]!))

/**
 * Encodes header and tensors, each tensor written by `write(i, out)` into its place in the envelope (`out` is
 * exactly the spec's dtype × shape bytes, not necessarily aligned): a tensor computed straight into the envelope
 * (`writeFloat32DifferenceLE`) needs no copy of its own, 1× the gradient less at the peak.
 */
export const encodeEnvelopeWith = (
  header: EnvelopeHeader,
  write: (index: number, out: Uint8Array) => void
): Effect.Effect<Uint8Array, ValidationError> => encodeWith(header, undefined, write)

/** Decodes and validates an envelope's structure (the hash is checked by `verifyEnvelopeHash`). */
export const decodeEnvelope = Effect.fnUntraced(function*(bytes: Uint8Array): Effect.fn.Return<DecodedEnvelope, ValidationError> {
  if (bytes.byteLength < PREFIX_BYTES) return yield* invalid(`${bytes.byteLength} bytes is shorter than the prefix`)
  for (let i = 0; i < MAGIC.length; i++) {
    if (bytes[i] !== MAGIC[i]) return yield* invalid("bad magic (not an R3GR envelope)", "magic")
  }
  if (bytes[4] !== VERSION) return yield* invalid(`unsupported version ${bytes[4]}`, "version")
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(5, true)
  if (headerLength > MAX_HEADER_BYTES || PREFIX_BYTES + headerLength > bytes.byteLength) {
    return yield* invalid(`header length ${headerLength} exceeds the envelope`, "header_length")
  }
  const headerText = yield* Effect.try({
    try: () => new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength)),
    catch: () => invalid("header is not UTF-8", "header")
  })
  const parsed = yield* Effect.try({ try: () => JSON.parse(headerText) as unknown, catch: () => invalid("header is not JSON", "header") })
  const header = yield* Schema.decodeUnknownEffect(EnvelopeHeader)(parsed, { onExcessProperty: "error" }).pipe(
    Effect.mapError((e) => invalid(e.message, "header"))
  )
  if (canonicalJson(parsed) !== headerText) return yield* invalid("header is not canonical JSON", "header")
  const tensors: Array<Tensor> = []
  const names = new Set<string>()
  let offset = PREFIX_BYTES + headerLength
  for (const spec of header.tensors) {
    if (names.has(spec.name)) return yield* invalid(`duplicate tensor name ${spec.name}`, "tensors")
    names.add(spec.name)
    const length = tensorByteLength(spec)
    if (!Number.isSafeInteger(length) || offset + length > bytes.byteLength) {
      return yield* invalid(`tensor ${spec.name} (${spec.dtype} ${JSON.stringify(spec.shape)}) runs past the end`, "tensors")
    }
    tensors.push({ spec, bytes: bytes.subarray(offset, offset + length) })
    offset += length
  }
  if (offset !== bytes.byteLength) {
    return yield* invalid(`${bytes.byteLength - offset} bytes after the last tensor`, "tensors")
  }
  return { header, tensors }
})

/** Checks sha256(envelope) = expected; the hasher is passed in so adapters can use native hashing. */
export const verifyEnvelopeHash = (
  bytes: Uint8Array,
  expectedHex: string,
  sha256: (bytes: Uint8Array) => Uint8Array
): Effect.Effect<void, ValidationError> => {
  const actual = `0x${Array.from(sha256(bytes), (b) => b.toString(16).padStart(2, "0")).join("")}`
  return actual.toLowerCase() === expectedHex.toLowerCase()
    ? Effect.void
    : Effect.fail(invalid(`hash ${actual} does not match the expected ${expectedHex}`, "gradient_hash"))
}
