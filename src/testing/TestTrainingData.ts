import { Context, Effect, Layer } from "effect"
import type { Dataset } from "../domain/training/data.ts"
import { loadMnist } from "../layers/onnx/MnistDigits.ts"
import { TrainingData } from "../services/TrainingData.ts"
import { type FaultPlan, makeFaultInjector } from "./Faults.ts"

export type TrainingDataMethod = "dataset"

export interface TestTrainingDataOptions {
  readonly faults?: FaultPlan<TrainingDataMethod>
  /**
   * The dataset served. Default: the bundled MNIST digits (`loadMnist`, read and fingerprint-checked once per process),
   * since the held-out test split and every chunk are defined on those 10,000 digits.
   */
  readonly dataset?: Dataset
}

/** Control side of the test TrainingData: change faults while a test runs, count reads. */
export class TestTrainingData extends Context.Service<TestTrainingData, {
  readonly setFaults: (faults: FaultPlan<TrainingDataMethod>) => Effect.Effect<void>
  readonly calls: (method: TrainingDataMethod) => Effect.Effect<number>
}>()("r3mes/testing/TestTrainingData") {
  /**
   * The TrainingData port on the real digits (or `options.dataset`), with the test ports' faults: a `dataset` read
   * that fails N times (a missing or corrupt package is a ResourceError or ValidationError from the real adapter),
   * fails after reading, or is slow. Each read is counted, failed ones included.
   */
  static readonly layer = (
    options: TestTrainingDataOptions = {}
  ): Layer.Layer<TrainingData | TestTrainingData> =>
    Layer.effectContext(Effect.gen(function*() {
      const faults = yield* makeFaultInjector(options.faults)
      const source = options.dataset === undefined ? loadMnist() : Effect.succeed(options.dataset)
      const port = TrainingData.of({ dataset: faults.wrap("dataset", source) })
      const control = TestTrainingData.of({ setFaults: faults.set, calls: faults.calls })
      return Context.make(TrainingData, port).pipe(Context.add(TestTrainingData, control))
    }))
}
