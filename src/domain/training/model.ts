import { Effect } from "effect"
import { ValidationError } from "../errors.ts"
import {
  decodeEnvelope,
  type DeterminismProfile,
  type EnvelopeHeader,
  encodeEnvelope,
  FORMAT,
  float32Bytes,
  float32Values,
  type TensorSpec
} from "../gradientEnvelope.ts"
import type { Hex } from "../pow.ts"
import { MNIST } from "./data.ts"
import { Prng, Stream } from "./prng.ts"
import { modelHash, type ModelSpec, type RoundSpec, type RoundSpecV1, weightsSeedOf } from "./spec.ts"

/**
 * The parameters of each model family, their initial values, and the "weights" envelope that publishes them.
 *
 * mlp (784 → hidden → 10, ReLU): fc1.weight [784, h], fc1.bias [h], fc2.weight [h, 10], fc2.bias [10], all trained.
 *
 * bitnet-lora (784 → hidden → 10, ReLU, no biases): layer l computes x · (s_l · T_l) + (alpha / rank) · (x · A_l) · B_l
 * with T_l ternary (int8 in {−1, 0, +1}) and s_l a float32 scalar, both frozen; only A_l [in, rank] and
 * B_l [rank, out] are trained.
 *
 * Initial values, each tensor from its own stream [weights tag, weights seed, tensor index in the list below], with
 * u = Prng.nextFloat() and every value rounded once to float32:
 * - mlp weights: (2u − 1) · 1/√fan_in (PyTorch's default bound); biases 0.
 * - ternary layers: latent w = (2u − 1) · 1/√fan_in, then BitNet b1.58 absmean quantisation: γ = mean |w| (summed in
 *   index order in float64), T = sign(w) where |w| ≥ γ/2 else 0, s = γ.
 * - LoRA A: (2u − 1) · 1/√fan_in; LoRA B: 0 (so training starts from the frozen model, as LoRA does).
 */

export type ParameterDtype = "float32" | "int8"

export interface ParameterSpec {
  readonly name: string
  readonly dtype: ParameterDtype
  readonly shape: ReadonlyArray<number>
  readonly trainable: boolean
}

export type ParameterValues = Float32Array | Int8Array

/** A model's parameter values by name (in `modelParameters` order). */
export type ModelWeights = ReadonlyMap<string, ParameterValues>

const param = (name: string, shape: ReadonlyArray<number>, trainable = true, dtype: ParameterDtype = "float32"): ParameterSpec => ({
  name,
  dtype,
  shape,
  trainable
})

/** The parameters of a model, in their canonical order (graph inputs, envelope tensors). */
export const modelParameters = (model: ModelSpec): ReadonlyArray<ParameterSpec> => {
  const { features: input, classes: output } = MNIST
  const h = model.hidden
  switch (model.family) {
    case "mlp":
      return [param("fc1.weight", [input, h]), param("fc1.bias", [h]), param("fc2.weight", [h, output]), param("fc2.bias", [output])]
    case "bitnet-lora": {
      const r = model.rank
      return [
        param("fc1.ternary", [input, h], false, "int8"),
        param("fc1.scale", [], false),
        param("fc1.lora_a", [input, r]),
        param("fc1.lora_b", [r, h]),
        param("fc2.ternary", [h, output], false, "int8"),
        param("fc2.scale", [], false),
        param("fc2.lora_a", [h, r]),
        param("fc2.lora_b", [r, output])
      ]
    }
  }
}

export const trainableParameters = (model: ModelSpec): ReadonlyArray<ParameterSpec> =>
  modelParameters(model).filter((p) => p.trainable)

export const elementCount = (shape: ReadonlyArray<number>): number => shape.reduce((n, d) => n * d, 1)

const uniform = (prng: Prng, n: number, bound: number): Float64Array => {
  const out = new Float64Array(n)
  for (let i = 0; i < n; i++) out[i] = (2 * prng.nextFloat() - 1) * bound
  return out
}

/**
 * The initial weights of the round's model (a function of the model and its weights seed only: v1's weights_seed,
 * v2's init.seed). A v2 spec that starts from its parent round's weights has none to generate: `startingWeights`
 * (roundWeights.ts) fetches those, and calling this with such a spec is a defect (RangeError).
 */
export const initialWeights = (spec: Pick<RoundSpecV1, "model" | "weights_seed"> | RoundSpec): ModelWeights => {
  const seed = "version" in spec ? weightsSeedOf(spec) : spec.weights_seed
  if (seed === undefined) throw new RangeError("a spec that starts from its parent round's weights has no seed to generate them from")
  return seededWeights(spec.model, seed)
}

/** The weights generated for `model` from `seed` (see the module comment). */
export const seededWeights = (model: ModelSpec, seed: number): ModelWeights => {
  const params = modelParameters(model)
  const weights = new Map<string, ParameterValues>()
  params.forEach((p, index) => {
    const prng = Prng.fromKey([Stream.weights, seed, index])
    const n = elementCount(p.shape)
    const fanIn = p.shape[0] ?? 1
    const bound = 1 / Math.sqrt(fanIn)
    if (p.name.endsWith(".bias") || p.name.endsWith(".lora_b")) {
      weights.set(p.name, new Float32Array(n))
    } else if (p.name.endsWith(".ternary")) {
      const latent = uniform(prng, n, bound)
      let sum = 0
      for (let i = 0; i < n; i++) sum += Math.abs(latent[i]!)
      const gamma = sum / n
      const ternary = new Int8Array(n)
      for (let i = 0; i < n; i++) {
        const w = latent[i]!
        ternary[i] = Math.abs(w) >= gamma / 2 ? (w > 0 ? 1 : -1) : 0
      }
      weights.set(p.name, ternary)
      weights.set(p.name.replace(".ternary", ".scale"), Float32Array.of(gamma))
    } else if (p.name.endsWith(".scale")) {
      // Set with its ternary tensor, which precedes it.
    } else {
      weights.set(p.name, Float32Array.from(uniform(prng, n, bound)))
    }
  })
  return weights
}

const ZERO_ADDRESS = `0x${"0".repeat(40)}`

/**
 * The profile of a "weights" envelope. Weights are not a training result: they are generated here in TypeScript
 * (IEEE-754 float64 arithmetic rounded once to float32, which every conforming engine computes alike), so their
 * bytes — and the round's modelCid — are the same on every machine. The profile says so instead of naming the
 * machine that happened to encode them, which would make two devnets publish two CIDs for one spec.
 */
export const portableProfile: DeterminismProfile = {
  runtime: "ecmascript float64",
  ep: "none",
  threads: 1,
  graph_optimization: "none",
  isa: "generic",
  platform: "any"
}

const tensorSpecs = (params: ReadonlyArray<ParameterSpec>): Array<TensorSpec> =>
  params.map((p) => ({ name: p.name, dtype: p.dtype, shape: [...p.shape] }))

const parameterBytes = (values: ParameterValues): Uint8Array =>
  values instanceof Int8Array ? new Uint8Array(values.buffer, values.byteOffset, values.byteLength) : float32Bytes(values)

/**
 * The round's initial weights as an R3GR envelope (encoding "weights"): every parameter of `modelParameters` in
 * order, ternary tensors as int8; model_hash = modelHash(spec); round_id "0", chunk_id 0, miner the zero address,
 * steps/batch_size/lr 0, no losses and the portable profile, so the bytes depend on the model and its seed alone. The devnet publishes
 * its CID as the round's modelCid; a miner regenerates the same bytes from the spec to check it.
 */
export const initialWeightsEnvelope = (spec: RoundSpec): Effect.Effect<Uint8Array, ValidationError> =>
  weightsEnvelope(spec, initialWeights(spec))

/** Encodes a model's weights as a "weights" envelope (see initialWeightsEnvelope). */
export const weightsEnvelope = (spec: RoundSpec, weights: ModelWeights): Effect.Effect<Uint8Array, ValidationError> =>
  roundWeightsEnvelope(spec, 0n, weights)

/**
 * The header of a round's own envelopes (its weights, its momentum state): not a training result, so the zero
 * miner, chunk 0, steps/batch/lr 0, no losses and the portable profile; round_id = the round in decimal and
 * model_hash = modelHash(spec), the model the round started from.
 */
export const roundEnvelopeHeader = (
  spec: RoundSpec,
  roundId: bigint,
  encoding: "weights" | "momentum",
  tensors: Array<TensorSpec>
): EnvelopeHeader => ({
  format: FORMAT,
  round_id: roundId.toString(),
  chunk_id: 0,
  miner: ZERO_ADDRESS,
  model_hash: modelHash(spec),
  encoding,
  tensors,
  steps: 0,
  batch_size: 0,
  lr: 0,
  loss_before: null,
  loss_after: null,
  profile: portableProfile
})

/**
 * The weights that came out of round `roundId` (whose spec is `spec`) as a "weights" envelope: as
 * `weightsEnvelope`, with round_id = roundId in decimal. model_hash = modelHash(spec) names the model the round
 * started from; the next round's spec names these bytes by CID and sha256 instead.
 */
export const roundWeightsEnvelope = (
  spec: RoundSpec,
  roundId: bigint,
  weights: ModelWeights
): Effect.Effect<Uint8Array, ValidationError> => {
  const params = modelParameters(spec.model)
  const header = roundEnvelopeHeader(spec, roundId, "weights", tensorSpecs(params))
  return Effect.suspend(() => {
    const missing = params.find((p) => !weights.has(p.name))
    if (missing) return Effect.fail(new ValidationError({ message: `weights lack ${missing.name}`, field: "weights" }))
    return encodeEnvelope(header, params.map((p) => parameterBytes(weights.get(p.name)!)))
  })
}

/**
 * Reads a "weights" envelope (e.g. fetched by the round's modelCid) as the spec's model weights: the encoding,
 * model_hash and every tensor's name, dtype and shape must be what the spec says; ternary values must be in {−1, 0, 1}.
 */
export const decodeWeightsEnvelope = (spec: RoundSpec, bytes: Uint8Array): Effect.Effect<ModelWeights, ValidationError> =>
  decodeModelWeights(spec.model, bytes, { what: "initial weights", modelHash: modelHash(spec) })

/**
 * Reads a "weights" envelope as weights of `model`: encoding, tensor names, dtypes and shapes, finite floats and
 * ternary int8 values are checked; model_hash only when `expected.modelHash` is given (a parent round's weights
 * carry the parent's model hash, which the child spec does not know).
 */
export const decodeModelWeights = Effect.fnUntraced(function*(
  model: ModelSpec,
  bytes: Uint8Array,
  expected: { readonly what: string; readonly modelHash?: Hex }
): Effect.fn.Return<ModelWeights, ValidationError> {
  const invalid = (message: string) => new ValidationError({ message: `${expected.what}: ${message}`, field: "model_cid" })
  const { header, tensors } = yield* decodeEnvelope(bytes)
  if (header.encoding !== "weights") return yield* invalid(`encoding is ${header.encoding}, not weights`)
  if (expected.modelHash !== undefined && header.model_hash !== expected.modelHash) {
    return yield* invalid(`model_hash ${header.model_hash} is not ${expected.modelHash}`)
  }
  const params = modelParameters(model)
  if (tensors.length !== params.length) return yield* invalid(`${tensors.length} tensors, the model has ${params.length}`)
  const weights = new Map<string, ParameterValues>()
  for (const [i, p] of params.entries()) {
    const t = tensors[i]!
    if (t.spec.name !== p.name || t.spec.dtype !== p.dtype || t.spec.shape.join(",") !== p.shape.join(",")) {
      return yield* invalid(`tensor ${i} is ${t.spec.name} ${t.spec.dtype} [${t.spec.shape}], expected ${p.name} ${p.dtype} [${p.shape}]`)
    }
    if (p.dtype === "int8") {
      const values = Int8Array.from(new Int8Array(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength))
      if (values.some((v) => v < -1 || v > 1)) return yield* invalid(`${p.name} is not ternary`)
      weights.set(p.name, values)
    } else {
      const values = float32Values(t)
      if (values.some((v) => !Number.isFinite(v))) return yield* invalid(`${p.name} has non-finite values`)
      weights.set(p.name, values)
    }
  }
  return weights
})
