import { Context, Effect, Layer } from "effect"
import { ValidationError } from "../domain/errors.ts"
import {
  checkKey,
  checkReservation,
  type NonceEntry,
  NonceLedger,
  type NonceReservation,
  nonceTaken
} from "../services/NonceLedger.ts"
import { type FaultPlan, makeFaultInjector } from "./Faults.ts"

export type NonceLedgerMethod = "reserve" | "replace" | "next" | "get" | "list"

/**
 * The rows several in-memory ledgers share, like runners sharing one database: give the same store to each
 * `InMemoryNonceLedger.layer` (each keeps its own faults and counts).
 */
export interface NonceLedgerStore {
  readonly rows: Map<string, NonceEntry>
}

export const makeNonceLedgerStore = (): NonceLedgerStore => ({ rows: new Map() })

export interface InMemoryNonceLedgerOptions {
  readonly faults?: FaultPlan<NonceLedgerMethod>
  /** Shared with other ledgers (two "runners" on one database); a fresh one by default. */
  readonly store?: NonceLedgerStore
}

/** Control side of the in-memory NonceLedger. */
export class InMemoryNonceLedger extends Context.Service<InMemoryNonceLedger, {
  readonly setFaults: (faults: FaultPlan<NonceLedgerMethod>) => Effect.Effect<void>
  readonly calls: (method: NonceLedgerMethod) => Effect.Effect<number>
  /** Every row of the store, of every account and chain, by chain id, account, then nonce. */
  readonly all: Effect.Effect<ReadonlyArray<NonceEntry>>
}>()("r3mes/testing/InMemoryNonceLedger") {
  /**
   * The NonceLedger port in memory, with PgNonceLedger's semantics (test/support/nonceLedgerContract.ts holds both
   * to them). A fault on `reserve` with `failAfter` is the answer lost after the row was written (the retry then
   * succeeds: same hash); `failFirst` a database down before it (nothing written).
   */
  static readonly layer = (options: InMemoryNonceLedgerOptions = {}): Layer.Layer<NonceLedger | InMemoryNonceLedger> =>
    Layer.effectContext(Effect.gen(function*() {
      const faults = yield* makeFaultInjector(options.faults)
      const { rows } = options.store ?? makeNonceLedgerStore()
      const keyOf = (account: string, chainId: number, nonce: number) => `${chainId}:${account}:${nonce}`
      const valid = <A>(value: A | ValidationError) =>
        value instanceof ValidationError ? Effect.fail(value) : Effect.succeed(value)
      const ofAccount = (account: string, chainId: number) =>
        [...rows.values()].filter((e) => e.account === account && e.chainId === chainId).sort((a, b) => a.nonce - b.nonce)

      const reserve = (rawAccount: string, chainId: number, nonce: number, rawReservation: NonceReservation) =>
        faults.wrap(
          "reserve",
          Effect.gen(function*() {
            const account = yield* valid(checkKey(rawAccount, chainId, nonce))
            const r = yield* valid(checkReservation(rawReservation))
            const there = rows.get(keyOf(account, chainId, nonce))
            if (there === undefined) {
              rows.set(keyOf(account, chainId, nonce), { ...r, account, chainId, nonce, revision: 0, replacedHashes: [] })
              return
            }
            if (there.transactionHash !== r.transactionHash || there.holder !== r.holder) {
              return yield* nonceTaken(there, r.transactionHash)
            }
          })
        )

      const replace = (
        rawAccount: string,
        chainId: number,
        nonce: number,
        expected: { readonly transactionHash: string; readonly holder: string },
        rawNext: NonceReservation
      ) =>
        faults.wrap(
          "replace",
          Effect.gen(function*() {
            const account = yield* valid(checkKey(rawAccount, chainId, nonce))
            const r = yield* valid(checkReservation(rawNext))
            const there = rows.get(keyOf(account, chainId, nonce))
            if (there === undefined) {
              return yield* new ValidationError({
                message: `nonce ledger: replacing ${expected.transactionHash} at nonce ${nonce} of ${account} on chain ` +
                  `${chainId}: nothing is reserved there`,
                field: "nonce",
                hint: "reserve the nonce instead: replace only swaps a reservation"
              })
            }
            if (there.transactionHash === expected.transactionHash.toLowerCase() && there.holder === expected.holder) {
              rows.set(keyOf(account, chainId, nonce), {
                ...there,
                ...r,
                revision: there.revision + 1,
                replacedHashes: [...there.replacedHashes, there.transactionHash]
              })
              return
            }
            if (there.transactionHash === r.transactionHash && there.holder === r.holder) return
            return yield* nonceTaken(there, r.transactionHash)
          })
        )

      const port = NonceLedger.of({
        reserve,
        replace,
        next: (rawAccount, chainId) =>
          faults.wrap(
            "next",
            Effect.map(valid(checkKey(rawAccount, chainId)), (account) => {
              const last = ofAccount(account, chainId).at(-1)
              return last === undefined ? undefined : last.nonce + 1
            })
          ),
        get: (rawAccount, chainId, nonce) =>
          faults.wrap(
            "get",
            Effect.map(valid(checkKey(rawAccount, chainId, nonce)), (account) => rows.get(keyOf(account, chainId, nonce)))
          ),
        list: (rawAccount, chainId, query = {}) =>
          faults.wrap(
            "list",
            Effect.map(valid(checkKey(rawAccount, chainId, query.fromNonce ?? 0)), (account) => {
              const from = ofAccount(account, chainId).filter((e) => e.nonce >= (query.fromNonce ?? 0))
              return query.limit === undefined || !Number.isFinite(query.limit)
                ? from
                : from.slice(0, Math.max(0, Math.floor(query.limit)))
            })
          )
      })

      const control = InMemoryNonceLedger.of({
        setFaults: faults.set,
        calls: faults.calls,
        all: Effect.sync(() =>
          [...rows.values()].sort((a, b) =>
            a.chainId - b.chainId || (a.account < b.account ? -1 : a.account > b.account ? 1 : a.nonce - b.nonce)
          )
        )
      })

      return Context.make(NonceLedger, port).pipe(Context.add(InMemoryNonceLedger, control))
    }))
}
