import { MNIST } from "../../domain/training/data.ts"
import { modelParameters, type ParameterSpec } from "../../domain/training/model.ts"
import type { BitnetLoraModel, MlpModel, ModelSpec } from "../../domain/training/spec.ts"
import { attr, encodeModel, GraphBuilder } from "./onnxModel.ts"

/**
 * The training graphs: one ONNX graph per model family that takes a batch (x [N, 784], one-hot y [N, 10]) and every
 * model parameter as inputs, and returns the mean softmax cross-entropy `loss` and one `grad_<param>` output per
 * trainable parameter. The backward pass is written out as ONNX ops (no training runtime needed): with z the logits,
 * p = softmax(z), n the batch size,
 *
 *   dL/dz = (p − y) / n;   for y = a · W: dL/dW = aᵀ · dL/dy, dL/da = dL/dy · Wᵀ;   ReLU: dL/dz = dL/dh where z > 0.
 *
 * Frozen parameters (ternary layers and their scales) are inputs too: one session serves every round with the
 * same model shape, whatever its weights. The element type is float32 for training; float64 builds the same graph
 * for gradient checks.
 */

export const BATCH = "N"

export type GraphElemType = "float32" | "float64"

export interface TrainingGraph {
  /** Serialized ModelProto. */
  readonly onnx: Uint8Array
  readonly parameters: ReadonlyArray<ParameterSpec>
  /** Trainable parameter name → its gradient output. */
  readonly gradientOutputs: ReadonlyMap<string, string>
  /** Multiply-adds × 2 of one forward + backward pass, per example (elementwise ops not counted). */
  readonly flopsPerExample: number
}

export const LOSS_OUTPUT = "loss"
export const gradientOutput = (parameter: string): string => `grad_${parameter}`

interface Head {
  readonly x: string
  readonly y: string
}

/** Inputs x, y and the parameters (ternary tensors are fed as the graph's float type). */
const declareInputs = (g: GraphBuilder, parameters: ReadonlyArray<ParameterSpec>): Head => {
  const x = g.input("x", [BATCH, MNIST.features])
  const y = g.input("y", [BATCH, MNIST.classes])
  for (const p of parameters) g.input(p.name, p.shape)
  return { x, y }
}

/**
 * Which operators a graph is written with. "cpu": LogSoftmax, and the batch size from x's shape (int64, cast): the
 * graph the CPU and CUDA providers run, whose bytes every CPU gradient so far was computed with. "webgpu": only
 * operators ONNX Runtime's WebGPU provider implements (1.30 has no LogSoftmax kernel and no int64 Cast, so those ran
 * on the CPU between GPU nodes): log-softmax as max, shift, exp, sum, log; the batch size as a sum of ones. Same
 * mathematics, other rounding: the flavour is part of the provider's profile, not a choice of its own.
 */
export type GraphFlavour = "cpu" | "webgpu"

/** The flavour a device's sessions are built from: the WebGPU provider's own; the CPU's for the others. */
export const graphFlavourOf = (device: string): GraphFlavour => (device === "webgpu" ? "webgpu" : "cpu")

/** The batch size n as the graph's float: counted from x's shape ("cpu"), or summed from ones per row ("webgpu"). */
const batchSize = (g: GraphBuilder, head: Head, flavour: GraphFlavour): string => {
  if (flavour === "cpu") {
    return g.op("Squeeze", [g.op("Cast", [g.op("Shape", [head.x], { start: attr.int(0), end: attr.int(1) })], { to: attr.int(g.elemType === "float64" ? 11 : 1) })])
  }
  // 0 · Σ_j y_ij + 1 = 1 per row whatever the labels (they are finite), summed exactly: n < 2^24.
  const rowOnes = g.op("Add", [g.op("Mul", [g.op("ReduceSum", [head.y, g.int64s([1])], { keepdims: attr.int(0) }), g.scalar(0)]), g.scalar(1)])
  return g.op("ReduceSum", [rowOnes], { keepdims: attr.int(0) })
}

/** log softmax over the classes: the operator ("cpu"), or written out from operators every provider has ("webgpu"). */
const logSoftmax = (g: GraphBuilder, logits: string, flavour: GraphFlavour): string => {
  if (flavour === "cpu") return g.op("LogSoftmax", [logits], { axis: attr.int(1) })
  const shifted = g.op("Sub", [logits, g.op("ReduceMax", [logits], { axes: attr.ints([1]), keepdims: attr.int(1) })])
  const logSum = g.op("Log", [g.op("ReduceSum", [g.op("Exp", [shifted]), g.int64s([1])], { keepdims: attr.int(1) })])
  return g.op("Sub", [shifted, logSum])
}

/** Mean cross-entropy of softmax(logits) against y; returns dL/dlogits. */
const crossEntropy = (g: GraphBuilder, head: Head, logits: string, flavour: GraphFlavour): string => {
  const n = batchSize(g, head, flavour)
  const logp = logSoftmax(g, logits, flavour)
  const total = g.op("ReduceSum", [g.op("Mul", [head.y, logp])], { keepdims: attr.int(0) })
  g.op("Div", [g.op("Neg", [total]), n], {}, LOSS_OUTPUT)
  g.output(LOSS_OUTPUT, [])
  return g.op("Div", [g.op("Sub", [g.op("Exp", [logp]), head.y]), n])
}

/** dL/dz for z → ReLU → h, given dL/dh. */
const reluBackward = (g: GraphBuilder, z: string, dh: string): string => {
  const zero = g.scalar(0)
  return g.op("Where", [g.op("Greater", [z, zero]), dh, zero])
}

const gradient = (g: GraphBuilder, parameter: string, value: string, shape: ReadonlyArray<number>): void => {
  g.op("Identity", [value], {}, gradientOutput(parameter))
  g.output(gradientOutput(parameter), shape)
}

const mlpGraph = (model: MlpModel, g: GraphBuilder, flavour: GraphFlavour): void => {
  const { features: d, classes: c } = MNIST
  const h = model.hidden
  const head = declareInputs(g, modelParameters(model))
  const z1 = g.op("Add", [g.matMul(head.x, "fc1.weight", { m: BATCH, k: d, n: h }, BATCH), "fc1.bias"])
  const a1 = g.op("Relu", [z1])
  const z2 = g.op("Add", [g.matMul(a1, "fc2.weight", { m: BATCH, k: h, n: c }, BATCH), "fc2.bias"])
  const dz2 = crossEntropy(g, head, z2, flavour)

  const axis0 = g.int64s([0])
  gradient(g, "fc2.weight", g.matMul(g.op("Transpose", [a1]), dz2, { m: h, k: BATCH, n: c }, BATCH), [h, c])
  gradient(g, "fc2.bias", g.op("ReduceSum", [dz2, axis0], { keepdims: attr.int(0) }), [c])
  const da1 = g.matMul(dz2, g.op("Transpose", ["fc2.weight"]), { m: BATCH, k: c, n: h }, BATCH)
  const dz1 = reluBackward(g, z1, da1)
  gradient(g, "fc1.weight", g.matMul(g.op("Transpose", [head.x]), dz1, { m: d, k: BATCH, n: h }, BATCH), [d, h])
  gradient(g, "fc1.bias", g.op("ReduceSum", [dz1, axis0], { keepdims: attr.int(0) }), [h])
}

const bitnetLoraGraph = (model: BitnetLoraModel, g: GraphBuilder, flavour: GraphFlavour): void => {
  const { features: d, classes: c } = MNIST
  const { hidden: h, rank: r } = model
  const head = declareInputs(g, modelParameters(model))
  const scaling = g.scalar(model.alpha / model.rank)

  /** y = x · (s · T) + (alpha / r) · (x · A) · B; returns y and u = x · A. */
  const layer = (x: string, prefix: string, input: number, output: number) => {
    const base = g.op("Mul", [g.matMul(x, `${prefix}.ternary`, { m: BATCH, k: input, n: output }, BATCH), `${prefix}.scale`])
    const u = g.matMul(x, `${prefix}.lora_a`, { m: BATCH, k: input, n: r }, BATCH)
    const lora = g.op("Mul", [g.matMul(u, `${prefix}.lora_b`, { m: BATCH, k: r, n: output }, BATCH), scaling])
    return { y: g.op("Add", [base, lora]), u }
  }

  /** Gradients of A and B from dL/dy; returns dL/du (scaled), for dL/dx. */
  const layerBackward = (x: string, u: string, dy: string, prefix: string, input: number, output: number) => {
    const scaledDy = g.op("Mul", [dy, scaling])
    gradient(g, `${prefix}.lora_b`, g.matMul(g.op("Transpose", [u]), scaledDy, { m: r, k: BATCH, n: output }, BATCH), [r, output])
    const du = g.matMul(scaledDy, g.op("Transpose", [`${prefix}.lora_b`]), { m: BATCH, k: output, n: r }, BATCH)
    gradient(g, `${prefix}.lora_a`, g.matMul(g.op("Transpose", [x]), du, { m: input, k: BATCH, n: r }, BATCH), [input, r])
    return du
  }

  const l1 = layer(head.x, "fc1", d, h)
  const a1 = g.op("Relu", [l1.y])
  const l2 = layer(a1, "fc2", h, c)
  const dz2 = crossEntropy(g, head, l2.y, flavour)

  const du2 = layerBackward(a1, l2.u, dz2, "fc2", h, c)
  const daBase = g.op("Mul", [g.matMul(dz2, g.op("Transpose", ["fc2.ternary"]), { m: BATCH, k: c, n: h }, BATCH), "fc2.scale"])
  const daLora = g.matMul(du2, g.op("Transpose", ["fc2.lora_a"]), { m: BATCH, k: r, n: h }, BATCH)
  const dz1 = reluBackward(g, l1.y, g.op("Add", [daBase, daLora]))
  layerBackward(head.x, l1.u, dz1, "fc1", d, h)
}

/** The training graph of a model (float32 and the "cpu" flavour unless asked otherwise). */
export const trainingGraph = (model: ModelSpec, elemType: GraphElemType = "float32", flavour: GraphFlavour = "cpu"): TrainingGraph => {
  const g = new GraphBuilder(elemType)
  switch (model.family) {
    case "mlp":
      mlpGraph(model, g, flavour)
      break
    case "bitnet-lora":
      bitnetLoraGraph(model, g, flavour)
      break
  }
  const parameters = modelParameters(model)
  const gradientOutputs = new Map(parameters.filter((p) => p.trainable).map((p) => [p.name, gradientOutput(p.name)]))
  return {
    onnx: encodeModel(g.build(`r3mes_${model.family}_train`)),
    parameters,
    gradientOutputs,
    flopsPerExample: g.matMulFlopsPerExample
  }
}
