import { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Redacted, type Scope } from "effect"
import { Reactivity } from "effect/reactivity"
import { type MiningError, ValidationError } from "../../domain/errors.ts"
import { fleetDatabaseSetting, pgError, type PgTarget, pgTarget } from "./pgErrors.ts"

/** Where a fleet component's Postgres is, and how big a pool it opens there. */
export interface PgPoolOptions {
  /** `postgres://USER:PASSWORD@HOST:PORT/DATABASE`; its password never appears in an error. */
  readonly url: Redacted.Redacted<string> | string
  /** The setting the URL came from, named in hints. Default `R3MES_FLEET_DATABASE_URL`. */
  readonly setting?: string | undefined
  /** Pool size. Default 10 (@effect/sql-pg's). */
  readonly maxConnections?: number | undefined
  /** Connecting and authenticating, per connection. Default 5 seconds (@effect/sql-pg's). */
  readonly connectTimeout?: Duration.Input | undefined
  /**
   * Every session read only (`default_transaction_read_only`): the server itself refuses any write, so a tool that
   * only reads (status, stats) cannot change a database it was pointed at by mistake.
   */
  readonly readOnly?: boolean | undefined
  /**
   * How long the server lets a session sit idle inside a transaction before ending it (default 15 s; ours last
   * milliseconds): a runner whose machine vanished mid-transaction would otherwise keep its row locks — and block a
   * takeover of its records — until TCP gave up, hours later.
   */
  readonly idleInTransactionTimeout?: Duration.Input | undefined
}

/**
 * The server probes a silent client after 30 s, every 10 s, three times: a vanished machine's sessions (and
 * connection slots) are gone in about a minute instead of the kernel's two hours.
 */
const keepalives = { tcp_keepalives_idle: "30", tcp_keepalives_interval: "10", tcp_keepalives_count: "3" }

/**
 * A pool of its own for `component` (the journal, the nonce ledger), closed with the scope. Every commit waits for
 * its WAL flush whatever the server's default: what these components write (a journaled intent, a reserved nonce)
 * must survive a crash of the server before the side effect it allows.
 */
export const openPgPool = Effect.fnUntraced(function*(
  options: PgPoolOptions,
  component: string
): Effect.fn.Return<{ readonly sql: PgClient.PgClient; readonly target: PgTarget }, MiningError, Scope.Scope> {
  const url = typeof options.url === "string" ? Redacted.make(options.url) : options.url
  const target = pgTarget(Redacted.value(url), options.setting ?? fleetDatabaseSetting)
  if (target instanceof ValidationError) return yield* target
  const sql = yield* PgClient.make({
    url,
    maxConnections: options.maxConnections,
    connectTimeout: options.connectTimeout,
    // Who holds a session, as pg_stat_activity shows it (Postgres keeps 63 bytes): the refusal of a runner's name
    // names the process holding it.
    applicationName: `r3mes-miner ${component} pid ${process.pid}`,
    startupParameters: {
      synchronous_commit: "on",
      idle_in_transaction_session_timeout: `${
        Math.max(1, Math.round(Duration.toMillis(Duration.fromInputUnsafe(options.idleInTransactionTimeout ?? "15 seconds"))))
      }ms`,
      ...keepalives,
      ...(options.readOnly === true ? { default_transaction_read_only: "on" } : {})
    }
  }).pipe(
    Effect.provideService(Reactivity.Reactivity, yield* Reactivity.make),
    Effect.mapError((e) => pgError(e, "opening its connection pool", target, component))
  )
  return { sql, target }
})
