import { Clock, Deferred, Duration, Effect } from "effect"
import { ValidationError } from "../../domain/errors.ts"
import type { InFlight, InFlightRegistry } from "./InFlight.ts"
import type { TransactionRunner } from "./TransactionRunner.ts"

/** What a stale cleanup did. */
export interface CleanupResult {
  /** Rolled back (or failed, when nothing was uploaded yet). */
  readonly cleaned: ReadonlyArray<string>
  /** Past the commit point: only the chain can end them, so they were left alone. */
  readonly awaiting_chain: ReadonlyArray<string>
}

/**
 * The operator's levers on transactions in flight (POST /cleanup-stale and the library API). A transaction past the
 * commit point is never cleaned: its submission may be on chain, and undoing it is the chain's call alone.
 */
export const makeAdmin = (deps: { readonly inFlight: InFlightRegistry; readonly runner: TransactionRunner }) => {
  const { inFlight, runner } = deps

  /** A transaction not yet started is ended here; a running one is cancelled and waited for. */
  const cancel = Effect.fnUntraced(function*(tx: InFlight, reason: string) {
    tx.cancelReason = reason
    const error = new ValidationError({ message: reason, hint: "stopped by an operator" })
    if (!tx.running) {
      tx.running = true
      return yield* runner.abandon(tx, error)
    }
    yield* Deferred.fail(tx.cancelled, error)
    return yield* Deferred.await(tx.finished)
  })

  /** A cancel that raced the commit point leaves the transaction to the chain: it was not cleaned. */
  const undone = (state: string) => state === "failed" || state === "rolled_back"

  const forceCleanupTransaction = Effect.fn("MiningCoordinator.forceCleanupTransaction")(function*(id: string) {
    const tx = inFlight.get(id)
    if (tx === undefined) return false
    if (tx.signed !== undefined) {
      yield* Effect.logWarning(`force cleanup of ${id} refused: its submission is signed and journaled; the chain decides`)
      return false
    }
    yield* Effect.logWarning(`force cleanup of transaction ${id}`)
    return undone((yield* cancel(tx, "transaction force-cleaned")).state)
  })

  const cleanupStaleTransactions = Effect.fn("MiningCoordinator.cleanupStaleTransactions")(
    function*(maxAge: Duration.Input) {
      const now = yield* Clock.currentTimeMillis
      const age = Duration.fromInputUnsafe(maxAge)
      const stale = inFlight.all().filter((tx) => now - tx.startedAtMs > Duration.toMillis(age))
      const ended = yield* Effect.forEach(
        stale.filter((tx) => tx.signed === undefined),
        (tx) => cancel(tx, `stale: older than ${Duration.format(age)}`),
        { concurrency: "unbounded" }
      )
      const cleaned = ended.filter((r) => undone(r.state)).map((r) => r.transaction_id)
      return {
        cleaned,
        awaiting_chain: stale.map((tx) => tx.record.transaction_id).filter((id) => !cleaned.includes(id))
      } satisfies CleanupResult
    }
  )

  return { forceCleanupTransaction, cleanupStaleTransactions }
}
