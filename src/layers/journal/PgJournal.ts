import { Effect, Layer, Predicate, Schema } from "effect"
import { SqlClient, SqlError } from "effect/sql"
import { type MiningError, ValidationError } from "../../domain/errors.ts"
import { TransactionRecord } from "../../domain/TransactionRecord.ts"
import type { TransactionState } from "../../domain/TransactionState.ts"
import { Journal, type JournalEvent, takenOver, type TransactionQuery, unfinishedKeyTaken } from "../../services/Journal.ts"
import { lostConnectionAsFailure, pgError, type PgTarget, unknownTarget } from "../postgres/pgErrors.ts"
import { openPgPool, type PgPoolOptions } from "../postgres/pgPool.ts"
import { checkSchema, migrate } from "../postgres/pgMigrations.ts"

export interface PgJournalOptions extends PgPoolOptions {
  /** The fleet runner this journal writes for (see Journal's `owner`). */
  readonly owner?: string | undefined
}

/** How `make` opens the tables: migrating them (a runner), or only checking their version (a reader). */
type Opening = "migrate" | "read only"

const decodeRecord = Schema.decodeUnknownSync(TransactionRecord)

/** The fleet's one-unfinished-transaction-per-chunk index (migration 3) refused a record. */
const isUnfinishedKeyViolation = (e: unknown): boolean => {
  const cause = SqlError.isSqlError(e) ? e.reason.cause : e
  if (!Predicate.isObject(cause)) return false
  const fields = cause as { readonly code?: unknown; readonly constraint_name?: unknown; readonly message?: unknown }
  return fields.code === "23505" &&
    [fields.constraint_name, fields.message].some((t) => Predicate.isString(t) && t.includes(unfinishedKeyIndex))
}
const unfinishedKeyIndex = "r3mes_transactions_one_unfinished_per_key"

const causeMessage = (e: unknown): string => {
  const cause = SqlError.isSqlError(e) ? e.reason.cause : e
  return cause instanceof Error ? cause.message : String(cause)
}

interface RecordRow {
  readonly record: string
}

interface EventRow {
  readonly transaction_id: string
  readonly at: string
  readonly state: string
  readonly event: string
  readonly detail: string | null
}

/**
 * The Journal port on a migrated Postgres database reached through `sql`. Every runner of a fleet builds one on the
 * same database: they share the records, and Postgres orders their writes.
 */
export const make = Effect.fnUntraced(function*(
  sql: SqlClient.SqlClient,
  target: PgTarget,
  owner?: string,
  opening: Opening = "migrate"
) {
  if (opening === "migrate") {
    yield* migrate(sql).pipe(Effect.mapError((e) => pgError(e, "opening (creating its tables if needed)", target)))
  } else {
    yield* checkSchema(sql, target.display).pipe(
      Effect.mapError((e) => e._tag === "SqlError" ? pgError(e, "opening (read only)", target) : e)
    )
  }

  const run = <A>(context: string, effect: Effect.Effect<A, unknown>): Effect.Effect<A, MiningError> =>
    Effect.mapError(lostConnectionAsFailure(effect), (e) => pgError(e, context, target))

  const parse = (row: RecordRow, context: string): Effect.Effect<TransactionRecord, MiningError> =>
    Effect.try({
      try: () => decodeRecord(JSON.parse(row.record)),
      catch: (e) =>
        new ValidationError({ message: `journal: ${context}: unreadable record (${e instanceof Error ? e.message : e})` })
    })

  const first = (context: string) => (rows: ReadonlyArray<RecordRow>) =>
    rows.length === 0 ? Effect.succeed(undefined) : parse(rows[0]!, context)

  const save = Effect.fn("PgJournal.save")(function*(
    record: TransactionRecord,
    event: Omit<JournalEvent, "transaction_id">
  ) {
    // One transaction, committed with synchronous_commit on (layer's session default): on disk when it returns. The
    // update is fenced by the owner: a record another runner took over keeps its row, and nothing is written.
    yield* run(
      `saving ${record.transaction_id}`,
      sql.withTransaction(Effect.gen(function*() {
        const written = yield* sql<{ readonly owner: string | null }>`INSERT INTO r3mes_transactions
              (transaction_id, key, state, created_at, updated_at, round_id, chunk_id, owner, record)
            VALUES (${record.transaction_id}, ${record.key}, ${record.state}, ${record.created_at},
              ${record.updated_at}, ${record.round_id}, ${record.chunk_id}, ${record.owner}, ${JSON.stringify(record)})
            ON CONFLICT (transaction_id) DO UPDATE SET
              state = EXCLUDED.state, updated_at = EXCLUDED.updated_at, owner = EXCLUDED.owner, record = EXCLUDED.record
            WHERE r3mes_transactions.owner IS NOT DISTINCT FROM EXCLUDED.owner
            RETURNING owner`
        if (written.length === 0) {
          const now = yield* sql<{ readonly owner: string | null }>`SELECT owner FROM r3mes_transactions
                                                                    WHERE transaction_id = ${record.transaction_id}`
          return yield* takenOver(record.transaction_id, now[0]?.owner ?? null)
        }
        yield* sql`INSERT INTO r3mes_events (transaction_id, at, state, event, detail)
            VALUES (${record.transaction_id}, ${event.at}, ${event.state}, ${event.event},
              ${event.detail === null ? null : JSON.stringify(event.detail)})`
      })).pipe(
        Effect.catchIf(isUnfinishedKeyViolation, (e) => Effect.fail(unfinishedKeyTaken(record.key, causeMessage(e))))
      )
    )
  })

  // `record::text`: the driver would parse json itself; the text is what SqliteJournal parses, so both decode alike.
  const get = (transactionId: string) =>
    run(
      `reading ${transactionId}`,
      sql<RecordRow>`SELECT record::text AS record FROM r3mes_transactions WHERE transaction_id = ${transactionId}`
    ).pipe(Effect.flatMap(first(transactionId)))

  const findByKey = (key: string) =>
    run(
      `reading key ${key}`,
      sql<RecordRow>`SELECT record::text AS record FROM r3mes_transactions WHERE key = ${key}
                     ORDER BY created_at DESC, seq DESC LIMIT 1`
    ).pipe(Effect.flatMap(first(key)))

  const list = (query: TransactionQuery) => {
    const conditions = [
      ...(query.state === undefined ? [] : [sql`state = ${query.state}`]),
      ...(query.updatedAfter === undefined ? [] : [sql`updated_at > ${query.updatedAfter}`])
    ]
    const where = conditions.length === 0 ? sql`` : sql`WHERE ${sql.and(conditions)}`
    const limit = query.limit === undefined || !Number.isFinite(query.limit)
      ? sql``
      : sql`LIMIT ${Math.max(0, Math.floor(query.limit))}`
    return run(
      "listing transactions",
      sql<RecordRow>`SELECT record::text AS record FROM r3mes_transactions ${where}
                     ORDER BY created_at DESC, seq DESC ${limit}`
    ).pipe(Effect.flatMap((rows) => Effect.forEach(rows, (row) => parse(row, "list"))))
  }

  const events = (transactionId: string) =>
    run(
      `reading the events of ${transactionId}`,
      sql<EventRow>`SELECT transaction_id, at, state, event, detail::text AS detail FROM r3mes_events
                    WHERE transaction_id = ${transactionId} ORDER BY id`
    ).pipe(Effect.flatMap((rows) =>
      Effect.try({
        try: () =>
          rows.map((row): JournalEvent => ({
            transaction_id: row.transaction_id,
            at: row.at,
            state: row.state as TransactionState,
            event: row.event,
            detail: row.detail === null ? null : JSON.parse(row.detail) as string
          })),
        catch: (e) =>
          new ValidationError({
            message: `journal: reading the events of ${transactionId}: unreadable detail (${e instanceof Error ? e.message : e})`
          })
      })
    ))

  const getMeta = (key: string) =>
    run(
      `reading meta ${key}`,
      sql<{ readonly value: string }>`SELECT value FROM r3mes_meta WHERE key = ${key}`
    ).pipe(Effect.map((rows) => rows[0]?.value))

  const setMeta = Effect.fn("PgJournal.setMeta")(function*(key: string, value: string) {
    yield* run(
      `saving meta ${key}`,
      sql`INSERT INTO r3mes_meta (key, value) VALUES (${key}, ${value})
          ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`
    )
  })

  return Journal.of({ owner, save, get, findByKey, list, events, getMeta, setMeta })
})

/** Its own pool on `options.url`, closed with the layer's scope. */
const fromUrl = (options: PgJournalOptions, opening: Opening = "migrate") =>
  Effect.flatMap(
    openPgPool({ ...options, readOnly: opening === "read only" }, "journal"),
    ({ sql, target }) => make(sql, target, options.owner, opening)
  )

export const PgJournal = {
  /**
   * The Journal port on Postgres (`@effect/sql-pg`), for a fleet: every runner's journal is the same tables
   * (`r3mes_transactions`, `r3mes_events`, `r3mes_meta`), created or migrated at build under an advisory lock, so
   * runners may start together. Every write is one transaction, durable when it returns. The database down or
   * unreachable is a NetworkError naming `R3MES_FLEET_DATABASE_URL`; its password never shows.
   */
  layer: (options: PgJournalOptions): Layer.Layer<Journal, MiningError> => Layer.effect(Journal, fromUrl(options)),
  /**
   * The fleet's journal for a tool that only reads it (status, stats): nothing created or migrated, every session
   * read only (the server refuses writes). A database without the journal's tables is a ResourceError whose hint
   * names R3MES_FLEET_DATABASE_URL; a journal of another schema version, a ValidationError.
   */
  layerReadOnly: (options: Omit<PgJournalOptions, "owner">): Layer.Layer<Journal, MiningError> =>
    Layer.effect(Journal, fromUrl(options, "read only")),
  /**
   * The same on a SqlClient built elsewhere (one pool shared with the cluster's storage). That client should set
   * `synchronous_commit = on` if its server's default is off: `save` relies on it for durability.
   */
  layerClient: (options: { readonly setting?: string | undefined; readonly owner?: string | undefined } = {}): Layer.Layer<
    Journal,
    MiningError,
    SqlClient.SqlClient
  > =>
    Layer.effect(
      Journal,
      Effect.gen(function*() {
        return yield* make(yield* SqlClient.SqlClient, unknownTarget(options.setting), options.owner)
      })
    )
} as const
