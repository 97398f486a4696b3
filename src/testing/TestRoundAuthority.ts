import { Context, Effect, Layer } from "effect"
import { RoundAuthority } from "../services/RoundAuthority.ts"
import { type FaultPlan, makeFaultInjector } from "./Faults.ts"
import { TestChain } from "./TestChain.ts"
import { revert } from "./testChain/reverts.ts"

export type RoundAuthorityMethod = "finalizeRound"

export interface TestRoundAuthorityOptions {
  readonly faults?: FaultPlan<RoundAuthorityMethod>
  /**
   * Whether the account is the registry's owner. Default true; false: every `finalizeRound` reverts NotOwner (the
   * contract's first check) and changes nothing.
   */
  readonly owner?: boolean
}

/** Control side of the test RoundAuthority. */
export class TestRoundAuthority extends Context.Service<TestRoundAuthority, {
  readonly setFaults: (faults: FaultPlan<RoundAuthorityMethod>) => Effect.Effect<void>
  readonly calls: (method: RoundAuthorityMethod) => Effect.Effect<number>
}>()("r3mes/testing/TestRoundAuthority") {
  /**
   * The RoundAuthority on the TestChain it is provided with: `finalizeRound` is the TestChain's (`TestChain.finalizeRound`,
   * the contract's checks, one block mined), so the Chain port of the same TestChain reads the finalization and
   * refuses claims and submissions of the round. Faults as every test port: `failAfter` finalizes and loses the
   * answer, so the retry meets RoundAlreadyFinalized.
   */
  static readonly layer = (
    options: TestRoundAuthorityOptions = {}
  ): Layer.Layer<RoundAuthority | TestRoundAuthority, never, TestChain> =>
    Layer.effectContext(Effect.gen(function*() {
      const chain = yield* TestChain
      const faults = yield* makeFaultInjector(options.faults)
      const owner = options.owner ?? true

      const port = RoundAuthority.of({
        finalizeRound: (finalization) =>
          faults.wrap(
            "finalizeRound",
            owner
              ? chain.finalizeRound(finalization)
              : Effect.fail(revert("NotOwner", [], "only the registry's owner finalizes rounds"))
          )
      })
      const control = TestRoundAuthority.of({ setFaults: faults.set, calls: faults.calls })
      return Context.make(RoundAuthority, port).pipe(Context.add(TestRoundAuthority, control))
    }))
}
