import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { NetworkError, ValidationError } from "../../src/domain/errors.ts"
import type { RollbackAction } from "../../src/domain/TransactionRecord.ts"
import { registerCompensation } from "../../src/services/compensation.ts"

const setup = () => {
  const ran: Array<string> = []
  const recorded: Array<RollbackAction> = []
  const compensation = (name: string, undo: Effect.Effect<void, NetworkError> = Effect.void, keep?: () => boolean) =>
    registerCompensation({
      action: name,
      target: `target-${name}`,
      undo: Effect.andThen(Effect.sync(() => ran.push(name)), undo),
      keep,
      record: (a) => Effect.sync(() => recorded.push(a))
    })
  return { ran, recorded, compensation }
}

describe("compensations", () => {
  it.effect("run in reverse order of registration when the transaction fails", () =>
    Effect.gen(function*() {
      const { ran, recorded, compensation } = setup()
      const exit = yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
        yield* compensation("first")
        yield* compensation("second")
        yield* compensation("third")
        return yield* new ValidationError({ message: "step failed" })
      })))
      assert.strictEqual(exit._tag, "Failure")
      assert.deepStrictEqual(ran, ["third", "second", "first"])
      assert.deepStrictEqual(recorded.map((a) => a.status), ["done", "done", "done"])
    }))

  it.effect("do nothing when the transaction succeeds", () =>
    Effect.gen(function*() {
      const { ran, compensation } = setup()
      yield* Effect.scoped(Effect.gen(function*() {
        yield* compensation("first")
        yield* compensation("second")
      }))
      assert.deepStrictEqual(ran, [])
    }))

  it.effect("run on interruption too", () =>
    Effect.gen(function*() {
      const { ran, compensation } = setup()
      const fiber = yield* Effect.forkChild(Effect.scoped(Effect.gen(function*() {
        yield* compensation("first")
        yield* compensation("second")
        yield* Effect.never
      })))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(ran, ["second", "first"])
    }))

  it.effect("a failing compensation is recorded with its cause and the others still run", () =>
    Effect.gen(function*() {
      const { ran, recorded, compensation } = setup()
      yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
        yield* compensation("first")
        yield* compensation("second", Effect.fail(new NetworkError({ message: "ipfs unreachable" })))
        return yield* new ValidationError({ message: "step failed" })
      })))
      assert.deepStrictEqual(ran, ["second", "first"])
      assert.strictEqual(recorded[0]?.status, "failed")
      assert.include(recorded[0]?.error ?? "", "ipfs unreachable")
      assert.strictEqual(recorded[1]?.status, "done")
    }))

  it.effect("a kept side effect (past the commit point) is not undone", () =>
    Effect.gen(function*() {
      const { ran, compensation } = setup()
      let committed = false
      yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
        yield* compensation("unpin", Effect.void, () => committed)
        committed = true
        return yield* new ValidationError({ message: "after the commit point" })
      })))
      assert.deepStrictEqual(ran, [])
    }))
})
