import { Effect, Schema } from "effect"
import { ValidationError } from "../errors.ts"
import { canonicalJson } from "../gradientEnvelope.ts"
import { bytesToHex, type Hex, sha256 } from "../pow.ts"
import { MNIST, MNIST_TRAINING_POOL } from "./data.ts"

/**
 * The round's task spec: what every miner of the round trains and how. It travels on chain as canonical JSON
 * (`openRound(…, spec, …)`, emitted by RoundOpened; the contract keeps sha256(spec)), so it is snake_case JSON,
 * parsed strictly (unknown fields are errors: a typo must not silently train something else).
 *
 *     {"batch_size":32,"dataset":"mnist","dataset_seed":7,"examples_per_chunk":320,"lr":0.1,
 *      "model":{"family":"mlp","hidden":64},"steps":10,"version":1,"weights_seed":7}
 *
 * Input (784 pixels) and output (10 classes) sizes follow from the dataset. Two versions: 1 (below) and 2
 * (RoundSpecV2: learning rounds), told apart by `version`.
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

/** Checks both spec versions share: a batch fits in a chunk; a LoRA rank fits in its layer. */
interface TrainerShape {
  readonly batch_size: number
  readonly examples_per_chunk: number
  readonly model: ModelSpec
}
const commonChecks = [
  Schema.makeFilter((spec: TrainerShape) =>
    spec.batch_size <= spec.examples_per_chunk
      ? undefined
      : { path: ["batch_size"], issue: `batch_size ${spec.batch_size} exceeds examples_per_chunk ${spec.examples_per_chunk}` }
  ),
  Schema.makeFilter((spec: TrainerShape) =>
    spec.model.family !== "bitnet-lora" || spec.model.rank <= spec.model.hidden
      ? undefined
      : { path: ["model", "rank"], issue: "rank must not exceed hidden" }
  )
] as const

const trainerFields = {
  model: ModelSpec,
  dataset: Schema.Literal(MNIST.name),
  /** Seeds the choice of each chunk's examples (with the chunk id). */
  dataset_seed: Seed,
  examples_per_chunk: PositiveInt(MNIST.count),
  /** Local SGD steps per chunk. */
  steps: PositiveInt(100_000),
  batch_size: PositiveInt(MNIST.count),
  lr: Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 100, exclusiveMinimum: true }))
}

/** Version 1: one round from generated weights, chunks drawn from all 10,000 digits. Kept byte for byte. */
export const RoundSpecV1 = Schema.Struct({
  version: Schema.Literal(1),
  ...trainerFields,
  /** Seeds the initial weights (see model.ts for the init). */
  weights_seed: Seed
}).check(...commonChecks)
export type RoundSpecV1 = typeof RoundSpecV1.Type

/** Round one of a run: weights generated from the seed exactly as v1's weights_seed. */
export const SeedInit = Schema.Struct({ seed: Seed })
export type SeedInit = typeof SeedInit.Type

const Sha256Hex = Schema.String.check(Schema.isPattern(/^0x[0-9a-f]{64}$/))
const UINT256_LIMIT = 1n << 256n
/** A round id as the chain has it: a uint256 in decimal, no sign, no leading zeros. */
const RoundIdDecimal = Schema.String.check(
  Schema.isPattern(/^(0|[1-9][0-9]{0,77})$/),
  Schema.makeFilter((s: string) => (BigInt(s) < UINT256_LIMIT ? undefined : "exceeds uint256"))
)

/**
 * A later round: the weights the coordinator published for `parent_round` (fetched by CID and checked against the
 * sha256 before training), and the outer optimiser's momentum state when there is one (both keys or neither).
 */
export const ParentInit = Schema.Struct({
  parent_round: RoundIdDecimal,
  weights_cid: Schema.NonEmptyString,
  weights_sha256: Sha256Hex,
  momentum_cid: Schema.optionalKey(Schema.NonEmptyString),
  momentum_sha256: Schema.optionalKey(Sha256Hex)
}).check(
  Schema.makeFilter((init) =>
    (init.momentum_cid === undefined) === (init.momentum_sha256 === undefined)
      ? undefined
      : { path: ["momentum_cid"], issue: "momentum_cid and momentum_sha256 come together or not at all" }
  )
)
export type ParentInit = typeof ParentInit.Type

export const SpecInit = Schema.Union([SeedInit, ParentInit])
export type SpecInit = typeof SpecInit.Type

/** How the coordinator turns the accepted pseudo-gradients into the next weights (src/domain/aggregation.ts). */
export const AggregationSettings = Schema.Struct({
  outer_lr: Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 10, exclusiveMinimum: true })),
  momentum: Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1, exclusiveMaximum: true })),
  nesterov: Schema.Boolean,
  /** Fraction trimmed from each side of the coordinate-wise mean. */
  trim: Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 0.5, exclusiveMaximum: true })),
  /**
   * The verifiers whose verdicts decide what is aggregated (lowercase addresses): a submission one of them rejected
   * is left out, and the round waits for their verdicts (until its deadline). Empty: every submission counts, and
   * robust aggregation alone holds back what is bad.
   */
  verifiers: Schema.Array(Schema.String.check(Schema.isPattern(/^0x[0-9a-f]{40}$/)))
})
export type AggregationSettings = typeof AggregationSettings.Type

/**
 * Version 2: learning rounds (DESIGN.md "Learning rounds"). The round starts from `init` — a seed, or its parent
 * round's aggregated weights — and says how its own results are aggregated. Chunks never draw the held-out test
 * split, so the training pool has 8,000 digits.
 *
 *     {"aggregation":{"momentum":0.9,"nesterov":true,"outer_lr":0.7,"trim":0.1,"verifiers":[]},"batch_size":32,"dataset":"mnist",
 *      "dataset_seed":7,"examples_per_chunk":320,"init":{"seed":7},"lr":0.1,"model":{"family":"mlp","hidden":64},
 *      "steps":10,"version":2}
 */
export const RoundSpecV2 = Schema.Struct({
  version: Schema.Literal(2),
  ...trainerFields,
  init: SpecInit,
  aggregation: AggregationSettings
}).check(
  ...commonChecks,
  Schema.makeFilter((spec) =>
    spec.examples_per_chunk <= MNIST_TRAINING_POOL
      ? undefined
      : {
        path: ["examples_per_chunk"],
        issue: `examples_per_chunk ${spec.examples_per_chunk} exceeds the ${MNIST_TRAINING_POOL} digits of the training pool`
      }
  )
)
export type RoundSpecV2 = typeof RoundSpecV2.Type

export const RoundSpec = Schema.Union([RoundSpecV1, RoundSpecV2])
export type RoundSpec = typeof RoundSpec.Type

/**
 * A spec for quick rounds: a miner transaction trains a chunk in a few tens of milliseconds on one CPU thread.
 * `seed` is both the dataset and the weights seed (their streams are kept apart by tags).
 */
export const defaultRoundSpec = (seed: number, family: ModelFamily = "mlp"): RoundSpecV1 => ({
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

/**
 * The aggregation of learning rounds unless a spec says otherwise (one place to tune). DiLoCo's outer Nesterov
 * momentum 0.9; outer lr 1.0 rather than OpenDiLoCo's 0.7 and a trim of 0.25 (with 8 chunks a round: the mean of
 * the middle 4 per coordinate) — measured on the default MLP, 8 chunks × 30 rounds: 0.7/0.1 reached 92.3% test
 * accuracy (federated ÷ centralised 0.988), 1.0/0.25 reached 93.3% (0.998); `npm run bench:learning` has the figures.
 */
export const defaultAggregation: AggregationSettings = {
  outer_lr: 1,
  momentum: 0.9,
  nesterov: true,
  trim: 0.25,
  verifiers: []
}

/**
 * Round one of a learning run: defaultRoundSpec's trainer settings, weights from `seed`, `defaultAggregation`;
 * `overrides` replace any field (e.g. a tuned aggregation).
 */
export const learningRoundSpec = (
  seed: number,
  family: ModelFamily = "mlp",
  overrides?: Partial<Omit<RoundSpecV2, "version">>
): RoundSpecV2 => {
  const { version: _version, weights_seed, ...trainer } = defaultRoundSpec(seed, family)
  return { ...trainer, version: 2, init: { seed: weights_seed }, aggregation: defaultAggregation, ...overrides }
}

/** The next round of a run: the parent's spec with the parent round's published weights as its start. */
export const childRoundSpec = (parent: RoundSpecV2, init: ParentInit): RoundSpecV2 => ({ ...parent, init })

export const isParentInit = (init: SpecInit): init is ParentInit => "parent_round" in init

/** The seed the spec's initial weights are generated from; undefined when they are a parent round's weights. */
export const weightsSeedOf = (spec: RoundSpec): number | undefined =>
  spec.version === 1 ? spec.weights_seed : isParentInit(spec.init) ? undefined : spec.init.seed

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
 * The identity of a round's starting model: sha256 of the canonical JSON of {model, version, weights_seed} (v1) or
 * {init, model, version} (v2: a parent init names its weights by hash, so the model hash pins them too). Both the
 * initial-weights envelope and every gradient envelope of the round carry it as `model_hash`, so a gradient names
 * the exact model it was computed from (rounds that differ only in data or hyper-parameters share it).
 */
export const modelHash = (spec: RoundSpec): Hex =>
  spec.version === 1
    ? sha256Hex(canonicalJson({ model: spec.model, version: spec.version, weights_seed: spec.weights_seed }))
    : sha256Hex(canonicalJson({ init: spec.init, model: spec.model, version: spec.version }))
