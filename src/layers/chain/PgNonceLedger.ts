import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { type MiningError, ValidationError } from "../../domain/errors.ts"
import {
  checkKey,
  checkReservation,
  type NonceEntry,
  NonceLedger,
  type NonceListQuery,
  type NonceReservation,
  nonceTaken
} from "../../services/NonceLedger.ts"
import { lostConnectionAsFailure, pgError, type PgTarget, unknownTarget } from "../postgres/pgErrors.ts"
import { openPgPool, type PgPoolOptions } from "../postgres/pgPool.ts"
import { migrate } from "../postgres/pgMigrations.ts"

export type PgNonceLedgerOptions = PgPoolOptions

interface Row {
  readonly chain_id: string
  readonly account: string
  readonly nonce: string
  readonly transaction_hash: string
  readonly signed_bytes: string
  readonly holder: string
  readonly revision: number
  readonly replaced_hashes: string
}

const toEntry = (row: Row): NonceEntry => ({
  account: row.account,
  chainId: Number(row.chain_id),
  nonce: Number(row.nonce),
  transactionHash: row.transaction_hash,
  signedBytes: `0x${row.signed_bytes}`,
  holder: row.holder,
  revision: Number(row.revision),
  replacedHashes: row.replaced_hashes === "" ? [] : row.replaced_hashes.split(",")
})

const hexBody = (hex: string) => hex.slice(2)

/**
 * The NonceLedger port on the fleet's migrated Postgres (table `r3mes_nonces`, primary key (chain_id, account,
 * nonce)). Every runner builds one on the same database; the primary key, not any lease, decides who owns a nonce.
 */
export const make = Effect.fnUntraced(function*(sql: SqlClient.SqlClient, target: PgTarget) {
  yield* migrate(sql).pipe(Effect.mapError((e) => pgError(e, "opening (creating its table if needed)", target, "nonce ledger")))

  const run = <A>(context: string, effect: Effect.Effect<A, unknown>): Effect.Effect<A, MiningError> =>
    Effect.mapError(lostConnectionAsFailure(effect), (e) => pgError(e, context, target, "nonce ledger"))

  // Numbers as text: bigint columns would come back as strings or lose digits, depending on the driver's parsers.
  // Big integers as text (exact in JS); sorting must name the table's column, not these text aliases (10 < 2 as text).
  const columns = sql`chain_id::text AS chain_id, account, nonce::text AS nonce, transaction_hash,
    encode(signed_bytes, 'hex') AS signed_bytes, holder, revision, array_to_string(replaced_hashes, ',') AS replaced_hashes`

  const read = (account: string, chainId: number, nonce: number, context: string) =>
    run(
      context,
      sql<Row>`SELECT ${columns} FROM r3mes_nonces
               WHERE chain_id = ${chainId} AND account = ${account} AND nonce = ${nonce}`
    ).pipe(Effect.map((rows) => (rows[0] === undefined ? undefined : toEntry(rows[0]))))

  const valid = <A>(value: A | ValidationError) =>
    value instanceof ValidationError ? Effect.fail(value) : Effect.succeed(value)

  const reserve = Effect.fn("PgNonceLedger.reserve")(function*(
    rawAccount: string,
    chainId: number,
    nonce: number,
    rawReservation: NonceReservation
  ) {
    const account = yield* valid(checkKey(rawAccount, chainId, nonce))
    const r = yield* valid(checkReservation(rawReservation))
    const context = `reserving nonce ${nonce} of ${account} on chain ${chainId} for ${r.transactionHash}`
    // ON CONFLICT waits for a concurrent insert of the same key to commit, then does nothing: the loser reads the
    // winner's row below, never a unique-violation error.
    const inserted = yield* run(
      context,
      sql<{ readonly nonce: string }>`INSERT INTO r3mes_nonces
          (chain_id, account, nonce, transaction_hash, signed_bytes, holder)
        VALUES (${chainId}, ${account}, ${nonce}, ${r.transactionHash}, decode(${hexBody(r.signedBytes)}, 'hex'),
          ${r.holder})
        ON CONFLICT (chain_id, account, nonce) DO NOTHING
        RETURNING nonce::text AS nonce`
    )
    if (inserted.length > 0) return
    const there = yield* read(account, chainId, nonce, context)
    // Rows are never deleted: one that refused the insert is still there.
    if (there === undefined) return yield* new ValidationError({ message: `nonce ledger: ${context}: the row vanished` })
    if (there.transactionHash !== r.transactionHash || there.holder !== r.holder) return yield* nonceTaken(there, r.transactionHash)
  })

  const replace = Effect.fn("PgNonceLedger.replace")(function*(
    rawAccount: string,
    chainId: number,
    nonce: number,
    expected: { readonly transactionHash: string; readonly holder: string },
    rawNext: NonceReservation
  ) {
    const account = yield* valid(checkKey(rawAccount, chainId, nonce))
    const r = yield* valid(checkReservation(rawNext))
    const context = `replacing ${expected.transactionHash} at nonce ${nonce} of ${account} on chain ${chainId} ` +
      `by ${r.transactionHash}`
    const updated = yield* run(
      context,
      sql<{ readonly nonce: string }>`UPDATE r3mes_nonces SET
          transaction_hash = ${r.transactionHash},
          signed_bytes = decode(${hexBody(r.signedBytes)}, 'hex'),
          holder = ${r.holder},
          revision = revision + 1,
          replaced_hashes = array_append(replaced_hashes, transaction_hash)
        WHERE chain_id = ${chainId} AND account = ${account} AND nonce = ${nonce}
          AND transaction_hash = ${expected.transactionHash.toLowerCase()} AND holder = ${expected.holder}
        RETURNING nonce::text AS nonce`
    )
    if (updated.length > 0) return
    const there = yield* read(account, chainId, nonce, context)
    if (there === undefined) {
      return yield* new ValidationError({
        message: `nonce ledger: ${context}: nothing is reserved there`,
        field: "nonce",
        hint: "reserve the nonce instead: replace only swaps a reservation"
      })
    }
    if (there.transactionHash === r.transactionHash && there.holder === r.holder) return
    return yield* nonceTaken(there, r.transactionHash)
  })

  const next = Effect.fn("PgNonceLedger.next")(function*(rawAccount: string, chainId: number) {
    const account = yield* valid(checkKey(rawAccount, chainId))
    const rows = yield* run(
      `reading the next nonce of ${account} on chain ${chainId}`,
      sql<{ readonly next: string | null }>`SELECT (max(nonce) + 1)::text AS next FROM r3mes_nonces
                                            WHERE chain_id = ${chainId} AND account = ${account}`
    )
    const value = rows[0]?.next
    return value === null || value === undefined ? undefined : Number(value)
  })

  const get = Effect.fn("PgNonceLedger.get")(function*(rawAccount: string, chainId: number, nonce: number) {
    const account = yield* valid(checkKey(rawAccount, chainId, nonce))
    return yield* read(account, chainId, nonce, `reading nonce ${nonce} of ${account} on chain ${chainId}`)
  })

  const list = Effect.fn("PgNonceLedger.list")(function*(rawAccount: string, chainId: number, query: NonceListQuery = {}) {
    const account = yield* valid(checkKey(rawAccount, chainId, query.fromNonce ?? 0))
    const limit = query.limit === undefined || !Number.isFinite(query.limit)
      ? sql``
      : sql`LIMIT ${Math.max(0, Math.floor(query.limit))}`
    const rows = yield* run(
      `listing the nonces of ${account} on chain ${chainId}`,
      sql<Row>`SELECT ${columns} FROM r3mes_nonces
               WHERE chain_id = ${chainId} AND account = ${account} AND nonce >= ${query.fromNonce ?? 0}
               ORDER BY r3mes_nonces.nonce ${limit}`
    )
    return rows.map(toEntry)
  })

  return NonceLedger.of({ reserve, replace, next, get, list })
})

/** Its own pool on `options.url`, closed with the layer's scope. */
const fromUrl = (options: PgNonceLedgerOptions) =>
  Effect.flatMap(openPgPool(options, "nonce ledger"), ({ sql, target }) => make(sql, target))

export const PgNonceLedger = {
  /**
   * The NonceLedger port on Postgres (`@effect/sql-pg`): table `r3mes_nonces`, created with the journal's tables
   * (pgMigrations.ts, version 2) under the same advisory lock. The database down is a retryable NetworkError naming
   * `R3MES_FLEET_DATABASE_URL`; its password never shows.
   */
  layer: (options: PgNonceLedgerOptions): Layer.Layer<NonceLedger, MiningError> =>
    Layer.effect(NonceLedger, fromUrl(options)),
  /**
   * The same on a SqlClient built elsewhere (one pool shared with the journal and the cluster's storage). That client
   * should set `synchronous_commit = on` if its server's default is off: a reservation must be durable.
   */
  layerClient: (options: { readonly setting?: string | undefined } = {}): Layer.Layer<
    NonceLedger,
    MiningError,
    SqlClient.SqlClient
  > =>
    Layer.effect(
      NonceLedger,
      Effect.gen(function*() {
        return yield* make(yield* SqlClient.SqlClient, unknownTarget(options.setting))
      })
    )
} as const
