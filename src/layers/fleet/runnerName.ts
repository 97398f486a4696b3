import { Cause, Clock, Duration, Effect, Exit, type Redacted, Scope } from "effect"
import type { SqlClient } from "effect/sql"
import { type MiningError, ResourceError } from "../../domain/errors.ts"
import { pgError, type PgTarget } from "../postgres/pgErrors.ts"
import { openPgPool } from "../postgres/pgPool.ts"

/**
 * A fleet runner's name is a Postgres session lock (an advisory lock keyed by the name): held exclusively by the
 * process running it, for as long as its session lives, and in shared mode for a moment by a runner taking a gone
 * runner's work over (so a runner starting meanwhile can tell a takeover, which it waits for, from a second process
 * under its name, which refuses it). The lock goes with the session, so a runner killed outright frees its name at
 * once (a stopped one keeps it until the session's idle timeout).
 */
type Hold = "runner" | "takeover"
const lockFunction = { runner: "pg_try_advisory_lock", takeover: "pg_try_advisory_lock_shared" } as const
const unlockFunction = { runner: "pg_advisory_unlock", takeover: "pg_advisory_unlock_shared" } as const
const lockKey = (runner: string) => `r3mes-fleet-runner:${runner}`

/** A name taken on a session: whether it is held, and a check that the session holding it is still there. */
interface TakenName {
  readonly held: boolean
  /** Fails when the session is gone (the database restarted, the connection dropped) or does not answer in time. */
  readonly alive: Effect.Effect<void, unknown>
}

/**
 * How long the server keeps the session of a held name once nothing comes from it (`idle_session_timeout`,
 * Postgres 14+): the keeper's check every second keeps it alive, and when its runner's machine is gone without
 * closing the connection (power lost, network cut) the server ends the session after this, and the name is free. Left
 * to TCP, the server would hold such a session — and so the name and the runner's work — for two hours or more (the
 * kernel's keepalive defaults). Effect's cluster bounds its shard-lock sessions the same way.
 */
const defaultSessionTimeout = Duration.seconds(15)

const takeRunnerName = Effect.fnUntraced(function*(
  sql: SqlClient.SqlClient,
  target: PgTarget,
  runner: string,
  hold: Hold,
  sessionTimeout: Duration.Duration = defaultSessionTimeout
): Effect.fn.Return<TakenName, MiningError, Scope.Scope> {
  const connection = yield* sql.reserve.pipe(
    Effect.mapError((e) => pgError(e, "reserving a connection", target, "runner name"))
  )
  // Returned to the pool, a session would keep the lock: release it first. Registered before the lock is even asked
  // for (an unlock of a lock not held changes nothing), so an interruption right after the server granted it cannot
  // hand the pool a connection holding the name: that runner could not start again. Never cut short by a timeout for
  // the same reason (a session that is gone fails the unlock at once).
  yield* Effect.addFinalizer(() =>
    connection.executeUnprepared(`SELECT ${unlockFunction[hold]}(hashtextextended($1, 0))`, [lockKey(runner)], undefined)
      .pipe(
        // Back in the pool, an idle session must not be ended under it by the server.
        Effect.andThen(connection.executeUnprepared("SELECT set_config('idle_session_timeout', '0', false)", [], undefined)),
        Effect.ignore
      )
  )
  const rows = yield* connection.executeUnprepared(
    `SELECT ${lockFunction[hold]}(hashtextextended($1, 0)) AS held`,
    [lockKey(runner)],
    undefined
  ).pipe(Effect.mapError((e) => pgError(e, `taking the name ${runner}`, target, "runner name")))
  const held = (rows[0] as { readonly held?: unknown } | undefined)?.held === true
  if (held) {
    // Older servers lack the setting: the name is held all the same, only a vanished machine keeps it longer.
    yield* connection.executeUnprepared(
      "SELECT set_config('idle_session_timeout', $1, false)",
      [`${Math.max(1, Math.round(Duration.toMillis(sessionTimeout)))}ms`],
      undefined
    ).pipe(Effect.ignore)
  }
  const alive = connection.executeUnprepared("SELECT 1", [], undefined).pipe(
    Effect.timeout("5 seconds"),
    Effect.asVoid
  )
  return { held, alive }
})

/**
 * Whether a session holds `runner`'s name now, read from `pg_locks` without taking it: a look at the fleet (the
 * watch's, /stats's, `journal check`'s) never holds a name, so a runner (re)starting at that moment is not refused,
 * and it works on a read-only session. An advisory lock on a bigint key shows as classid (high half), objid (low
 * half) and objsubid 1, in the database it was taken in.
 */
export const runnerNameHeld = (sql: SqlClient.SqlClient, runner: string): Effect.Effect<boolean, unknown> =>
  sql.unsafe<{ readonly held: boolean }>(
    // Exclusive only: a taker's shared hold is not the runner running.
    `SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE ${nameLockIn} AND l.mode = 'ExclusiveLock') AS held`,
    [lockKey(runner)]
  ).pipe(Effect.map((rows) => rows[0]?.held === true))

interface NameHolders {
  /** A process runs under the name (an exclusive hold). */
  readonly running: boolean
  /** Runners taking the name's work over (shared holds): it is free once they moved the records. */
  readonly takers: number
  readonly description: string
}

/** The advisory lock of the name in $1, in `pg_locks` (aliased `l`), granted in this database. */
const nameLockIn = `l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended($1, 0)`

/** The sessions holding `runner`'s name, as pg_stat_activity shows them: which process, from where, since when. */
const nameHolders = (sql: SqlClient.SqlClient, runner: string): Effect.Effect<NameHolders, unknown> =>
  sql.unsafe<{
    readonly pid: number
    readonly mode: string
    readonly who: string | null
    readonly address: string | null
    readonly since: string | null
  }>(
    `SELECT a.pid, l.mode, a.application_name AS who, a.client_addr::text AS address, a.backend_start::text AS since
     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE ${nameLockIn}`,
    [lockKey(runner)]
  ).pipe(Effect.map((rows) => ({
    running: rows.some((r) => r.mode !== "ShareLock"),
    takers: rows.filter((r) => r.mode === "ShareLock").length,
    description: rows.length === 0
      ? "free again now"
      : "held by " + rows.map((r) =>
        `"${r.who ?? "?"}" from ${r.address ?? "a local socket"}${r.mode === "ShareLock" ? " (taking its work over)" : ""}, ` +
        `server pid ${r.pid}, session since ${r.since ?? "?"}`
      ).join("; ")
  })))

/**
 * Holds a gone runner's name for a takeover (shared: other takers may too, the records move once), on a connection
 * of its own kept until the scope closes. False when the runner runs (or starts) again.
 */
export const holdNameForTakeover = (
  sql: SqlClient.SqlClient,
  target: PgTarget,
  runner: string
): Effect.Effect<boolean, MiningError, Scope.Scope> => Effect.map(takeRunnerName(sql, target, runner, "takeover"), (t) => t.held)

/**
 * Keeps a held name: its session is checked every `interval`, and when it is gone (the database restarted, the
 * connection dropped) the name is taken again on a new one. Without this the name would stay free while the runner
 * runs — the other runners would find it gone and take its work over and over, and a second process could start
 * under it. A name another session holds meanwhile (a runner taking this one's work over while the database was
 * back before this check, or a second process started under the name) is tried again every `interval`, with a
 * warning every fifth try.
 */
const keepRunnerName = Effect.fnUntraced(function*(
  sql: SqlClient.SqlClient,
  target: PgTarget,
  runner: string,
  /** The session holding the name now; its scope is closed by the caller's scope (so also if this never ran). */
  held: { scope: Scope.Closeable; alive: Effect.Effect<void, unknown> },
  interval: Duration.Input,
  sessionTimeout: Duration.Duration
) {
  while (true) {
    yield* Effect.sleep(interval)
    const lost = yield* held.alive.pipe(Effect.as(undefined), Effect.catchCause((cause) => Effect.succeed(cause)))
    if (lost === undefined) continue
    yield* Scope.close(held.scope, Exit.void)
    yield* Effect.logWarning(
      `fleet runner ${runner}: the database session holding its name ended (${Cause.pretty(lost).split("\n")[0]}); ` +
        "taking the name again"
    )
    for (let attempt = 1;; attempt++) {
      const scope = yield* Scope.make()
      held.scope = scope
      const taken = yield* Effect.result(takeRunnerName(sql, target, runner, "runner", sessionTimeout).pipe(Scope.provide(scope)))
      if (taken._tag === "Success" && taken.success.held) {
        held.alive = taken.success.alive
        yield* Effect.logInfo(`fleet runner ${runner} holds its name again`)
        break
      }
      yield* Scope.close(scope, Exit.void)
      if (taken._tag === "Success" && attempt % 5 === 0) {
        yield* Effect.logWarning(
          `fleet runner ${runner}: another session holds its name (a runner taking its work over, or a second ` +
            "process under this name); trying again"
        )
      }
      yield* Effect.sleep(interval)
    }
  }
})

/** How long a starting runner waits for another runner to finish taking its work over. */
const takeoverPatience = Duration.seconds(60)

/**
 * Holds a fleet runner's name for the scope: two processes under one name would each take the other's unfinished
 * transactions for their own (recovery resumes a runner's own), so the second is refused at start, after a few tries
 * over 3 s (a process that just died leaves its session a moment). A runner taking this name's work over holds it
 * meanwhile (shared): that is waited for, up to a minute (a taker frozen mid-takeover loses its session after the
 * idle timeout). Held, the name is kept across a lost session (keepRunnerName).
 */
export const holdRunnerName = Effect.fn("holdRunnerName")(function*(options: {
  readonly url: Redacted.Redacted<string> | string
  readonly runner: string
  /** How often the session holding the name is checked (default 1 s); well under `sessionTimeout`. */
  readonly checkInterval?: Duration.Input | undefined
  /** How long the server keeps the name's session once its runner went silent (default 15 s). */
  readonly sessionTimeout?: Duration.Input | undefined
}) {
  const sessionTimeout = Duration.fromInputUnsafe(options.sessionTimeout ?? defaultSessionTimeout)
  const { sql, target } = yield* openPgPool({ url: options.url, maxConnections: 1 }, `runner name ${options.runner}`)
  const started = yield* Clock.currentTimeMillis
  let waitingForTakeover = false
  for (let attempt = 0;; attempt++) {
    if (attempt > 0) yield* Effect.sleep("500 millis")
    const scope = yield* Scope.make()
    const taken = yield* takeRunnerName(sql, target, options.runner, "runner", sessionTimeout).pipe(
      Scope.provide(scope),
      Effect.onError(() => Scope.close(scope, Exit.void))
    )
    if (taken.held) {
      // Kept until the runner's scope closes: the keeper is stopped first, then whichever session holds the name.
      const held = { scope, alive: taken.alive }
      yield* Effect.addFinalizer(() => Scope.close(held.scope, Exit.void))
      yield* Effect.forkScoped(keepRunnerName(sql, target, options.runner, held, options.checkInterval ?? "1 second", sessionTimeout))
      return
    }
    yield* Scope.close(scope, Exit.void)
    if (attempt < 6) continue
    const holders = yield* nameHolders(sql, options.runner).pipe(
      Effect.orElseSucceed((): NameHolders => ({ running: true, takers: 0, description: "unknown (could not be read)" }))
    )
    // Held by takers only, or free again by now (the holder just let go): tried again, within the patience.
    if (!holders.running && (yield* Clock.currentTimeMillis) - started < Duration.toMillis(takeoverPatience)) {
      if (!waitingForTakeover && holders.takers > 0) {
        yield* Effect.logInfo(
          `fleet runner ${options.runner}: another runner is taking its unfinished work over (${holders.description}); ` +
            "waiting for it, then starting"
        )
        waitingForTakeover = true
      }
      continue
    }
    return yield* refused(options.runner, holders.description)
  }
})

const refused = (runner: string, holders: string) =>
  new ResourceError({
    message: `fleet runner ${runner} is running already: another process holds its name in the fleet's ` +
      `database (${holders})`,
    resource: "fleet runner name",
    hint: "give each runner a name of its own (R3MES_FLEET_RUNNER or --fleet-runner); two on one machine need one each"
  })
