import { Effect, Schema } from "effect"
import { ValidationError } from "../errors.ts"
import { canonicalJson } from "../gradientEnvelope.ts"
import { bytesToHex, type Hex, sha256 } from "../pow.ts"
import { MNIST } from "./data.ts"

/**
 * The round's task spec: what every miner of the round trains and how. It travels on chain as canonical JSON
 * (`openRound(…, spec, …)`, emitted by RoundOpened; the contract keeps sha256(spec)), so it is snake_case JSON,
 * parsed strictly (unknown fields are errors: a typo must not silently train something else).
 *
 *     {"batch_size":32,"dataset":"mnist","dataset_seed":7,"examples_per_chunk":320,"lr":0.1,
 *      "model":{"family":"mlp","hidden":64},"steps":10,"version":1,"weights_seed":7}
 *
 * Input (784 pixels) and output (10 classes) sizes follow from the dataset.
 */

const PositiveInt = (maximum: number) => Schema.Int.check(Schema.isBetween({ minimum: 1, maximum }))
const Seed = Schema.Int.check(Schema.isUint32())

export const MlpModel = Schema.Struct({
  family: Schema.Literal("mlp"),
  hidden: PositiveInt(4096)
})
export type MlpModel = typeof MlpModel.Type

/**
 * The R3MES genesis shape: frozen ternary BitNet b1.58 layers (W ∈ {−1, 0, +1} × a per-layer scale) with
 * trainable LoRA adapters A (in × rank), B (rank × out) scaled by alpha / rank.
 */
export const BitnetLoraModel = Schema.Struct({
  family: Schema.Literal("bitnet-lora"),
  hidden: PositiveInt(4096),
  rank: PositiveInt(256),
  alpha: Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1024, exclusiveMinimum: true }))
})
export type BitnetLoraModel = typeof BitnetLoraModel.Type

export const ModelSpec = Schema.Union([MlpModel, BitnetLoraModel])
export type ModelSpec = typeof ModelSpec.Type
export type ModelFamily = ModelSpec["family"]

export const RoundSpec = Schema.Struct({
  version: Schema.Literal(1),
  model: ModelSpec,
  dataset: Schema.Literal(MNIST.name),
  /** Seeds the choice of each chunk's examples (with the chunk id). */
  dataset_seed: Seed,
  /** Seeds the initial weights (see model.ts for the init). */
  weights_seed: Seed,
  examples_per_chunk: PositiveInt(MNIST.count),
  /** Local SGD steps per chunk. */
  steps: PositiveInt(100_000),
  batch_size: PositiveInt(MNIST.count),
  lr: Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 100, exclusiveMinimum: true }))
}).check(
  Schema.makeFilter((spec) =>
    spec.batch_size <= spec.examples_per_chunk
      ? undefined
      : { path: ["batch_size"], issue: `batch_size ${spec.batch_size} exceeds examples_per_chunk ${spec.examples_per_chunk}` }
  ),
  Schema.makeFilter((spec) =>
    spec.model.family !== "bitnet-lora" || spec.model.rank <= spec.model.hidden
      ? undefined
      : { path: ["model", "rank"], issue: "rank must not exceed hidden" }
  )
)
export type RoundSpec = typeof RoundSpec.Type

/**
 * A spec for quick rounds: a miner transaction trains a chunk in a few tens of milliseconds on one CPU thread.
 * `seed` is both the dataset and the weights seed (their streams are kept apart by tags).
 */
export const defaultRoundSpec = (seed: number, family: ModelFamily = "mlp"): RoundSpec => ({
  version: 1,
  model: family === "mlp" ? { family: "mlp", hidden: 64 } : { family: "bitnet-lora", hidden: 64, rank: 4, alpha: 8 },
  dataset: MNIST.name,
  dataset_seed: seed >>> 0,
  weights_seed: seed >>> 0,
  examples_per_chunk: 320,
  steps: 10,
  batch_size: 32,
  lr: 0.1
})

const decodeSpec = Schema.decodeUnknownEffect(RoundSpec)

const invalidSpec = (message: string) =>
  new ValidationError({
    message: `invalid round spec: ${message}`,
    field: "spec",
    hint: "the round's task spec (RoundOpened) does not describe a model this miner can train"
  })

/** Validates a decoded JSON value as a round spec. */
export const decodeRoundSpec = (value: unknown): Effect.Effect<RoundSpec, ValidationError> =>
  decodeSpec(value, { onExcessProperty: "error" }).pipe(Effect.mapError((e) => invalidSpec(e.message)))

/** Parses the round's spec JSON text (canonical or not) and validates it. */
export const parseRoundSpec = (text: string): Effect.Effect<RoundSpec, ValidationError> =>
  Effect.try({ try: () => JSON.parse(text) as unknown, catch: () => invalidSpec("not JSON") }).pipe(
    Effect.flatMap(decodeRoundSpec)
  )

/** The spec's canonical JSON (sorted keys, no spaces): what `openRound` publishes. */
export const canonicalRoundSpec = (spec: RoundSpec): string => canonicalJson(spec)

const sha256Hex = (text: string): Hex => bytesToHex(sha256(new TextEncoder().encode(text)))

/** sha256 of the canonical spec, as the contract stores it. */
export const specHash = (spec: RoundSpec): Hex => sha256Hex(canonicalRoundSpec(spec))

/**
 * The identity of a round's starting model: sha256 of the canonical JSON of {model, version, weights_seed}. Both the
 * initial-weights envelope and every gradient envelope of the round carry it as `model_hash`, so a gradient names
 * the exact model it was computed from (rounds that differ only in data or hyper-parameters share it).
 */
export const modelHash = (spec: RoundSpec): Hex =>
  sha256Hex(canonicalJson({ model: spec.model, version: spec.version, weights_seed: spec.weights_seed }))
