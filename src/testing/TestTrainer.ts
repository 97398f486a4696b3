import { Context, Effect, Layer } from "effect"
import type { MiningError } from "../domain/errors.ts"
import { type DeterminismProfile, encodeEnvelope, float32Bytes } from "../domain/gradientEnvelope.ts"
import { type Task, TrainingResult } from "../domain/mining.ts"
import { Prng } from "../domain/training/prng.ts"
import { pseudoGradientHeader } from "../domain/training/gradientHeader.ts"
import { parseRoundSpec, type RoundSpec, weightsSeedOf } from "../domain/training/spec.ts"
import { sha256Bytes, sha256Hex } from "../layers/sha256Hex.ts"
import { Trainer } from "../services/Trainer.ts"
import { type FaultPlan, makeFaultInjector } from "./Faults.ts"

export type TrainerMethod = "train"

export interface TestTrainerOptions {
  readonly faults?: FaultPlan<TrainerMethod>
  /** Size of every envelope; set it over the configured gradient size limit to exercise the ResourceError path. */
  readonly envelopeBytes?: number
  readonly lossBefore?: number
  readonly lossAfter?: number
  readonly steps?: number
  /** The profile the port reports and r3gr envelopes carry. Default `testProfile`. */
  readonly profile?: DeterminismProfile
  /**
   * "opaque" (default): `testEnvelope` bytes, cheap and of any size. "r3gr": a real pseudo-gradient envelope of a toy
   * training run that follows the task's round spec (see `testTraining`), which verification tests decode, recompute
   * and compare; the task's spec must then be a valid round spec (a ValidationError otherwise, as the real trainer).
   */
  readonly envelope?: "opaque" | "r3gr"
  /**
   * r3gr only: every pseudo-gradient value times (1 + jitter · u), u ∈ [−1, 1) fixed per element — an honest miner
   * on another determinism profile, whose last bits differ. Default 0 (none).
   */
  readonly jitter?: number
}

/** The profile of the test trainer unless told otherwise: no machine's, so it never matches a real one by chance. */
export const testProfile: DeterminismProfile = {
  runtime: "r3mes-test-trainer 1",
  ep: "cpu",
  threads: 1,
  graph_optimization: "disabled",
  isa: "generic",
  platform: "test"
}

/** Keeps the toy run's streams apart from the real model's ("TEST"). */
const TEST_STREAM = 0x54455354n
/** The toy model's parameters: small, so unit tests recompute them in microseconds. */
const TOY_TENSORS = [{ name: "toy.weight", shape: [8, 4] }, { name: "toy.bias", shape: [4] }] as const

const uniform = (prng: Prng, n: number): Float64Array => Float64Array.from({ length: n }, () => 2 * prng.nextFloat() - 1)

const meanSquare = (w: ReadonlyArray<Float32Array>, target: ReadonlyArray<Float64Array>): number => {
  let sum = 0
  let n = 0
  for (const [i, t] of w.entries()) {
    for (let j = 0; j < t.length; j++) sum += (t[j]! - target[i]![j]!) ** 2
    n += t.length
  }
  return sum / n
}

/** "PARENT": keeps toy starts derived from a parent's weights apart from seeded ones. */
const PARENT_STREAM = 0x504152454e54n

/**
 * The key words of the toy's starting weights: [TEST, seed] for a seed (v1 weights_seed, v2 init.seed); for a v2
 * spec that starts from its parent round, [TEST, PARENT, the low 64 bits of init.weights_sha256] — a fake, it fetches
 * nothing, but a different parent still gives a different start, as it would in a real run.
 */
const toyStartKey = (spec: RoundSpec): ReadonlyArray<bigint | number> => {
  const seed = weightsSeedOf(spec)
  if (seed !== undefined) return [TEST_STREAM, seed]
  const sha = spec.version === 2 && "weights_sha256" in spec.init ? spec.init.weights_sha256 : "0x0"
  return [TEST_STREAM, PARENT_STREAM, BigInt.asUintN(64, BigInt(sha))]
}

/**
 * A toy training run with a real run's dependencies, so each kind of cheating changes its result: weights drawn from
 * the spec's start (see toyStartKey), a target from (dataset_seed, chunk), `steps` SGD steps w ← fround(w − lr · (w − target − noise_k))
 * with noise from (dataset_seed, chunk, k); loss = mean (w − target)², before and after; the pseudo-gradient is
 * initial − final, float32.
 */
export const testTraining = (spec: RoundSpec, chunkId: number, jitter = 0) => {
  const start = toyStartKey(spec)
  const initial = TOY_TENSORS.map((t, i) =>
    Float32Array.from(uniform(Prng.fromKey([...start, i]), t.shape.reduce((a, b) => a * b, 1)))
  )
  const target = TOY_TENSORS.map((_, i) => uniform(Prng.fromKey([TEST_STREAM, spec.dataset_seed, chunkId, i]), initial[i]!.length))
  const w = initial.map((t) => t.slice())
  for (let k = 0; k < spec.steps; k++) {
    w.forEach((t, i) => {
      const noise = Prng.fromKey([TEST_STREAM, spec.dataset_seed, chunkId, k + 1, i])
      for (let j = 0; j < t.length; j++) t[j] = t[j]! - spec.lr * (t[j]! - target[i]![j]! - 0.1 * (2 * noise.nextFloat() - 1))
    })
  }
  const gradient = w.map((t, i) => {
    const g = new Float32Array(t.length)
    const u = Prng.fromKey([TEST_STREAM, 0x4a4954n, chunkId, i]) // "JIT"
    for (let j = 0; j < g.length; j++) g[j] = (initial[i]![j]! - t[j]!) * (1 + jitter * (2 * u.nextFloat() - 1))
    return g
  })
  return {
    tensors: TOY_TENSORS.map((t, i) => ({ name: t.name, shape: [...t.shape], values: gradient[i]! })),
    lossBefore: meanSquare(initial, target),
    lossAfter: meanSquare(w, target)
  }
}

/** The r3gr envelope of `testTraining` for a task, as the Trainer port returns it. */
export const testTrainingResult = Effect.fnUntraced(function*(
  task: Task,
  miner: string,
  profile: DeterminismProfile = testProfile,
  jitter = 0
): Effect.fn.Return<TrainingResult, MiningError> {
  const spec = yield* parseRoundSpec(task.spec)
  const run = testTraining(spec, task.chunkId, jitter)
  const header = pseudoGradientHeader({
    task,
    miner,
    spec,
    tensors: run.tensors,
    lossBefore: run.lossBefore,
    lossAfter: run.lossAfter,
    profile
  })
  const envelope = yield* encodeEnvelope(header, run.tensors.map((t) => float32Bytes(t.values)))
  return new TrainingResult({
    envelope,
    gradientHash: sha256Hex(envelope),
    lossBefore: run.lossBefore,
    lossAfter: run.lossAfter,
    steps: spec.steps
  })
})

/**
 * The bytes the test trainer returns for a chunk: the text `r3mes-test-gradient round=R chunk=C\n` followed by
 * sha256(header ‖ u32be(0)) ‖ sha256(header ‖ u32be(1)) ‖ …, cut to `size` bytes. Not an R3GR envelope: it only
 * has to be deterministic, distinct per chunk and of a chosen size.
 */
export const testEnvelope = (roundId: bigint, chunkId: number, size: number): Uint8Array => {
  const header = new TextEncoder().encode(`r3mes-test-gradient round=${roundId} chunk=${chunkId}\n`)
  const out = new Uint8Array(size)
  out.set(header.subarray(0, size))
  const counter = new Uint8Array(4)
  for (let offset = header.length, block = 0; offset < size; block++) {
    new DataView(counter.buffer).setUint32(0, block)
    const digest = sha256Bytes(header, counter)
    const take = Math.min(digest.length, size - offset)
    out.set(digest.subarray(0, take), offset)
    offset += take
  }
  return out
}

/** Re-exported: tests and benches compute the gradient hash of test envelopes from here. */
export { sha256Hex }

/** Control side of the test Trainer. */
export class TestTrainer extends Context.Service<TestTrainer, {
  readonly setFaults: (faults: FaultPlan<TrainerMethod>) => Effect.Effect<void>
  readonly calls: (method: TrainerMethod) => Effect.Effect<number>
  /** Tasks whose training succeeded, in order (calls failed by a fault are counted by `calls` only). */
  readonly trained: Effect.Effect<ReadonlyArray<Task>>
}>()("r3mes/testing/TestTrainer") {
  /**
   * A Trainer that computes nothing: the envelope is `testEnvelope(roundId, chunkId, envelopeBytes)` (1024 bytes by
   * default), its gradient hash `0x` + sha256(envelope), losses 2.30 → 1.90 and 10 steps unless configured; with
   * `envelope: "r3gr"`, the real envelope of `testTraining`. Same task ⇒ same bytes, like the real trainer.
   */
  static readonly layer = (options: TestTrainerOptions = {}): Layer.Layer<Trainer | TestTrainer> =>
    Layer.effectContext(Effect.gen(function*() {
      const faults = yield* makeFaultInjector(options.faults)
      const trained: Array<Task> = []
      const size = options.envelopeBytes ?? 1024
      const profile = options.profile ?? testProfile

      const opaque = (task: Task) =>
        Effect.sync(() => {
          const envelope = testEnvelope(task.roundId, task.chunkId, size)
          return new TrainingResult({
            envelope,
            gradientHash: sha256Hex(envelope),
            lossBefore: options.lossBefore ?? 2.3,
            lossAfter: options.lossAfter ?? 1.9,
            steps: options.steps ?? 10
          })
        })

      const port = Trainer.of({
        profile: Effect.succeed(profile),
        train: (task, miner) =>
          faults.wrap(
            "train",
            (options.envelope === "r3gr" ? testTrainingResult(task, miner, profile, options.jitter ?? 0) : opaque(task)).pipe(
              Effect.tap(() => Effect.sync(() => trained.push(task)))
            )
          )
      })

      const control = TestTrainer.of({
        setFaults: faults.set,
        calls: faults.calls,
        trained: Effect.sync(() => [...trained])
      })

      return Context.make(Trainer, port).pipe(Context.add(TestTrainer, control))
    }))
}
