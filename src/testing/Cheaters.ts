import { Effect, Layer } from "effect"
import { type MiningError, ValidationError } from "../domain/errors.ts"
import {
  type DecodedEnvelope,
  decodeEnvelope,
  encodeEnvelope,
  type EnvelopeHeader,
  float32Bytes,
  float32Values,
  type Tensor
} from "../domain/gradientEnvelope.ts"
import { Task, TrainingResult } from "../domain/mining.ts"
import { Prng } from "../domain/training/prng.ts"
import { canonicalRoundSpec, modelHash, parseRoundSpec, type RoundSpec, weightsSeedOf } from "../domain/training/spec.ts"
import type { VerdictName } from "../domain/verification.ts"
import { sha256Hex } from "../layers/sha256Hex.ts"
import { Trainer } from "../services/Trainer.ts"

/**
 * Dishonest trainers for verification tests (DESIGN.md "Verification"): each wraps an honest Trainer and returns a
 * well-formed envelope (a valid header for the task, its own sha256 as gradient hash, the honest trainer's profile)
 * whose content is wrong in one way. An honest recomputation must reject each with `Cheater.expectedVerdict[kind]`.
 * The honest trainer must produce R3GR envelopes (OnnxTrainer, or TestTrainer with `envelope: "r3gr"`).
 */
export type CheaterKind =
  | "random_tensors"
  | "scaled"
  | "other_chunk"
  | "fewer_steps"
  | "stale_model"
  | "made_up_losses"

const kinds: ReadonlyArray<CheaterKind> = [
  "random_tensors",
  "scaled",
  "other_chunk",
  "fewer_steps",
  "stale_model",
  "made_up_losses"
]

/** Wrong tensors are a recompute mismatch; right tensors with lying losses are "no improvement" (DESIGN.md). */
const expectedVerdict: Readonly<Record<CheaterKind, VerdictName>> = {
  random_tensors: "rejected_recompute_mismatch",
  scaled: "rejected_recompute_mismatch",
  other_chunk: "rejected_recompute_mismatch",
  fewer_steps: "rejected_recompute_mismatch",
  stale_model: "rejected_recompute_mismatch",
  made_up_losses: "rejected_no_improvement"
}

const SCALE = 3
/** made_up_losses claims this fraction of the true loss_after: a better result than the training gave. */
const CLAIMED_LOSS_FRACTION = 0.5

const notR3gr = (kind: CheaterKind) => (e: ValidationError) =>
  new ValidationError({
    message: `cheater ${kind}: the honest trainer's result is not an R3GR envelope (${e.message})`,
    field: "envelope",
    hint: "wrap a trainer that returns real envelopes: OnnxTrainer, or TestTrainer.layer({ envelope: \"r3gr\" })"
  })

/** Re-encodes an envelope with a changed header and tensors, as the cheater's own result. */
const reencode = Effect.fnUntraced(function*(
  header: EnvelopeHeader,
  tensors: ReadonlyArray<Uint8Array>
): Effect.fn.Return<TrainingResult, ValidationError> {
  const envelope = yield* encodeEnvelope(header, tensors)
  return new TrainingResult({
    envelope,
    gradientHash: sha256Hex(envelope),
    lossBefore: header.loss_before ?? Number.NaN,
    lossAfter: header.loss_after ?? Number.NaN,
    steps: header.steps
  })
})

const mapFloat32 = (tensors: ReadonlyArray<Tensor>, f: (values: Float32Array, index: number) => Float32Array) =>
  tensors.map((t, i) => (t.spec.dtype === "float32" ? float32Bytes(f(float32Values(t), i)) : t.bytes))

/** Values of the same spread as the honest ones (so norms look plausible), drawn from the task. */
const randomLike = (values: Float32Array, task: Task, index: number): Float32Array => {
  let max = 0
  for (const v of values) max = Math.max(max, Math.abs(v))
  const prng = Prng.fromKey([0x43484541n, task.roundId, task.chunkId, index]) // "CHEA"
  return values.map(() => (2 * prng.nextFloat() - 1) * (max || 1))
}

const withSpec = (task: Task, spec: RoundSpec, modelCid = task.modelCid) =>
  new Task({ ...task, spec: canonicalRoundSpec(spec), modelCid })

/**
 * The spec of a model the round did not start from: the next weights seed (v1, v2 seed init), or for a round that
 * starts from its parent's weights, generated weights (seed 0) instead of fetching the parent's.
 */
const staleSpec = (spec: RoundSpec): RoundSpec => {
  if (spec.version === 1) return { ...spec, weights_seed: (spec.weights_seed + 1) >>> 0 }
  const seed = weightsSeedOf(spec)
  return { ...spec, init: { seed: seed === undefined ? 0 : (seed + 1) >>> 0 } }
}

/** The chunk a cheater trains instead of its own: the next one (the previous one at the top of the range). */
const otherChunk = (chunkId: number): number => (chunkId === 0xffffffff ? chunkId - 1 : chunkId + 1)

const decodeResult = (kind: CheaterKind, result: TrainingResult): Effect.Effect<DecodedEnvelope, ValidationError> =>
  decodeEnvelope(result.envelope).pipe(Effect.mapError(notR3gr(kind)))

/** The dishonest `train` of a kind, on top of an honest trainer. */
const cheat = (kind: CheaterKind, honest: Trainer["Service"]) =>
  Effect.fn("Cheater.train")(function*(task: Task, miner: string): Effect.fn.Return<TrainingResult, MiningError> {
    yield* Effect.annotateCurrentSpan({ "cheater.kind": kind })
    switch (kind) {
      case "random_tensors": {
        const { header, tensors } = yield* decodeResult(kind, yield* honest.train(task, miner))
        return yield* reencode(header, mapFloat32(tensors, (v, i) => randomLike(v, task, i)))
      }
      case "scaled": {
        const { header, tensors } = yield* decodeResult(kind, yield* honest.train(task, miner))
        return yield* reencode(header, mapFloat32(tensors, (v) => v.map((x) => x * SCALE)))
      }
      case "made_up_losses": {
        const { header, tensors } = yield* decodeResult(kind, yield* honest.train(task, miner))
        const claimed = header.loss_after === null ? 0 : header.loss_after * CLAIMED_LOSS_FRACTION
        return yield* reencode({ ...header, loss_after: claimed }, tensors.map((t) => t.bytes))
      }
      case "other_chunk": {
        const other = new Task({ ...task, chunkId: otherChunk(task.chunkId) })
        const { header, tensors } = yield* decodeResult(kind, yield* honest.train(other, miner))
        return yield* reencode({ ...header, chunk_id: task.chunkId }, tensors.map((t) => t.bytes))
      }
      case "fewer_steps": {
        const spec = yield* parseRoundSpec(task.spec)
        if (spec.steps < 2) {
          return yield* new ValidationError({
            message: `cheater fewer_steps: the round trains ${spec.steps} step, one fewer is no training at all`,
            field: "spec",
            hint: "give the round at least 2 steps"
          })
        }
        const { header, tensors } = yield* decodeResult(kind, yield* honest.train(withSpec(task, { ...spec, steps: spec.steps - 1 }), miner))
        return yield* reencode({ ...header, steps: spec.steps }, tensors.map((t) => t.bytes))
      }
      case "stale_model": {
        const spec = yield* parseRoundSpec(task.spec)
        // No modelCid: a trainer with a model source would otherwise notice the weights differ and fetch the round's.
        const stale = withSpec(task, staleSpec(spec), "")
        const { header, tensors } = yield* decodeResult(kind, yield* honest.train(stale, miner))
        return yield* reencode({ ...header, model_hash: modelHash(spec) }, tensors.map((t) => t.bytes))
      }
    }
  })

/** A Trainer of the given kind around an honest one (its profile is the honest one's: cheaters pass for honest). */
const wrap = (kind: CheaterKind, honest: Trainer["Service"]): Trainer["Service"] =>
  Trainer.of({ train: cheat(kind, honest), profile: honest.profile })

export const Cheater = {
  kinds,
  expectedVerdict,
  wrap,
  /** The Trainer of `honest`, made dishonest in the way of `kind`. */
  layer: <E, R>(kind: CheaterKind, honest: Layer.Layer<Trainer, E, R>): Layer.Layer<Trainer, E, R> =>
    Layer.effect(Trainer, Effect.gen(function*() {
      return wrap(kind, yield* Trainer)
    })).pipe(Layer.provide(honest))
} as const
