import { Effect } from "effect"
import { encodeEnvelope, type EnvelopeHeader, float32Bytes } from "../../src/domain/gradientEnvelope.ts"
import { trainableParameters, elementCount } from "../../src/domain/training/model.ts"
import { Prng } from "../../src/domain/training/prng.ts"
import { pseudoGradientHeader } from "../../src/domain/training/gradientHeader.ts"
import { learningRoundSpec, type RoundSpecV2 } from "../../src/domain/training/spec.ts"
import { testProfile } from "../../src/testing/TestTrainer.ts"

/**
 * Pseudo-gradients of learning rounds without ONNX: envelopes of the spec's model's trainable tensors with made-up
 * but deterministic values, so the coordinator tests aggregate, evaluate and recompute in milliseconds.
 */

/** A learning round small enough to evaluate on the 2,000 held-out digits in a few milliseconds (MLP, 8 hidden). */
export const smallLearningSpec = (
  seed: number,
  aggregation: Partial<RoundSpecV2["aggregation"]> = {},
  overrides: Partial<Omit<RoundSpecV2, "version" | "aggregation">> = {}
): RoundSpecV2 => {
  const base = learningRoundSpec(seed, "mlp", { model: { family: "mlp", hidden: 8 }, ...overrides })
  return { ...base, aggregation: { ...base.aggregation, ...aggregation } }
}

/** "HONEST": the stream of the direction every honest miner of a spec shares. */
const DIRECTION = 0x484f4e455354n

export interface GradientOptions {
  readonly roundId: bigint
  readonly chunkId: number
  readonly miner: string
  /** The global scale of the values (default 0.01); ×1e6 is an adversary. */
  readonly scale?: number
  /** Header overrides: a wrong task, a wrong encoding. */
  readonly header?: Partial<EnvelopeHeader>
  /** Tensors other than the model's trainable ones. */
  readonly tensors?: ReadonlyArray<{ readonly name: string; readonly shape: ReadonlyArray<number> }>
}

/**
 * An honest-looking pseudo-gradient of `spec` for a chunk: per value scale · (d + 0.3 · e), d shared by every chunk of
 * the spec's dataset seed (honest miners roughly agree on the descent direction) and e the chunk's own noise, in
 * [−1, 1). Its header is the one every trainer writes for the task (`pseudoGradientHeader`).
 */
export const honestGradient = (spec: RoundSpecV2, options: GradientOptions) =>
  Effect.gen(function*() {
    const scale = options.scale ?? 0.01
    const shapes = options.tensors ?? trainableParameters(spec.model)
    const tensors = shapes.map((p, i) => {
      const direction = Prng.fromKey([DIRECTION, spec.dataset_seed, i])
      const noise = Prng.fromKey([DIRECTION, spec.dataset_seed, options.chunkId + 1, i])
      const values = Float32Array.from(
        { length: elementCount(p.shape) },
        () => scale * ((2 * direction.nextFloat() - 1) + 0.3 * (2 * noise.nextFloat() - 1))
      )
      return { name: p.name, shape: [...p.shape], values }
    })
    const header: EnvelopeHeader = {
      ...pseudoGradientHeader({
        task: { roundId: options.roundId, chunkId: options.chunkId },
        miner: options.miner,
        spec,
        tensors,
        lossBefore: 2.3,
        lossAfter: 1.9,
        profile: testProfile
      }),
      ...options.header
    }
    return yield* encodeEnvelope(header, tensors.map((t) => float32Bytes(t.values)))
  })
