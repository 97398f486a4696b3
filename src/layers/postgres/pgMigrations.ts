import { Effect } from "effect"
import type { SqlClient } from "effect/sql"
import { ResourceError, ValidationError } from "../../domain/errors.ts"

/**
 * The journal's tables on Postgres, one migration per version (`r3mes_journal_schema.version` counts those
 * applied). Append only: a released migration never changes. One statement per string (the extended protocol runs
 * one at a time). Prefixed `r3mes_` so the journal can share a database with the cluster's own tables.
 *
 * The record is stored as `json`, not `jsonb`: `json` keeps the text as written, so a record reads back exactly as
 * SQLite's does, and it accepts the `\u0000` that jsonb and text refuse (an error message may carry one; so may an
 * event's detail, stored as a json string for that reason). Timestamps are
 * ISO 8601 text compared byte-wise (`COLLATE "C"`), as SQLite compares them, whatever the database's locale.
 */
export const pgMigrations: ReadonlyArray<ReadonlyArray<string>> = [
  [
    `CREATE TABLE IF NOT EXISTS r3mes_transactions (
       seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       transaction_id text NOT NULL UNIQUE,
       key            text NOT NULL,
       state          text NOT NULL,
       created_at     text COLLATE "C" NOT NULL,
       updated_at     text COLLATE "C" NOT NULL,
       round_id       text NOT NULL,
       chunk_id       bigint NOT NULL,
       record         json NOT NULL
     )`,
    "CREATE INDEX IF NOT EXISTS r3mes_transactions_key ON r3mes_transactions (key, created_at, seq)",
    "CREATE INDEX IF NOT EXISTS r3mes_transactions_state_created ON r3mes_transactions (state, created_at, seq)",
    "CREATE INDEX IF NOT EXISTS r3mes_transactions_state_updated ON r3mes_transactions (state, updated_at)",
    `CREATE TABLE IF NOT EXISTS r3mes_events (
       id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       transaction_id text NOT NULL REFERENCES r3mes_transactions (transaction_id),
       at             text NOT NULL,
       state          text NOT NULL,
       event          text NOT NULL,
       detail         json
     )`,
    "CREATE INDEX IF NOT EXISTS r3mes_events_transaction ON r3mes_events (transaction_id, id)",
    `CREATE TABLE IF NOT EXISTS r3mes_meta (
       key   text PRIMARY KEY,
       value text NOT NULL
     )`
  ],
  // 2: the account's nonce ledger (src/layers/chain/PgNonceLedger.ts), the fleet's fence: the primary key is what
  // refuses a second transaction at a nonce. Hashes and the account are stored lower-case by the adapter.
  [
    `CREATE TABLE IF NOT EXISTS r3mes_nonces (
       chain_id         bigint NOT NULL,
       account          text NOT NULL,
       nonce            bigint NOT NULL CHECK (nonce >= 0),
       transaction_hash text NOT NULL,
       signed_bytes     bytea NOT NULL,
       holder           text NOT NULL,
       revision         integer NOT NULL DEFAULT 0,
       replaced_hashes  text[] NOT NULL DEFAULT '{}',
       reserved_at      timestamptz NOT NULL DEFAULT now(),
       PRIMARY KEY (chain_id, account, nonce)
     )`
  ],
  // 3: a fleet's fence on chunks: at most one unfinished transaction of a chunk (its key) among the runners'
  // records (those with an owner). The second runner to start one is refused at its first save
  // (PgJournal: a ValidationError on "unfinished_key", which the coordinator reads as "another runner has it").
  // The owner is a column of its own: reading it out of the json record would parse the whole record, and a
  // `\u0000` anywhere in it fails the save.
  [
    "ALTER TABLE r3mes_transactions ADD COLUMN IF NOT EXISTS owner text",
    `CREATE UNIQUE INDEX IF NOT EXISTS r3mes_transactions_one_unfinished_per_key ON r3mes_transactions (key)
       WHERE state NOT IN ('committed', 'failed', 'rolled_back') AND owner IS NOT NULL`
  ]
]

/** The schema version this miner writes. */
export const PG_SCHEMA_VERSION = pgMigrations.length

/** "R3MJ", as SQLite's application_id: the advisory lock that serialises the journal's migrations. */
const MIGRATION_LOCK = 0x52334d4a

/**
 * Creates or upgrades the journal's tables. Runners of a fleet start together: the transaction-scoped advisory lock
 * makes the second wait for the first and then find nothing to do (two concurrent `CREATE TABLE IF NOT EXISTS`
 * can both miss the table and one fail on the catalog's unique index). A database migrated by a newer miner is
 * refused untouched.
 */
export const migrate = Effect.fn("PgJournal.migrate")(function*(sql: SqlClient.SqlClient) {
  return yield* sql.withTransaction(Effect.gen(function*() {
    yield* sql.unsafe(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`)
    yield* sql.unsafe("CREATE TABLE IF NOT EXISTS r3mes_journal_schema (version integer NOT NULL)")
    const rows = yield* sql.unsafe<{ readonly version: number }>("SELECT version FROM r3mes_journal_schema")
    const version = rows[0]?.version ?? 0
    if (version > PG_SCHEMA_VERSION) {
      return yield* new ValidationError({
        message: `journal: the fleet database has journal schema version ${version}, newer than this miner's ` +
          `${PG_SCHEMA_VERSION}`,
        hint: "upgrade r3mes-miner on this runner (every runner of a fleet runs the same version)"
      })
    }
    for (let v = version; v < PG_SCHEMA_VERSION; v++) {
      for (const statement of pgMigrations[v]!) yield* sql.unsafe(statement)
    }
    if (rows.length === 0) {
      yield* sql`INSERT INTO r3mes_journal_schema (version) VALUES (${PG_SCHEMA_VERSION})`
    } else if (version < PG_SCHEMA_VERSION) {
      yield* sql`UPDATE r3mes_journal_schema SET version = ${PG_SCHEMA_VERSION}`
    }
    return PG_SCHEMA_VERSION
  }))
})

/**
 * The journal's schema version in a database that is only read (status, stats): never creates or migrates anything,
 * so a query against a mistyped database leaves it as it was. No journal there, or one of another version than this
 * miner reads, is refused with a hint.
 */
export const checkSchema = Effect.fn("PgJournal.checkSchema")(function*(sql: SqlClient.SqlClient, where: string) {
  const tables = yield* sql<{ readonly found: string | null }>`SELECT to_regclass('r3mes_journal_schema')::text AS found`
  if (tables[0]?.found == null) {
    return yield* new ResourceError({
      message: `no fleet journal in the database ${where} (no r3mes_journal_schema table)`,
      resource: "journal",
      hint: "check R3MES_FLEET_DATABASE_URL (--fleet-database-url): it must be the database the fleet's runners use; " +
        "a runner creates the journal's tables at its first start"
    })
  }
  const rows = yield* sql<{ readonly version: number }>`SELECT version FROM r3mes_journal_schema`
  const version = rows[0]?.version ?? 0
  if (version !== PG_SCHEMA_VERSION) {
    return yield* new ValidationError({
      message: `journal: the fleet database ${where} has journal schema version ${version}; this miner reads ` +
        `version ${PG_SCHEMA_VERSION}`,
      hint: version > PG_SCHEMA_VERSION
        ? "upgrade r3mes-miner here (every runner and tool of a fleet runs the same version)"
        : "start a runner of this version once (it migrates the journal), or use the r3mes-miner the fleet runs"
    })
  }
  return version
})
