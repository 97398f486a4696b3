import { Effect } from "effect"
import type { MiningError } from "../../domain/errors.ts"
import type { PowInput, PowSolution } from "../../domain/mining.ts"

/**
 * A PowSolver's `solve` around a solver: one `PowSolver.solve` span carrying which solver ran, at what difficulty,
 * and what it found (hashes, nonce), whichever solver it is.
 */
export const spannedSolve = <E extends MiningError>(
  attributes: Readonly<Record<string, string | number>>,
  run: (input: PowInput) => Effect.Effect<PowSolution, E>
) =>
  Effect.fn("PowSolver.solve")(function*(input: PowInput) {
    yield* Effect.annotateCurrentSpan({ ...attributes, "pow.difficulty": input.difficulty })
    const solution = yield* run(input)
    yield* Effect.annotateCurrentSpan({ "pow.hashes": solution.hashes, "pow.nonce": solution.nonce.toString() })
    return solution
  })
