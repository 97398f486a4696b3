import { ValidationError } from "../errors.ts"

/** One named float32 tensor of a model's trainable parameters (or of a pseudo-gradient, or of momentum state). */
export interface NamedTensor {
  readonly name: string
  readonly shape: ReadonlyArray<number>
  readonly values: Float32Array
}

export type Tensors = ReadonlyArray<NamedTensor>

const elementCount = (shape: ReadonlyArray<number>): number => shape.reduce((n, d) => n * d, 1)

const sameShape = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): boolean =>
  a.length === b.length && a.every((d, i) => d === b[i])

const showShape = (shape: ReadonlyArray<number>): string => `[${shape.join(", ")}]`

export const invalid = (message: string, hint: string, field?: string): ValidationError =>
  new ValidationError({ message, hint, ...(field ? { field } : {}) })

/**
 * The first reason `tensors` (called `what`, e.g. "chunk 7") cannot be combined with `reference`: a different tensor
 * list, a shape, a values length that does not fit its shape, or a non-finite value. Non-finite values are refused
 * rather than propagated: a NaN has no place in a sort, so it would make the aggregate depend on input order.
 */
export const tensorMismatch = (
  what: string,
  tensors: Tensors,
  reference: Tensors,
  referenceName: string
): ValidationError | undefined => {
  if (tensors.length !== reference.length) {
    return invalid(
      `${what} has ${tensors.length} tensors, ${referenceName} has ${reference.length}`,
      "every tensor list in one step must come from the same model spec",
      "tensors"
    )
  }
  for (let t = 0; t < tensors.length; t++) {
    const tensor = tensors[t]!
    const expected = reference[t]!
    if (tensor.name !== expected.name) {
      return invalid(
        `${what}: tensor ${t} is "${tensor.name}", ${referenceName} has "${expected.name}" there`,
        "tensors must be listed in the model's canonical parameter order",
        tensor.name
      )
    }
    if (!sameShape(tensor.shape, expected.shape)) {
      return invalid(
        `${what}: tensor "${tensor.name}" has shape ${showShape(tensor.shape)}, ${referenceName} has ${showShape(expected.shape)}`,
        "every tensor list in one step must come from the same model spec",
        tensor.name
      )
    }
    const problem = valuesProblem(what, tensor)
    if (problem) return problem
  }
  return undefined
}

const valuesProblem = (what: string, tensor: NamedTensor): ValidationError | undefined => {
  const expected = elementCount(tensor.shape)
  if (tensor.values.length !== expected) {
    return invalid(
      `${what}: tensor "${tensor.name}" has ${tensor.values.length} values, its shape ${showShape(tensor.shape)} needs ${expected}`,
      "the values must be the tensor's elements in row-major order",
      tensor.name
    )
  }
  const index = tensor.values.findIndex((v) => !Number.isFinite(v))
  if (index >= 0) {
    return invalid(
      `${what}: tensor "${tensor.name}" has a non-finite value (${tensor.values[index]}) at index ${index}`,
      "a NaN or infinite value means the training diverged; such a tensor cannot be aggregated or applied",
      tensor.name
    )
  }
  return undefined
}

/** The float32 tensors of `like`'s names and shapes holding `values` (rounded once, by the Float32Array). */
export const float32Like = (like: Tensors, values: (tensor: number, index: number) => number): Tensors =>
  like.map((tensor, t) => ({
    name: tensor.name,
    shape: [...tensor.shape],
    values: Float32Array.from({ length: tensor.values.length }, (_, i) => values(t, i))
  }))
