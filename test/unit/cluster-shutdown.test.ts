import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Layer, Option, Scope } from "effect"
import { boundedShutdown } from "../../src/layers/fleet/clusterRunner.ts"

/**
 * A cluster runner's close that never ends (seen after a freeze past the lease: the process never exited) is given
 * up after its timeout, so the runner's process exits; one that ends is waited for. The bound covers the runner's pool
 * too: a stuck runner keeps its connections, and a pool's close waits for them.
 */
describe("the cluster runner's bounded shutdown", () => {
  /** Builds `layer` in a scope and closes it; how long the close took, or none if it took more than 2 s. */
  const closeOf = <A, E>(layer: Layer.Layer<A, E>): Effect.Effect<Option.Option<number>, E> =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      yield* Layer.buildWithScope(layer, scope)
      const started = Date.now()
      const closed = yield* Scope.close(scope, Exit.void).pipe(
        Effect.forkDetach,
        Effect.flatMap(Fiber.await),
        Effect.timeoutOption("2 seconds")
      )
      return Option.map(closed, () => Date.now() - started)
    })

  const closing = (finalizer: Effect.Effect<void>) => {
    const finished: Array<string> = []
    const layer = Layer.effectDiscard(Effect.addFinalizer(() => finalizer.pipe(Effect.andThen(Effect.sync(() => finished.push("closed"))))))
    return { finished, layer }
  }

  it.live("a close that never ends is given up after the timeout", () =>
    Effect.gen(function*() {
      const { finished, layer } = closing(Effect.never)
      const took = yield* closeOf(boundedShutdown(layer, Duration.millis(200)))
      assert.deepStrictEqual(finished, [])
      assert.isAtLeast(Option.getOrThrow(took), 150)
    }))

  it.live("a close that ends is waited for", () =>
    Effect.gen(function*() {
      const { finished, layer } = closing(Effect.sleep("50 millis"))
      yield* closeOf(boundedShutdown(layer, Duration.seconds(5)))
      assert.deepStrictEqual(finished, ["closed"])
    }))

  it.live("the pool under a stuck runner is given up with it; bounding the runner alone still hangs on the pool", () =>
    Effect.gen(function*() {
      // The pool's close waits for the runner's connections, which the stuck runner never gives back.
      const connectionsBack = yield* Deferred.make<void>()
      const pool = Layer.effectDiscard(Effect.addFinalizer(() => Deferred.await(connectionsBack)))
      const runner = closing(Effect.never).layer
      const both = yield* closeOf(boundedShutdown(runner.pipe(Layer.provide(pool)), Duration.millis(200)))
      assert.isTrue(Option.isSome(both), "runner and pool bounded together: the close ends")
      const runnerOnly = yield* closeOf(boundedShutdown(runner, Duration.millis(200)).pipe(Layer.provide(pool)))
      assert.isTrue(Option.isNone(runnerOnly), "the runner alone bounded: the pool's close waits")
    }))
})
