import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { makeKeyedLock } from "../../src/services/mining/KeyedLock.ts"
import { makePinGuard } from "../../src/services/mining/PinGuard.ts"

describe("KeyedLock", () => {
  it.effect("one key runs one at a time, other keys at once; nothing is kept once nobody holds a key", () =>
    Effect.gen(function*() {
      const lock = makeKeyedLock()
      const log: Array<string> = []
      const work = (key: string, name: string) =>
        lock.withLock(key, Effect.sync(() => log.push(`${name} in`)).pipe(
          Effect.andThen(Effect.sleep("1 second")),
          Effect.andThen(Effect.sync(() => log.push(`${name} out`)))
        ))
      const fibers = yield* Effect.forEach(
        [["a", "a1"], ["a", "a2"], ["b", "b1"]] as const,
        ([key, name]) => Effect.forkChild(work(key, name))
      )
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("1 second")
      yield* Effect.forEach(fibers, Fiber.join)
      const at = (entry: string) => log.indexOf(entry)
      assert.isBelow(at("b1 in"), at("a1 out"), "another key runs at once")
      assert.isAbove(at("a2 in"), at("a1 out"), "the same key waits")
      assert.strictEqual(log.length, 6)
      assert.strictEqual(lock.size(), 0)
      // A failure or an interruption releases the key too.
      yield* Effect.flip(lock.withLock("a", Effect.fail("no")))
      const hung = yield* Effect.forkChild(lock.withLock("a", Effect.never))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(hung)
      assert.strictEqual(lock.size(), 0)
    }))
})

describe("PinGuard", () => {
  it.effect("a release unpins only what nobody pinned since it began; it forgets its candidates afterwards", () =>
    Effect.gen(function*() {
      const guard = makePinGuard()
      const unpinned: Array<string> = []
      const released = yield* guard.releasing(
        ["taken", "free"],
        // Deciding takes a while; meanwhile a transaction pins "taken".
        guard.pinning("taken", Effect.void).pipe(Effect.as(["taken", "free"])),
        (cid) => Effect.sync(() => unpinned.push(cid)).pipe(Effect.as(true))
      )
      assert.deepStrictEqual(released, ["free"])
      assert.deepStrictEqual(unpinned, ["free"])
      assert.strictEqual(guard.watching(), 0)
      assert.strictEqual(guard.locked(), 0)
      // Pinned before the release began: released if nothing references it (that is the caller's `decide`).
      yield* guard.pinning("later", Effect.void)
      assert.deepStrictEqual(yield* guard.releasing(["later"], Effect.succeed(["later"]), () => Effect.succeed(true)), ["later"])
    }))
})
