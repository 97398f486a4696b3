import { Clock, Duration, Effect, Option } from "effect"
import { type MiningError, RetryableError, ValidationError } from "../../domain/errors.ts"
import { decodeSubmitIntent, SUBMIT_INTENT } from "../../domain/intents.ts"
import { type RoundInfo, type SignedTransaction, Submission, SubmissionReceipt, Task } from "../../domain/mining.ts"
import { completeStep, type TransactionRecord } from "../../domain/TransactionRecord.ts"
import { isTerminal } from "../../domain/TransactionState.ts"
import type { JournalEvent } from "../Journal.ts"
import { type InFlight, type InFlightRegistry, makeInFlight, type MiningDeps } from "./InFlight.ts"
import type { PinGuard } from "./PinGuard.ts"
import type { SubmissionJudge } from "./SubmissionJudge.ts"
import type { TransactionRunner } from "./TransactionRunner.ts"
import type { TransactionSteps } from "./transactionSteps.ts"

export interface RecoveryOptions {
  /** Pins of transactions that ended less than this long ago are kept (default 0). */
  readonly orphanGrace?: Duration.Input | undefined
  /** Also release pins the journal does not know (only for a store that is the miner's own). Default false. */
  readonly releaseUnknownPins?: boolean | undefined
}

export interface RecoverySummary {
  readonly recovered: number
  readonly committed: number
  readonly rolled_back: number
  readonly failed: number
  /** Left non-terminal: interrupted again while the chain had not ruled yet. */
  readonly suspended: number
  readonly orphan_pins_released: ReadonlyArray<string>
}

/** The signed submission the journal holds for a transaction, unless the chain has since proved it is not there. */
const journaledSubmission = Effect.fnUntraced(function*(events: ReadonlyArray<JournalEvent>) {
  const last = events.findLastIndex((e) => e.event === SUBMIT_INTENT)
  if (last === -1 || events.slice(last).some((e) => e.event === "not_submitted")) return undefined
  return yield* decodeSubmitIntent(events[last]!.detail)
})

/** The receipt a transaction journaled before it crashed in task_complete. */
const receiptOf = (record: TransactionRecord): SubmissionReceipt | undefined =>
  record.blockchain_tx_hash === null || record.block_number === null
    ? undefined
    : new SubmissionReceipt({
      txHash: record.blockchain_tx_hash,
      blockNumber: BigInt(record.block_number),
      blockHash: record.block_hash ?? `0x${"0".repeat(64)}`,
      alreadySubmitted: false
    })

/**
 * Crash recovery (DESIGN.md "Durability"), run at start before any new work: every transaction the journal holds
 * non-terminal is run again with the same steps, from the last one it journaled — no retraining of a pinned
 * gradient, never a second signature of a journaled submission (the chain rules on it) — or compensated when it
 * cannot go forward. Then pins no committed or in-flight transaction references, and that the chain does not record
 * as this miner's submission, are released.
 */
export const makeRecovery = (deps: MiningDeps & {
  readonly runner: TransactionRunner
  readonly steps: TransactionSteps
  readonly judge: SubmissionJudge
  readonly inFlight: InFlightRegistry
  readonly pins: PinGuard
}) => {
  const { breakers, chain, inFlight, journal, judge, pins, runner, stats, steps, store } = deps
  /** A fleet runner recovers and releases only what it owns; a miner alone owns its whole journal. */
  const isOwn = (record: TransactionRecord) => journal.owner === undefined || record.owner === journal.owner
  const guardedChain = <A>(call: Effect.Effect<A, MiningError>) => steps.retrying(breakers.guard("chain", call))
  const guardedStore = <A>(call: Effect.Effect<A, MiningError>) => steps.retrying(breakers.guard("ipfs", call))

  /** The task as the chain knows its round; a round the chain does not know leaves nothing to go forward with. */
  const taskOf = (record: TransactionRecord, round: Option.Option<RoundInfo>) =>
    new Task({
      roundId: BigInt(record.round_id),
      chunkId: record.chunk_id,
      modelCid: Option.match(round, { onNone: () => "", onSome: (r) => r.modelCid }),
      spec: Option.match(round, { onNone: () => "{}", onSome: (r) => r.spec }),
      difficulty: Option.match(round, { onNone: () => 0, onSome: (r) => r.difficulty }),
      leaseExpiry: 0,
      deadline: Option.match(round, { onNone: () => 0, onSome: (r) => r.deadline })
    })

  /** Fails the transaction after registering the unpin of whatever it may have pinned. */
  const rollBack = (tx: InFlight, error: MiningError) =>
    runner.run(tx, [], Effect.andThen(registerPinned(tx), Effect.fail(error)))

  const registerPinned = (tx: InFlight) =>
    tx.record.ipfs_hash === null ? Effect.void : steps.registerUnpin(tx, tx.record.ipfs_hash)

  /** The receipt of a transaction's submission as the chain holds it: its journaled transaction's, or any of ours. */
  const chainReceipt = Effect.fnUntraced(function*(tx: InFlight, signed: SignedTransaction | undefined) {
    const { gradient_hash, ipfs_hash, pow_nonce } = tx.record
    if (gradient_hash === null || ipfs_hash === null) return undefined
    const submission = new Submission({
      roundId: tx.task.roundId,
      chunkId: tx.task.chunkId,
      cid: ipfs_hash,
      gradientHash: gradient_hash,
      powNonce: BigInt(pow_nonce ?? "0")
    })
    if (signed !== undefined) {
      const verdict = yield* judge.settle(signed, submission, tx.task.deadline)
      return verdict._tag === "Submitted" ? verdict.receipt : undefined
    }
    return Option.getOrUndefined(yield* steps.retrying(judge.ownSubmissionOf(tx.record)))
  })

  // Even when the chain looks reset, a journaled submission is the chain's to judge: a false "reset" that rolled it
  // back would unpin what is on chain, and a truly new chain can only revert it (its claims are not ours) or hold it.
  const resume = Effect.fnUntraced(function*(tx: InFlight, signed: SignedTransaction | undefined) {
    const record = tx.record
    if (record.state === "pending" || record.state === "training") {
      return yield* runner.abandon(
        tx,
        new RetryableError({
          message: "interrupted by a restart before anything was uploaded",
          hint: "the chunk can be mined again"
        })
      )
    }
    if (record.state === "task_complete") {
      // On chain when journaled; the chain says where (or that it lost it).
      const receipt = receiptOf(record) ?? (yield* chainReceipt(tx, signed))
      if (receipt === undefined) {
        return yield* rollBack(tx, new ValidationError({ message: "the chain no longer holds this submission" }))
      }
      tx.receipt = receipt
      return yield* runner.run(tx, runner.stepsFrom("task_complete"))
    }
    if (signed !== undefined) {
      tx.signed = signed
      return yield* runner.run(tx, runner.stepsFrom("blockchain_submit"), registerPinned(tx))
    }
    const cid = record.ipfs_hash
    const pinned = cid !== null && (yield* guardedStore(store.pins)).includes(cid)
    if (!pinned || record.gradient_hash === null) {
      return yield* rollBack(
        tx,
        new ValidationError({ message: `the envelope ${cid} was never pinned; going forward would need retraining` })
      )
    }
    if (record.state === "ipfs_upload") {
      tx.record = completeStep(record, "ipfs_upload", 0, yield* Clock.currentTimeMillis)
    }
    return yield* runner.run(tx, runner.stepsFrom("blockchain_submit"), registerPinned(tx))
  })

  const recoverOne = Effect.fnUntraced(function*(record: TransactionRecord) {
    // A chain that cannot be read fails recovery (and the start): proving work at a guessed difficulty, or judging a
    // submission against a guessed deadline, could roll back what the chain holds.
    const round = yield* guardedChain(chain.getRound(BigInt(record.round_id)))
    const tx = yield* makeInFlight(record, taskOf(record, round))
    tx.running = true
    yield* inFlight.add(tx)
    yield* stats.transactionResumed(record.state)
    yield* Effect.logWarning(`recovering transaction ${record.transaction_id} left at ${record.state}`)
    const signed = yield* journaledSubmission(yield* journal.events(record.transaction_id)).pipe(
      Effect.catch((error) => Effect.logError(error.message).pipe(Effect.as(undefined)))
    )
    return yield* resume(tx, signed)
  })

  /**
   * Releases the given CIDs unless a committed or in-flight transaction references them, or the chain records them as
   * this miner's submission (a lost or rebuilt journal must not unpin committed work).
   */
  const releaseIfUnreferenced = (candidates: ReadonlyArray<string>) =>
    candidates.length === 0 ? Effect.succeed<ReadonlyArray<string>>([]) : pins.releasing(
      candidates,
      Effect.gen(function*() {
        const live = new Set<string>()
        for (const r of yield* journal.list({ state: "committed" })) if (r.ipfs_hash !== null) live.add(r.ipfs_hash)
        for (const tx of inFlight.all()) if (tx.record.ipfs_hash !== null) live.add(tx.record.ipfs_hash)
        // A fleet's shared journal: what the other runners have in flight is theirs to keep or release.
        if (journal.owner !== undefined) {
          for (const r of yield* journal.list({})) {
            if (r.ipfs_hash !== null && !isTerminal(r.state) && !isOwn(r)) live.add(r.ipfs_hash)
          }
        }
        const unreferenced = candidates.filter((cid) => !live.has(cid))
        if (unreferenced.length === 0) return []
        const onChain = new Set((yield* guardedChain(chain.ownSubmissions)).map((s) => s.cid))
        for (const cid of unreferenced) {
          if (onChain.has(cid)) yield* Effect.logWarning(`pin ${cid} is kept: the chain records it as this miner's submission`)
        }
        return unreferenced.filter((cid) => !onChain.has(cid))
      }),
      (cid) =>
        guardedStore(store.unpin(cid)).pipe(
          Effect.andThen(Effect.logWarning(`released orphan pin ${cid}`)),
          Effect.as(true)
        )
    )

  /**
   * Pins of transactions that ended without a submission (their compensation failed or never ran) and, when the
   * store is the miner's own, pins the journal does not know; those updated within the grace period are left alone.
   */
  const releaseOrphanPins = Effect.fnUntraced(function*(options: RecoveryOptions) {
    const now = yield* Clock.currentTimeMillis
    const graceMs = Duration.toMillis(Duration.fromInputUnsafe(options.orphanGrace ?? "0 seconds"))
    const records = yield* journal.list({})
    const known = new Set<string>()
    const releasable = new Set<string>()
    for (const r of records) {
      if (r.ipfs_hash === null) continue
      known.add(r.ipfs_hash)
      if (isOwn(r) && isTerminal(r.state) && r.state !== "committed" && now - Date.parse(r.updated_at) >= graceMs) {
        releasable.add(r.ipfs_hash)
      }
    }
    const pins = yield* guardedStore(store.pins)
    return yield* releaseIfUnreferenced(
      pins.filter((cid) => releasable.has(cid) || (options.releaseUnknownPins === true && !known.has(cid)))
    )
  })

  const recoverTransactions = Effect.fn("MiningCoordinator.recoverTransactions")(function*(options: RecoveryOptions = {}) {
    const open = (yield* journal.list({})).filter((r) =>
      isOwn(r) && !isTerminal(r.state) && !inFlight.has(r.transaction_id)
    )
    const recovered = yield* Effect.forEach([...open].reverse(), recoverOne)
    const orphans = yield* releaseOrphanPins(options)
    const summary: RecoverySummary = {
      recovered: recovered.length,
      committed: recovered.filter((r) => r.state === "committed").length,
      rolled_back: recovered.filter((r) => r.state === "rolled_back").length,
      failed: recovered.filter((r) => r.state === "failed").length,
      suspended: recovered.filter((r) => !isTerminal(r.state)).length,
      orphan_pins_released: orphans
    }
    yield* stats.recovered(summary)
    if (summary.recovered > 0 || orphans.length > 0) {
      yield* Effect.logWarning(`recovery: ${JSON.stringify(summary)}`)
    }
    return summary
  })

  return { recoverTransactions, releaseIfUnreferenced }
}

export type Recovery = ReturnType<typeof makeRecovery>
