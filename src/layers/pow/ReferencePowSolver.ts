import { Layer } from "effect"
import { solveReference } from "../../domain/pow.ts"
import { PowSolver } from "../../services/PowSolver.ts"
import { spannedSolve } from "./solveSpan.ts"

/** `solveReference` as a PowSolver's solve; also the worker pool's fallback when no worker thread starts. */
export const referenceSolve = spannedSolve({ "pow.solver": "reference" }, (input) => solveReference(input))

/**
 * The PowSolver port on the pure-TypeScript reference solver (`solveReference`, domain/pow.ts). It hashes on the
 * calling fiber's thread in batches and yields a macrotask turn between them, so other fibers and I/O keep running
 * and an interrupt stops it within one batch; it is the yardstick the native/WASM solver is checked and measured
 * against.
 */
export const ReferencePowSolver = {
  layer: Layer.succeed(PowSolver, PowSolver.of({ solve: referenceSolve })) satisfies Layer.Layer<PowSolver>
} as const
