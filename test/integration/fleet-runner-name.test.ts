import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Scope } from "effect"
import { holdNameForTakeover, holdRunnerName, runnerNameHeld } from "../../src/layers/fleet/runnerName.ts"
import { unknownTarget } from "../../src/layers/postgres/pgErrors.ts"
import { findPostgres, serverForTests, withSql } from "../support/postgres.ts"
import { startTcpProxy } from "../support/tcpProxy.ts"

const postgres = findPostgres()
if ("skip" in postgres) console.warn(`fleet runner name tests skipped: ${postgres.skip}`)

describe.skipIf("skip" in postgres)("a fleet runner's name (issue 18)", () => {
  const server = serverForTests(postgres)

  it.live("held by one process at a time: a second one under it is refused with the fix; free again once released", () =>
    Effect.gen(function*() {
      const url = yield* Effect.promise(() => server().freshDatabase())
      const first = yield* Scope.make()
      yield* holdRunnerName({ url, runner: "gpu-1" }).pipe(Scope.provide(first))
      const refused = yield* Effect.flip(holdRunnerName({ url, runner: "gpu-1" }).pipe(Effect.scoped))
      assert.strictEqual(refused._tag, "ResourceError")
      assert.include(refused.hint ?? "", "R3MES_FLEET_RUNNER")
      assert.notInclude(refused.message, server().password)
      // Which process holds it, from where: an operator finds the other machine.
      assert.match(refused.message, new RegExp(`held by "r3mes-miner runner name gpu-1 pid ${process.pid}" from 127\\.0\\.0\\.1/32, server pid \\d+, session since `))
      // Another name is another runner.
      yield* holdRunnerName({ url, runner: "gpu-2" }).pipe(Effect.scoped)
      yield* Scope.close(first, Exit.void)
      yield* holdRunnerName({ url, runner: "gpu-1" }).pipe(Effect.scoped)
    }))

  it.live("kept across a restart of the database: taken again on a new session, so a second process is still refused", () =>
    Effect.gen(function*() {
      const url = yield* Effect.promise(() => server().freshDatabase())
      const first = yield* Scope.make()
      yield* holdRunnerName({ url, runner: "gpu-1", checkInterval: "200 millis" }).pipe(Scope.provide(first))
      // Every session ends with the server; the name is free until the keeper takes it again.
      yield* Effect.promise(() => server().stop())
      yield* Effect.sleep("1 second")
      yield* Effect.promise(() => server().start())
      yield* Effect.sleep("1500 millis")
      const refused = yield* Effect.flip(holdRunnerName({ url, runner: "gpu-1" }).pipe(Effect.scoped))
      assert.strictEqual(refused._tag, "ResourceError", "the name is held again after the restart")
      yield* Scope.close(first, Exit.void)
      yield* holdRunnerName({ url, runner: "gpu-1" }).pipe(Effect.scoped)
    }).pipe(Effect.ensuring(Effect.promise(() => server().start()))), 60_000)

  it.live("looked at without taking it: held names are seen (both halves of the lock key), free ones not, nor another database's", () =>
    Effect.gen(function*() {
      const url = yield* Effect.promise(() => server().freshDatabase())
      const elsewhere = yield* Effect.promise(() => server().freshDatabase())
      // Thirty names: their 64-bit keys' halves cover both signs.
      const names = Array.from({ length: 30 }, (_, i) => `gpu-${i}`)
      const held = names.filter((_, i) => i % 3 !== 0)
      const holding = yield* Scope.make()
      for (const runner of held) yield* holdRunnerName({ url, runner }).pipe(Scope.provide(holding))
      const seen = (at: string) =>
        withSql(at, (sql) => Effect.forEach(names, (runner) => runnerNameHeld(sql, runner))).pipe(
          Effect.map((flags) => names.filter((_, i) => flags[i]))
        )
      assert.deepStrictEqual(yield* seen(url), held)
      assert.deepStrictEqual(yield* seen(elsewhere), [])
      // Looking took nothing: each name can still be held by nobody else, and is free once let go.
      const refused = yield* Effect.flip(holdRunnerName({ url, runner: held[0]! }).pipe(Effect.scoped))
      assert.strictEqual(refused._tag, "ResourceError")
      yield* Scope.close(holding, Exit.void)
      assert.deepStrictEqual(yield* seen(url), [])
    }), 60_000)

  it.live("a runner whose machine vanished (no FIN: power or network lost): the server ends its session, the name is free", () =>
    Effect.gen(function*() {
      const url = yield* Effect.promise(() => server().freshDatabase())
      const proxy = yield* Effect.acquireRelease(Effect.promise(() => startTcpProxy(server().port)), (p) => Effect.promise(() => p.close()))
      const held = withSql(url, (sql) => runnerNameHeld(sql, "gpu-1"))
      const runner = yield* Scope.make()
      yield* holdRunnerName({ url: proxy.via(url), runner: "gpu-1", sessionTimeout: "2 seconds", checkInterval: "200 millis" })
        .pipe(Scope.provide(runner))
      // Kept alive past the timeout by the keeper's checks.
      yield* Effect.sleep("3 seconds")
      assert.isTrue(yield* held, "held while its runner is there")
      proxy.vanish()
      const vanishedAt = Date.now()
      while ((yield* held) && Date.now() - vanishedAt < 15_000) yield* Effect.sleep("200 millis")
      const freedAfter = Date.now() - vanishedAt
      console.log(`the name was free ${freedAfter} ms after its machine vanished (session timeout 2 s)`)
      // Without the session's idle timeout the server would keep it for hours (TCP keepalive's defaults).
      assert.isBelow(freedAfter, 15_000, "the name is free again")
      yield* holdRunnerName({ url, runner: "gpu-1" }).pipe(Effect.scoped)
      yield* Scope.close(runner, Exit.void)
    }).pipe(Effect.scoped), 60_000)

  it.live("a runner starting while another takes its work over waits for the takeover (not refused), then holds its name", () =>
    Effect.gen(function*() {
      const url = yield* Effect.promise(() => server().freshDatabase())
      // The taker holds the gone runner's name (shared) for 5 s: longer than the 3 s of quick tries.
      const taking = yield* Deferred.make<void>()
      yield* Effect.forkScoped(withSql(url, (sql) =>
        Effect.scoped(Effect.gen(function*() {
          assert.isTrue(yield* holdNameForTakeover(sql, unknownTarget(), "gpu-1"))
          yield* Deferred.succeed(taking, undefined)
          yield* Effect.sleep("5 seconds")
        }))
      ))
      yield* Deferred.await(taking)
      // A takeover is not the runner running.
      assert.isFalse(yield* withSql(url, (sql) => runnerNameHeld(sql, "gpu-1")))
      const started = Date.now()
      const runner = yield* Scope.make()
      yield* holdRunnerName({ url, runner: "gpu-1" }).pipe(Scope.provide(runner))
      const waited = Date.now() - started
      assert.isAtLeast(waited, 4_000, "it waited for the takeover")
      assert.isTrue(yield* withSql(url, (sql) => runnerNameHeld(sql, "gpu-1")))
      // A taker finds it running now: nothing to take.
      assert.isFalse(yield* withSql(url, (sql) => Effect.scoped(holdNameForTakeover(sql, unknownTarget(), "gpu-1"))))
      yield* Scope.close(runner, Exit.void)
    }).pipe(Effect.scoped), 60_000)
})
