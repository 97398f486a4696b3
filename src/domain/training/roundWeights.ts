import { Effect } from "effect"
import type { Tensors } from "../aggregation/tensors.ts"
import { type MiningError, ValidationError } from "../errors.ts"
import { decodeEnvelope, encodeEnvelope, float32Bytes, float32Values } from "../gradientEnvelope.ts"
import { bytesToHex, sha256 } from "../pow.ts"
import {
  decodeModelWeights,
  elementCount,
  initialWeights,
  type ModelWeights,
  roundEnvelopeHeader,
  trainableParameters
} from "./model.ts"
import { isParentInit, type RoundSpec } from "./spec.ts"

/**
 * What a learning round starts from and what it hands on (DESIGN.md "Learning rounds"): the weights and the outer
 * optimiser's momentum that came out of a round, as envelopes the coordinator pins, and their retrieval by the next
 * round's miners. The domain does no I/O: whoever calls passes `fetch` (a GradientStore's get, or a fake).
 */

/** Reads `maxBytes` at most from a content store by CID. */
export type FetchByCid = (cid: string, maxBytes: number) => Effect.Effect<Uint8Array, MiningError>

export { roundWeightsEnvelope } from "./model.ts"

/** Far above the weights of any round spec the schema allows; bounds what a fetched model may cost. */
export const maxRoundWeightsBytes = 512 * 1024 * 1024

/**
 * The outer optimiser's momentum after round `roundId` as an R3GR envelope (encoding "momentum"): one float32 tensor
 * per trainable parameter of the spec's model, in `trainableParameters` order, with the header conventions of
 * `roundWeightsEnvelope` (model_hash = modelHash(spec), zero miner, steps/batch/lr 0, no losses, portable profile).
 */
export const momentumEnvelope = (
  spec: RoundSpec,
  roundId: bigint,
  momentum: ReadonlyArray<{ readonly name: string; readonly values: Float32Array }>
): Effect.Effect<Uint8Array, ValidationError> => {
  const params = trainableParameters(spec.model)
  const header = roundEnvelopeHeader(
    spec,
    roundId,
    "momentum",
    params.map((p) => ({ name: p.name, dtype: "float32", shape: [...p.shape] }))
  )
  return Effect.suspend(() => {
    const byName = new Map(momentum.map((m) => [m.name, m.values]))
    const bytes: Array<Uint8Array> = []
    for (const p of params) {
      const values = byName.get(p.name)
      if (values === undefined) {
        return Effect.fail(new ValidationError({ message: `momentum lacks ${p.name}`, field: "momentum" }))
      }
      if (values.length !== elementCount(p.shape)) {
        return Effect.fail(
          new ValidationError({
            message: `momentum ${p.name} has ${values.length} values, its shape [${p.shape}] holds ${elementCount(p.shape)}`,
            field: "momentum"
          })
        )
      }
      bytes.push(float32Bytes(values))
    }
    return encodeEnvelope(header, bytes)
  })
}

/** Reads a "momentum" envelope of `spec`'s model: the trainable tensors by name, shape and finite float32 values. */
export const decodeMomentumEnvelope = Effect.fnUntraced(function*(
  spec: RoundSpec,
  bytes: Uint8Array
): Effect.fn.Return<Tensors, ValidationError> {
  const invalid = (message: string) =>
    new ValidationError({ message: `momentum: ${message}`, field: "momentum_cid" })
  const { header, tensors } = yield* decodeEnvelope(bytes)
  if (header.encoding !== "momentum") return yield* invalid(`encoding is ${header.encoding}, not momentum`)
  const params = trainableParameters(spec.model)
  if (tensors.length !== params.length) return yield* invalid(`${tensors.length} tensors, the model trains ${params.length}`)
  const out: Array<Tensors[number]> = []
  for (const [i, p] of params.entries()) {
    const t = tensors[i]!
    if (t.spec.name !== p.name || t.spec.dtype !== "float32" || t.spec.shape.join(",") !== p.shape.join(",")) {
      return yield* invalid(`tensor ${i} is ${t.spec.name} ${t.spec.dtype} [${t.spec.shape}], expected ${p.name} float32 [${p.shape}]`)
    }
    const values = float32Values(t)
    if (values.some((v) => !Number.isFinite(v))) return yield* invalid(`${p.name} has non-finite values`)
    out.push({ name: p.name, shape: [...p.shape], values })
  }
  return out
})

const sha256Of = (bytes: Uint8Array): string => bytesToHex(sha256(bytes))

/** Fetches `cid` and checks its bytes against the spec's sha256 before anything reads them. */
const fetchChecked = (fetch: FetchByCid, what: "weights" | "momentum", cid: string, expected: string) =>
  fetch(cid, maxRoundWeightsBytes).pipe(
    Effect.flatMap((bytes) => {
      const actual = sha256Of(bytes)
      return actual === expected
        ? Effect.succeed(bytes)
        : Effect.fail(
          new ValidationError({
            message: `${cid} has sha256 ${actual}: the fetched ${what} do not match the spec's ${what}_sha256 ${expected}`,
            field: `${what}_cid`,
            hint: "the content store returned other bytes for this CID (a corrupted store or a wrong CID in the round's spec)"
          })
        )
    })
  )

/**
 * The weights the round trains from. v1 and v2 with a seed: generated (`initialWeights`). v2 with a parent: fetched
 * by init.weights_cid, sha256-checked against init.weights_sha256, decoded as weights of the spec's model. Their
 * header's model_hash names the parent round's start, not this spec's, so it is not compared.
 */
export const startingWeights = Effect.fnUntraced(function*(
  spec: RoundSpec,
  fetch: FetchByCid
): Effect.fn.Return<ModelWeights, MiningError> {
  if (spec.version === 1 || !isParentInit(spec.init)) return initialWeights(spec)
  const { init } = spec
  const bytes = yield* fetchChecked(fetch, "weights", init.weights_cid, init.weights_sha256)
  return yield* decodeModelWeights(spec.model, bytes, { what: `round ${init.parent_round}'s weights` })
})

/**
 * The outer optimiser's momentum the round's aggregation continues from: v2 with a parent and momentum_cid → fetched,
 * sha256-checked, decoded; otherwise none (the aggregation starts from zero momentum).
 */
export const startingMomentum = Effect.fnUntraced(function*(
  spec: RoundSpec,
  fetch: FetchByCid
): Effect.fn.Return<Tensors | undefined, MiningError> {
  if (spec.version === 1 || !isParentInit(spec.init)) return undefined
  const { momentum_cid, momentum_sha256 } = spec.init
  if (momentum_cid === undefined || momentum_sha256 === undefined) return undefined
  return yield* decodeMomentumEnvelope(spec, yield* fetchChecked(fetch, "momentum", momentum_cid, momentum_sha256))
})
