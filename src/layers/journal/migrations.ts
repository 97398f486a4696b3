/**
 * The journal's schema, one migration per version (PRAGMA user_version counts those applied). Append only: a
 * released migration never changes.
 */
export const migrations: ReadonlyArray<string> = [
  `CREATE TABLE transactions (
     seq            INTEGER PRIMARY KEY AUTOINCREMENT,
     transaction_id TEXT NOT NULL UNIQUE,
     key            TEXT NOT NULL,
     state          TEXT NOT NULL,
     created_at     TEXT NOT NULL,
     updated_at     TEXT NOT NULL,
     round_id       TEXT NOT NULL,
     chunk_id       INTEGER NOT NULL,
     record         TEXT NOT NULL
   );
   CREATE INDEX transactions_key ON transactions (key);
   CREATE INDEX transactions_state ON transactions (state);
   CREATE TABLE events (
     id             INTEGER PRIMARY KEY AUTOINCREMENT,
     transaction_id TEXT NOT NULL REFERENCES transactions (transaction_id),
     at             TEXT NOT NULL,
     state          TEXT NOT NULL,
     event          TEXT NOT NULL,
     detail         TEXT
   );
   CREATE INDEX events_transaction ON events (transaction_id, id);`,
  // Journal-wide facts (Journal.getMeta / setMeta), e.g. the identity of the chain the records belong to.
  `CREATE TABLE meta (
     key   TEXT PRIMARY KEY,
     value TEXT NOT NULL
   ) WITHOUT ROWID;`,
  // The newest records of a state (the chain audit every 10 s, /transactions?state=) without sorting every row of
  // that state: measured at 200,000 committed records, 599 ms a query before, 0.11 ms after.
  `CREATE INDEX transactions_state_created ON transactions (state, created_at, seq);`,
  // The records committed since the chain audit's last checkpoint (mining/ChainAudit.ts), every 10 s.
  `CREATE INDEX transactions_state_updated ON transactions (state, updated_at);`
]
