/**
 * The aggregation math of a learning round (DESIGN.md "Learning rounds"), bit for bit as anyone recomputes it with
 * `r3mes-miner aggregate ROUND --check`: accepted pseudo-gradients clipped to the median L2 norm, a coordinate-wise
 * trimmed mean (the median when few), then an outer step with optional Nesterov momentum; float64 arithmetic, float32
 * results.
 *
 * Pure TypeScript (the domain imports nothing but effect), in aggregation/: tensors.ts (the tensor lists and their
 * checks), robustMean.ts (clip + trimmed mean, and why the lower median), outerStep.ts (the update). This file is the
 * module's public face.
 */

export {
  type Aggregate,
  aggregate,
  type AggregateOptions,
  clipScale,
  type Contribution,
  globalNorm,
  lowerMedian,
  middleMean,
  type PseudoGradient,
  trimPerSide
} from "./aggregation/robustMean.ts"
export { type MomentumOptions, outerStep, type OuterStepOptions, type OuterStepResult } from "./aggregation/outerStep.ts"
export type { NamedTensor, Tensors } from "./aggregation/tensors.ts"
