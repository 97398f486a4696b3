import { Context, type Effect } from "effect"
import type { MiningError } from "../domain/errors.ts"
import type { PowInput, PowSolution } from "../domain/mining.ts"

/**
 * Port: finds the smallest nonce whose pow hash has at least `input.difficulty` leading zero bits
 * (DESIGN.md "Proof of work"). Interruptible: an interrupted search stops computing.
 */
export class PowSolver extends Context.Service<PowSolver, {
  readonly solve: (input: PowInput) => Effect.Effect<PowSolution, MiningError>
}>()("r3mes/services/PowSolver") {}
