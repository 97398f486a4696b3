import type { Dataset } from "./data.ts"
import type { ModelWeights, ParameterValues } from "./model.ts"
import type { ModelSpec } from "./spec.ts"

/**
 * How well weights classify a set of digits (DESIGN.md "Learning rounds": a round's aggregated weights are scored on
 * the held-out test split). The forward pass is the one the training graphs compute (layers/onnx/trainingGraphs.ts),
 * here in plain float64 TypeScript so the score is the same on every machine and needs no ONNX runtime:
 * - mlp: logits = relu(x · W1 + b1) · W2 + b2;
 * - bitnet-lora: layer(x) = s · (x · T) + (alpha / rank) · (x · A) · B, ReLU between the two layers, no biases.
 * Sums run in a fixed order (input index ascending), so the result is a pure function of its inputs.
 */

export interface Evaluation {
  readonly count: number
  readonly correct: number
  /** correct / count (NaN for no examples). */
  readonly accuracy: number
  /** Mean softmax cross-entropy, natural log. */
  readonly loss: number
}

/** out[j] += Σ_i x[i] · W[i, j] for a row-major W [in, out]; zero inputs (most MNIST pixels) add nothing. */
const accumulate = (out: Float64Array, x: ArrayLike<number>, w: ParameterValues, scale = 1): void => {
  const n = out.length
  for (let i = 0; i < x.length; i++) {
    const xi = x[i]!
    if (xi === 0) continue
    const a = xi * scale
    const row = i * n
    for (let j = 0; j < n; j++) out[j] = out[j]! + a * w[row + j]!
  }
}

const values = (weights: ModelWeights, name: string): ParameterValues => {
  const v = weights.get(name)
  if (v === undefined) throw new RangeError(`weights lack ${name}`)
  return v
}

/** A model's forward pass for one example: its logits. */
type Forward = (x: Float32Array) => Float64Array

const mlpForward = (hidden: number, classes: number, weights: ModelWeights): Forward => {
  const [w1, b1, w2, b2] = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"].map((n) => values(weights, n)) as [
    ParameterValues,
    ParameterValues,
    ParameterValues,
    ParameterValues
  ]
  return (x) => {
    const h = Float64Array.from(b1)
    accumulate(h, x, w1)
    for (let j = 0; j < hidden; j++) if (!(h[j]! > 0)) h[j] = 0
    const logits = Float64Array.from(b2)
    accumulate(logits, h, w2)
    return logits.subarray(0, classes)
  }
}

/** y = s · (x · T) + (alpha / rank) · (x · A) · B */
const loraLayer = (weights: ModelWeights, prefix: string, rank: number, scaling: number, output: number) => {
  const ternary = values(weights, `${prefix}.ternary`)
  const scale = values(weights, `${prefix}.scale`)[0]!
  const a = values(weights, `${prefix}.lora_a`)
  const b = values(weights, `${prefix}.lora_b`)
  return (x: ArrayLike<number>): Float64Array => {
    const base = new Float64Array(output)
    accumulate(base, x, ternary)
    const u = new Float64Array(rank)
    accumulate(u, x, a)
    const lora = new Float64Array(output)
    accumulate(lora, u, b)
    const y = new Float64Array(output)
    for (let j = 0; j < output; j++) y[j] = scale * base[j]! + scaling * lora[j]!
    return y
  }
}

const bitnetLoraForward = (
  model: Extract<ModelSpec, { family: "bitnet-lora" }>,
  classes: number,
  weights: ModelWeights
): Forward => {
  const scaling = model.alpha / model.rank
  const fc1 = loraLayer(weights, "fc1", model.rank, scaling, model.hidden)
  const fc2 = loraLayer(weights, "fc2", model.rank, scaling, classes)
  return (x) => {
    const h = fc1(x)
    for (let j = 0; j < h.length; j++) if (!(h[j]! > 0)) h[j] = 0
    return fc2(h)
  }
}

/** Accuracy and mean cross-entropy of `weights` on the dataset's examples `indices`. */
export const evaluateModel = (
  model: ModelSpec,
  weights: ModelWeights,
  dataset: Dataset,
  indices: Uint32Array
): Evaluation => {
  const { features, classes } = dataset
  const forward = model.family === "mlp"
    ? mlpForward(model.hidden, classes, weights)
    : bitnetLoraForward(model, classes, weights)
  let correct = 0
  let lossSum = 0
  for (const example of indices) {
    const logits = forward(dataset.pixels.subarray(example * features, (example + 1) * features))
    let best = 0
    for (let k = 1; k < classes; k++) if (logits[k]! > logits[best]!) best = k
    // log-sum-exp shifted by the largest logit, so no exp overflows.
    const max = logits[best]!
    let sum = 0
    for (let k = 0; k < classes; k++) sum += Math.exp(logits[k]! - max)
    const label = dataset.labels[example]!
    lossSum += max + Math.log(sum) - logits[label]!
    if (best === label) correct++
  }
  const count = indices.length
  return { count, correct, accuracy: correct / count, loss: lossSum / count }
}

/** Accuracy in parts per million, as `finalizeRound` records it. */
export const testAccuracyPpm = (result: { readonly correct: number; readonly count: number }): number =>
  Math.round((result.correct * 1_000_000) / result.count)
