import { Effect } from "effect"
import { CID } from "multiformats/cid"
import { ResourceError, ValidationError } from "../../domain/errors.ts"

/** Parses a CID string; a malformed one is the caller's mistake, found before any I/O. */
export const parseCid = (cid: string): Effect.Effect<CID, ValidationError> =>
  Effect.try({
    try: () => CID.parse(cid.trim()),
    catch: (error) =>
      new ValidationError({
        message: `${JSON.stringify(cid)} is not a CID`,
        field: "cid",
        cause: error instanceof Error ? error.message : String(error),
        hint: "expected a CIDv0 (Qm…) or a CIDv1 (bafy…)"
      })
  })

/**
 * Stores list pins as CIDv1 (Helia keys them that way) or as the client parsed them; the miner, Kubo and the chain
 * speak CIDv0, so a dag-pb/sha2-256 CID is shown as v0 and anything else as it is.
 */
export const showCid = (cid: CID): string => {
  if (cid.version === 1 && cid.code === 0x70 && cid.multihash.code === 0x12 && cid.multihash.size === 32) {
    return cid.toV0().toString()
  }
  return cid.toString()
}

export const oversize = (cid: string, size: number | bigint, maxBytes: number, exact: boolean) =>
  new ResourceError({
    message: exact
      ? `content of ${cid} is ${size} bytes, over the limit of ${maxBytes}`
      : `content of ${cid} is over the limit of ${maxBytes} bytes (read ${size} so far)`,
    resource: "size",
    hint: "the gradient is larger than R3MES_MAX_GRADIENT_SIZE_MB allows"
  })

/**
 * Concatenates a byte stream, failing as soon as it passes `maxBytes`: hostile content can make us read at most one
 * chunk past the limit, never the whole of it. With `knownSize` (the file size the root node states) the result is
 * allocated once and filled, so the content is held once, not as parts plus their concatenation.
 */
export const readLimited = async (
  chunks: AsyncIterable<Uint8Array>,
  maxBytes: number,
  knownSize?: number
): Promise<{ readonly bytes: Uint8Array } | { readonly over: number }> => {
  if (knownSize !== undefined && knownSize <= maxBytes) {
    const bytes = new Uint8Array(knownSize)
    let offset = 0
    for await (const chunk of chunks) {
      if (offset + chunk.byteLength > knownSize) {
        // More content than the root node declared: a malformed DAG, bounded all the same.
        return offset + chunk.byteLength > maxBytes ? { over: offset + chunk.byteLength } : readRest(bytes, offset, chunk, chunks, maxBytes)
      }
      bytes.set(chunk, offset)
      offset += chunk.byteLength
    }
    return { bytes: offset === knownSize ? bytes : bytes.subarray(0, offset) }
  }
  return readRest(new Uint8Array(0), 0, undefined, chunks, maxBytes)
}

const readRest = async (
  head: Uint8Array,
  headLength: number,
  pending: Uint8Array | undefined,
  chunks: AsyncIterable<Uint8Array>,
  maxBytes: number
): Promise<{ readonly bytes: Uint8Array } | { readonly over: number }> => {
  const parts: Array<Uint8Array> = headLength > 0 ? [head.subarray(0, headLength)] : []
  let total = headLength
  const take = (chunk: Uint8Array): boolean => {
    total += chunk.byteLength
    if (total > maxBytes) return false
    parts.push(chunk)
    return true
  }
  if (pending !== undefined && !take(pending)) return { over: total }
  for await (const chunk of chunks) {
    if (!take(chunk)) return { over: total }
  }
  if (parts.length === 1) return { bytes: parts[0]! }
  const bytes = new Uint8Array(total)
  let offset = 0
  for (const part of parts) {
    bytes.set(part, offset)
    offset += part.byteLength
  }
  return { bytes }
}
