import { Effect, type Redacted } from "effect"
import { ResourceError } from "../../domain/errors.ts"
import { pgError } from "../postgres/pgErrors.ts"
import { openPgPool } from "../postgres/pgPool.ts"

/**
 * Holds a fleet runner's name for the scope: a Postgres session lock on a connection of its own. Two processes under
 * one name would each take the other's unfinished transactions for their own (recovery resumes a runner's own):
 * the second is refused at start. The lock goes with the session, so a runner killed outright frees its name for
 * its restart at once.
 */
export const holdRunnerName = Effect.fn("holdRunnerName")(function*(options: {
  readonly url: Redacted.Redacted<string> | string
  readonly runner: string
}) {
  const { sql, target } = yield* openPgPool({ url: options.url, maxConnections: 1 }, "runner name")
  const connection = yield* sql.reserve.pipe(
    Effect.mapError((e) => pgError(e, "reserving its connection", target, "runner name"))
  )
  const rows = yield* connection.executeUnprepared(
    "SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS held",
    [`r3mes-fleet-runner:${options.runner}`],
    undefined
  ).pipe(Effect.mapError((e) => pgError(e, `taking the name ${options.runner}`, target, "runner name")))
  if ((rows[0] as { readonly held?: unknown } | undefined)?.held !== true) {
    return yield* new ResourceError({
      message: `fleet runner ${options.runner} is running already: another process holds its name in the fleet's database`,
      resource: "fleet runner name",
      hint: "give each runner a name of its own (R3MES_FLEET_RUNNER or --fleet-runner); two on one machine need one each"
    })
  }
})
