import { Context, Effect, Layer } from "effect"
import { type Task, TrainingResult } from "../domain/mining.ts"
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
}

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
   * default), its gradient hash `0x` + sha256(envelope), losses 2.30 → 1.90 and 10 steps unless configured. Same
   * task ⇒ same bytes, like the real trainer.
   */
  static readonly layer = (options: TestTrainerOptions = {}): Layer.Layer<Trainer | TestTrainer> =>
    Layer.effectContext(Effect.gen(function*() {
      const faults = yield* makeFaultInjector(options.faults)
      const trained: Array<Task> = []
      const size = options.envelopeBytes ?? 1024

      const port = Trainer.of({
        train: (task, _miner) =>
          faults.wrap(
            "train",
            Effect.sync(() => {
              const envelope = testEnvelope(task.roundId, task.chunkId, size)
              trained.push(task)
              return new TrainingResult({
                envelope,
                gradientHash: sha256Hex(envelope),
                lossBefore: options.lossBefore ?? 2.3,
                lossAfter: options.lossAfter ?? 1.9,
                steps: options.steps ?? 10
              })
            })
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
