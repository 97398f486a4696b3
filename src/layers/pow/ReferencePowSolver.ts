import { Effect, Layer } from "effect"
import type { PowInput } from "../../domain/mining.ts"
import { solveReference } from "../../domain/pow.ts"
import { PowSolver } from "../../services/PowSolver.ts"

const solve = Effect.fn("PowSolver.solve")(function*(input: PowInput) {
  yield* Effect.annotateCurrentSpan({ "pow.solver": "reference", "pow.difficulty": input.difficulty })
  const solution = yield* solveReference(input)
  yield* Effect.annotateCurrentSpan({ "pow.hashes": solution.hashes, "pow.nonce": solution.nonce.toString() })
  return solution
})

/**
 * The PowSolver port on the pure-TypeScript reference solver (`solveReference`, domain/pow.ts). It hashes on the
 * calling fiber's thread in batches and yields a macrotask turn between them, so other fibers and I/O keep running
 * and an interrupt stops it within one batch; it is the yardstick the native/WASM solver is checked and measured
 * against.
 */
export const ReferencePowSolver = {
  layer: Layer.succeed(PowSolver, PowSolver.of({ solve })) satisfies Layer.Layer<PowSolver>
} as const
