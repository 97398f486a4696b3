import { Effect, Exit, type Redacted, Scope } from "effect"
import type { SqlClient } from "effect/sql"
import { type MiningError, ResourceError } from "../../domain/errors.ts"
import { pgError, type PgTarget } from "../postgres/pgErrors.ts"
import { openPgPool } from "../postgres/pgPool.ts"

/**
 * A fleet runner's name is a Postgres session lock (an advisory lock keyed by the name): held by the process running
 * it, for as long as its session lives, and taken for a moment by a runner taking a gone runner's work over. The
 * lock goes with the session, so a runner killed outright frees its name at once (a stopped one keeps it).
 */
const lockKey = (runner: string) => `r3mes-fleet-runner:${runner}`

/**
 * Takes `runner`'s name on a connection of its own, kept until the scope closes (then the pool closes, and the
 * session with it). False when another session holds it.
 */
export const tryRunnerName = Effect.fnUntraced(function*(
  sql: SqlClient.SqlClient,
  target: PgTarget,
  runner: string
): Effect.fn.Return<boolean, MiningError, Scope.Scope> {
  const connection = yield* sql.reserve.pipe(
    Effect.mapError((e) => pgError(e, "reserving a connection", target, "runner name"))
  )
  const rows = yield* connection.executeUnprepared(
    "SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS held",
    [lockKey(runner)],
    undefined
  ).pipe(Effect.mapError((e) => pgError(e, `taking the name ${runner}`, target, "runner name")))
  const held = (rows[0] as { readonly held?: unknown } | undefined)?.held === true
  if (held) {
    // Returned to the pool, a session would keep the lock: release it first.
    yield* Effect.addFinalizer(() =>
      connection.executeUnprepared("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [lockKey(runner)], undefined)
        .pipe(Effect.ignore)
    )
  }
  return held
})

/**
 * Holds a fleet runner's name for the scope: two processes under one name would each take the other's unfinished
 * transactions for their own (recovery resumes a runner's own), so the second is refused at start. A few tries
 * first: a runner taking this name's work over holds it for a moment.
 */
export const holdRunnerName = Effect.fn("holdRunnerName")(function*(options: {
  readonly url: Redacted.Redacted<string> | string
  readonly runner: string
}) {
  const { sql, target } = yield* openPgPool({ url: options.url, maxConnections: 1 }, "runner name")
  for (let attempt = 0; attempt < 7; attempt++) {
    if (attempt > 0) yield* Effect.sleep("500 millis")
    const scope = yield* Scope.make()
    const held = yield* tryRunnerName(sql, target, options.runner).pipe(
      Scope.provide(scope),
      Effect.onError(() => Scope.close(scope, Exit.void))
    )
    if (held) {
      // Kept until the runner's scope closes.
      yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
      return
    }
    yield* Scope.close(scope, Exit.void)
  }
  return yield* new ResourceError({
    message: `fleet runner ${options.runner} is running already: another process holds its name in the fleet's database`,
    resource: "fleet runner name",
    hint: "give each runner a name of its own (R3MES_FLEET_RUNNER or --fleet-runner); two on one machine need one each"
  })
})
