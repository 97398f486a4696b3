import { Clock, Effect, Layer } from "effect"
import type { SqlClient } from "effect/sql"
import { type MiningError, ValidationError } from "../../domain/errors.ts"
import { FleetRoster, type RunnerCensus } from "../../services/FleetRoster.ts"
import { lostConnectionAsFailure, pgError, type PgTarget } from "../postgres/pgErrors.ts"
import { migrate } from "../postgres/pgMigrations.ts"
import { openPgPool, type PgPoolOptions } from "../postgres/pgPool.ts"
import { holdNameForTakeover, runnerNameHeld } from "./runnerName.ts"

export interface PgFleetRosterOptions extends PgPoolOptions {
  /** This runner's name. */
  readonly self: string
}

const unfinished = "state NOT IN ('committed', 'failed', 'rolled_back')"

/**
 * The FleetRoster port on the fleet's Postgres: a runner is running while a session holds its name's lock
 * (runnerName.ts), so "gone" needs no clock and no heartbeat — and a runner stopped (SIGSTOP) but alive keeps its
 * session and its work. A takeover holds the gone runner's name while it moves the records, rewriting the owner
 * column and the record's copy of it in one transaction with a `taken_over` event each.
 */
export const make = Effect.fnUntraced(function*(sql: SqlClient.SqlClient, target: PgTarget, self: string) {
  yield* migrate(sql).pipe(Effect.mapError((e) => pgError(e, "opening (creating its tables if needed)", target, "fleet roster")))

  const run = <A>(context: string, effect: Effect.Effect<A, unknown>): Effect.Effect<A, MiningError> =>
    Effect.mapError(lostConnectionAsFailure(effect), (e) => pgError(e, context, target, "fleet roster"))

  /** Whether no process runs `runner` now: no session holds its name (looked at, not taken). */
  const isGone = (runner: string) =>
    run(`looking whether runner ${runner} runs`, runnerNameHeld(sql, runner)).pipe(Effect.map((held) => !held))

  const gone = Effect.gen(function*() {
    const owners = yield* run(
      "listing the runners with unfinished transactions",
      sql.unsafe<{ readonly owner: string }>(
        `SELECT DISTINCT owner FROM r3mes_transactions WHERE owner IS NOT NULL AND owner <> $1 AND ${unfinished}`,
        [self]
      )
    )
    const found: Array<string> = []
    for (const { owner } of owners) if (yield* isGone(owner)) found.push(owner)
    return found
  }).pipe(Effect.withSpan("PgFleetRoster.gone"))

  const moveRecords = (runner: string, at: string) =>
    sql.withTransaction(Effect.gen(function*() {
      const rows = yield* sql.unsafe<{ readonly transaction_id: string; readonly record: string }>(
        `SELECT transaction_id, record::text AS record FROM r3mes_transactions
         WHERE owner = $1 AND ${unfinished} ORDER BY seq FOR UPDATE`,
        [runner]
      )
      for (const row of rows) {
        const record: Record<string, unknown> = { ...(JSON.parse(row.record) as Record<string, unknown>), owner: self }
        yield* sql`UPDATE r3mes_transactions SET owner = ${self}, record = ${JSON.stringify(record)}
                   WHERE transaction_id = ${row.transaction_id} AND owner = ${runner}`
        yield* sql`INSERT INTO r3mes_events (transaction_id, at, state, event, detail)
                   VALUES (${row.transaction_id}, ${at}, ${String(record["state"])}, 'taken_over',
                     ${JSON.stringify(`from runner ${runner}, gone, by ${self}`)})`
      }
      return rows.map((r) => r.transaction_id)
    }))

  const takeOver = Effect.fn("PgFleetRoster.takeOver")(function*(runner: string) {
    if (runner === self) {
      return yield* new ValidationError({ message: `fleet runner ${self} cannot take its own work over`, field: "runner" })
    }
    return yield* Effect.scoped(Effect.gen(function*() {
      // Held while the records move: another taker, or the runner starting again, waits or finds them moved.
      if (!(yield* holdNameForTakeover(sql, target, runner))) return []
      const at = new Date(yield* Clock.currentTimeMillis).toISOString()
      return yield* run(`taking over the transactions of runner ${runner}`, moveRecords(runner, at))
    }))
  })

  const census = Effect.gen(function*() {
    const rows = yield* run(
      "counting the runners' transactions",
      sql.unsafe<{ readonly owner: string; readonly state: string; readonly count: string }>(
        "SELECT owner, state, count(*)::text AS count FROM r3mes_transactions WHERE owner IS NOT NULL GROUP BY owner, state"
      )
    )
    const byRunner = new Map<string, Record<string, number>>([[self, {}]])
    for (const row of rows) byRunner.set(row.owner, { ...byRunner.get(row.owner), [row.state]: Number(row.count) })
    const runners: Array<RunnerCensus> = []
    for (const [runner, transactions] of [...byRunner].sort(([a], [b]) => a.localeCompare(b))) {
      runners.push({ runner, running: runner === self || !(yield* isGone(runner)), transactions })
    }
    return runners
  }).pipe(Effect.withSpan("PgFleetRoster.census"))

  return FleetRoster.of({ self, gone, takeOver, census })
})

export const PgFleetRoster = {
  /** The FleetRoster port on Postgres, on a small pool of its own (names are held on connections of that pool). */
  layer: (options: PgFleetRosterOptions): Layer.Layer<FleetRoster, MiningError> =>
    Layer.effect(
      FleetRoster,
      Effect.flatMap(
        openPgPool({ ...options, maxConnections: options.maxConnections ?? 3 }, `fleet roster ${options.self}`),
        ({ sql, target }) => make(sql, target, options.self)
      )
    )
} as const
