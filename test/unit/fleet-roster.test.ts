import { describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { InMemoryJournal } from "../../src/testing/InMemoryJournal.ts"
import { TestFleetRoster } from "../../src/testing/TestFleetRoster.ts"
import { fleetRosterContract } from "../support/fleetRosterContract.ts"

describe("TestFleetRoster: the FleetRoster contract", () => {
  fleetRosterContract(it.effect, () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(
        TestFleetRoster.layer({ self: "runner-a" }).pipe(Layer.provideMerge(InMemoryJournal.layer({ owner: "runner-a" })))
      )
      const control = Context.get(context, TestFleetRoster)
      return {
        layer: Layer.succeedContext(context),
        running: (runner: string) =>
          Effect.acquireRelease(control.setRunning(runner, true), () => control.setRunning(runner, false))
      }
    }))
})
