import { Context, Effect, Layer } from "effect"
import { type PowInput, PowSolution } from "../domain/mining.ts"
import { PowSolver } from "../services/PowSolver.ts"
import { type FaultPlan, makeFaultInjector } from "./Faults.ts"

export type PowSolverMethod = "solve"

export interface TestPowSolverOptions {
  readonly faults?: FaultPlan<PowSolverMethod>
  /** The nonce every solve answers. Default 0. */
  readonly nonce?: bigint | number
}

const zeroHash = `0x${"0".repeat(64)}`

/** Control side of the test PowSolver. */
export class TestPowSolver extends Context.Service<TestPowSolver, {
  readonly setFaults: (faults: FaultPlan<PowSolverMethod>) => Effect.Effect<void>
  readonly calls: (method: PowSolverMethod) => Effect.Effect<number>
  /** Inputs of the solves that ran, in order. */
  readonly inputs: Effect.Effect<ReadonlyArray<PowInput>>
}>()("r3mes/testing/TestPowSolver") {
  /**
   * A stand-in PowSolver for harnesses: it does not search (a real search at difficulty 16+ costs tens of
   * milliseconds to seconds per call), it answers the configured nonce with a pow hash of all zeros. Its answers
   * are NOT valid proofs: only a chain that checks nothing (TestChain) accepts them. Use `latency` / `hang` faults
   * to model a slow search. The reference solver is in src/layers/pow.
   */
  static readonly layer = (options: TestPowSolverOptions = {}): Layer.Layer<PowSolver | TestPowSolver> =>
    Layer.effectContext(Effect.gen(function*() {
      const faults = yield* makeFaultInjector(options.faults)
      const inputs: Array<PowInput> = []
      const nonce = BigInt(options.nonce ?? 0)

      const port = PowSolver.of({
        solve: (input) =>
          faults.wrap(
            "solve",
            Effect.sync(() => {
              inputs.push(input)
              return new PowSolution({ nonce, powHash: zeroHash, hashes: 1 })
            })
          )
      })

      const control = TestPowSolver.of({
        setFaults: faults.set,
        calls: faults.calls,
        inputs: Effect.sync(() => [...inputs])
      })

      return Context.make(PowSolver, port).pipe(Context.add(TestPowSolver, control))
    }))
}
