import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Layer, Scope } from "effect"
import { boundedShutdown } from "../../src/layers/fleet/clusterRunner.ts"

/**
 * A cluster runner's close that never ends (seen under load after a freeze past the lease: the process never exited)
 * is given up after its timeout, so the runner's process exits; one that ends is waited for.
 */
describe("the cluster runner's bounded shutdown", () => {
  const closing = (finalizer: Effect.Effect<void>, timeout: Duration.Duration) =>
    Effect.gen(function*() {
      const finished: Array<string> = []
      const layer = boundedShutdown(
        Layer.effectDiscard(Effect.addFinalizer(() => finalizer.pipe(Effect.andThen(Effect.sync(() => finished.push("closed")))))),
        timeout
      )
      const scope = yield* Scope.make()
      yield* Layer.buildWithScope(layer, scope)
      const started = Date.now()
      yield* Scope.close(scope, Exit.void)
      return { finished, took: Date.now() - started }
    })

  it.live("a close that never ends is given up after the timeout", () =>
    Effect.gen(function*() {
      const { finished, took } = yield* closing(Effect.never, Duration.millis(200))
      assert.deepStrictEqual(finished, [])
      assert.isAtLeast(took, 150)
    }).pipe(Effect.timeout("10 seconds")))

  it.live("a close that ends is waited for", () =>
    Effect.gen(function*() {
      const { finished } = yield* closing(Effect.sleep("50 millis"), Duration.seconds(5))
      assert.deepStrictEqual(finished, ["closed"])
    }))
})
