import { Clock, Context, Duration, Effect, Layer, Option, PubSub, type Scope } from "effect"
import { type MiningError, ResourceError, ValidationError } from "../domain/errors.ts"
import { type Task, transactionKey } from "../domain/mining.ts"
import { newRecord, type TransactionRecord, withAge } from "../domain/TransactionRecord.ts"
import { isTerminal } from "../domain/TransactionState.ts"
import { Chain } from "./Chain.ts"
import { GradientStore } from "./GradientStore.ts"
import { isUnfinishedKeyTaken, Journal } from "./Journal.ts"
import { type CleanupResult, makeAdmin } from "./mining/Admin.ts"
import { type AuditSummary, makeChainAudit } from "./mining/ChainAudit.ts"
import { makeInFlight, makeInFlightRegistry, type MiningDeps } from "./mining/InFlight.ts"
import { makeKeyedLock } from "./mining/KeyedLock.ts"
import { makePinGuard } from "./mining/PinGuard.ts"
import { makeRecovery, type RecoveryOptions, type RecoverySummary } from "./mining/Recovery.ts"
import { makeSubmissionJudge } from "./mining/SubmissionJudge.ts"
import { makeTransactionJournal } from "./mining/TransactionJournal.ts"
import { makeTransactionRunner } from "./mining/TransactionRunner.ts"
import { makeTransactionSteps } from "./mining/transactionSteps.ts"
import { MiningStats, type StatisticsSnapshot } from "./MiningStats.ts"
import { PowSolver } from "./PowSolver.ts"
import { type BreakerState, ServiceBreakers } from "./ServiceBreakers.ts"
import { Settings } from "./Settings.ts"
import { TaskSource } from "./TaskSource.ts"
import { Trainer } from "./Trainer.ts"

export type { AuditSummary, BreakerState, CleanupResult, RecoveryOptions, RecoverySummary }

export interface CoordinatorStatistics extends StatisticsSnapshot {
  readonly circuit_breakers: { readonly chain: BreakerState; readonly ipfs: BreakerState }
}

/**
 * Core service: the atomic mining transaction (DESIGN.md "Durability").
 *
 *   pending → training → ipfs_upload → blockchain_submit → task_complete → committed
 *
 * The steps live in mining/transactionSteps.ts, the rules around them (timeout, compensation, the commit point) in
 * mining/TransactionRunner.ts, the chain's verdict on a signed submission in mining/SubmissionJudge.ts, crash
 * recovery in mining/Recovery.ts, the journal-against-chain audit in mining/ChainAudit.ts and the operator's levers in
 * mining/Admin.ts. This file wires them and keeps the transactions in flight.
 */
export class MiningCoordinator extends Context.Service<MiningCoordinator, {
  /**
   * Registers a pending transaction for the task: the one in flight for the same chunk if there is one, the
   * committed one if the chain still holds its submission. ResourceError when R3MES_MAX_ACTIVE_TRANSACTIONS are in
   * flight.
   */
  readonly createTransaction: (task: Task) => Effect.Effect<TransactionRecord, MiningError>
  /**
   * Runs a pending transaction to its end and returns its record: committed, failed or rolled_back (the cause is in
   * the record), or left non-terminal when the miner stops past its commit point (recovery asks the chain at the
   * next start). Fails only when the transaction cannot be run at all.
   */
  readonly executeAtomicMining: (transactionId: string) => Effect.Effect<TransactionRecord, MiningError>
  /** createTransaction + executeAtomicMining. */
  readonly mine: (task: Task) => Effect.Effect<TransactionRecord, MiningError>
  /** Whether the transaction is created and not yet run (createTransaction may answer one in flight, or committed). */
  readonly isRunnable: (transactionId: string) => Effect.Effect<boolean>
  readonly getTransactionStatus: (transactionId: string) => Effect.Effect<Option.Option<TransactionRecord>, MiningError>
  readonly getStatistics: Effect.Effect<CoordinatorStatistics>
  /** Rolls back in-flight transactions older than maxAge that have not reached the commit point. */
  readonly cleanupStaleTransactions: (maxAge: Duration.Input) => Effect.Effect<CleanupResult, MiningError>
  /** Crash recovery, run at start before any new work (see mining/Recovery.ts). */
  readonly recoverTransactions: (options?: RecoveryOptions) => Effect.Effect<RecoverySummary, MiningError>
  /** Checks the journal's committed records against the chain (see mining/ChainAudit.ts). */
  readonly auditChain: Effect.Effect<AuditSummary, MiningError>
  /** The ids of committed transactions found lost by the chain from now on, for the scope's lifetime. */
  readonly chainLost: Effect.Effect<PubSub.Subscription<string>, never, Scope.Scope>
  /** Rolls back one in-flight transaction; false when it is unknown, final, or past its commit point. */
  readonly forceCleanupTransaction: (transactionId: string) => Effect.Effect<boolean, MiningError>
  readonly activeCount: Effect.Effect<number>
}>()("r3mes/services/MiningCoordinator") {
  static readonly layer: Layer.Layer<
    MiningCoordinator | ServiceBreakers,
    never,
    Trainer | GradientStore | Chain | TaskSource | Journal | PowSolver | MiningStats | Settings
  > = Layer.effect(MiningCoordinator, Effect.suspend(() => make)).pipe(Layer.provideMerge(ServiceBreakers.layer))
}

const make = Effect.gen(function*() {
  const deps: MiningDeps = {
    config: yield* Settings,
    trainer: yield* Trainer,
    store: yield* GradientStore,
    chain: yield* Chain,
    tasks: yield* TaskSource,
    journal: yield* Journal,
    pow: yield* PowSolver,
    stats: yield* MiningStats,
    breakers: yield* ServiceBreakers
  }
  const { breakers, chain, config, journal, stats } = deps
  const inFlight = makeInFlightRegistry()
  // Transactions of one chunk (its key) are created, and judged by the chain audit, one at a time.
  const keys = makeKeyedLock()
  const pins = makePinGuard()
  const records = makeTransactionJournal(deps)
  const judge = makeSubmissionJudge(deps)
  const steps = makeTransactionSteps({ ...deps, records, judge, pins })
  const runner = makeTransactionRunner({ ...deps, records, steps, inFlight })
  const recovery = makeRecovery({ ...deps, runner, steps, judge, inFlight, pins })
  const lost = yield* PubSub.unbounded<string>()
  const chainAudit = makeChainAudit({
    ...deps,
    records,
    judge,
    inFlight,
    keys,
    releaseIfUnreferenced: recovery.releaseIfUnreferenced,
    lost
  })
  const admin = makeAdmin({ inFlight, runner })

  // Successes are kept for good (the identity never changes), failures not: the next call asks again.
  const identity = yield* breakers.guard("chain", chain.identity).pipe(
    Effect.cachedWithTTL((exit) => (exit._tag === "Success" ? Duration.infinity : Duration.zero))
  )

  /** A committed record is reused only while the chain holds its submission (else the chain lost it). */
  const stillCommitted = Effect.fnUntraced(function*(record: TransactionRecord) {
    if (Option.isSome(yield* steps.retrying(judge.ownSubmissionOf(record)))) return true
    yield* chainAudit.markLost(record, "a new claim of its chunk found no submission on chain")
    return false
  })

  const createTransaction = Effect.fn("MiningCoordinator.createTransaction")(function*(task: Task) {
    const key = transactionKey(yield* identity, task)
    // Under the key's lock: the chain audit must not judge the previous record from an older reading meanwhile.
    return yield* keys.withLock(key, createUnderLock(key, task))
  })

  const notStartedHere = Effect.fnUntraced(function*(task: Task, unfinished: TransactionRecord) {
    const whose = unfinished.owner === (journal.owner ?? null)
      ? "left for recovery at this runner's next start"
      : `runner ${unfinished.owner ?? "(none)"}'s`
    yield* Effect.logInfo(
      `chunk ${task.chunkId} of round ${task.roundId} has an unfinished transaction (${unfinished.transaction_id}, ` +
        `${unfinished.state}), ${whose}: not started here`
    )
    return unfinished
  })

  const createUnderLock = Effect.fnUntraced(function*(key: string, task: Task) {
    const running = inFlight.byKey(key)
    if (running !== undefined) return running.record
    const previous = yield* journal.findByKey(key)
    if (previous !== undefined && previous.state === "committed" && (yield* stillCommitted(previous))) return previous
    // A fleet's shared journal: one unfinished transaction per chunk among the runners. Another runner's is being
    // worked on (a claim of the account it found too); this runner's own, not in flight, was left for recovery.
    if (previous !== undefined && !isTerminal(previous.state) && (journal.owner !== undefined || previous.owner !== null)) {
      return yield* notStartedHere(task, previous)
    }
    if (inFlight.size() >= config.maxActiveTransactions) {
      return yield* new ResourceError({
        message: `too many active transactions (${inFlight.size()} of ${config.maxActiveTransactions})`,
        resource: "active transactions",
        hint: "wait for one to finish or raise R3MES_MAX_ACTIVE_TRANSACTIONS"
      })
    }
    const record = newRecord({
      transactionId: `tx-${task.roundId}-${task.chunkId}-${crypto.randomUUID().slice(0, 8)}`,
      key,
      roundId: task.roundId,
      chunkId: task.chunkId,
      nowMs: yield* Clock.currentTimeMillis,
      owner: journal.owner
    })
    const tx = yield* makeInFlight(record, task)
    yield* inFlight.add(tx)
    const created = yield* records.save(tx, "created", `round ${task.roundId} chunk ${task.chunkId}`).pipe(
      Effect.as(true),
      // The fleet's journal refused it: another runner started the chunk between our look and our save.
      Effect.catchIf(isUnfinishedKeyTaken, () => Effect.as(inFlight.remove(tx), false)),
      Effect.tapError((error) => Effect.andThen(stats.transactionCreated, runner.abandon(tx, error)))
    )
    if (!created) {
      const other = yield* journal.findByKey(key)
      return other === undefined || isTerminal(other.state) ? record : yield* notStartedHere(task, other)
    }
    yield* stats.transactionCreated
    yield* Effect.logInfo(`transaction ${record.transaction_id} created for round ${task.roundId} chunk ${task.chunkId}`)
      .pipe(Effect.annotateLogs({ transaction_id: record.transaction_id }))
    return record
  })

  const executeAtomicMining = Effect.fn("MiningCoordinator.executeAtomicMining")(function*(transactionId: string) {
    const tx = inFlight.get(transactionId)
    if (tx === undefined) {
      const stored = yield* journal.get(transactionId)
      if (stored !== undefined && isTerminal(stored.state)) return stored
      return yield* new ValidationError({ message: `no pending transaction ${transactionId}`, field: "transaction_id" })
    }
    if (tx.running) return yield* new ValidationError({ message: `transaction ${transactionId} is already running` })
    tx.running = true
    yield* Effect.annotateCurrentSpan({
      "r3mes.transaction_id": transactionId,
      "r3mes.round_id": tx.record.round_id,
      "r3mes.chunk_id": tx.record.chunk_id
    })
    return yield* runner.run(tx, steps.steps)
  })

  const mine = Effect.fn("MiningCoordinator.mine")(function*(task: Task) {
    const record = yield* createTransaction(task)
    if (isTerminal(record.state)) return record
    return yield* executeAtomicMining(record.transaction_id)
  })

  const getTransactionStatus = Effect.fn("MiningCoordinator.getTransactionStatus")(function*(transactionId: string) {
    const now = yield* Clock.currentTimeMillis
    const live = inFlight.get(transactionId)
    if (live !== undefined) return Option.some(withAge(live.record, now))
    const stored = yield* journal.get(transactionId)
    return stored === undefined ? Option.none() : Option.some(withAge(stored, now))
  })

  const getStatistics = Effect.gen(function*() {
    const snapshot = yield* stats.snapshot
    return {
      ...snapshot,
      circuit_breakers: { chain: yield* breakers.state("chain"), ipfs: yield* breakers.state("ipfs") }
    } satisfies CoordinatorStatistics
  })

  // Every coordinator log line says where it comes from: the replaced engine's operators grep for it.
  const logged = <Args extends ReadonlyArray<unknown>, A, E>(f: (...args: Args) => Effect.Effect<A, E>) =>
  (...args: Args) => f(...args).pipe(Effect.annotateLogs({ logger: "atomic_coordinator" }))

  return MiningCoordinator.of({
    createTransaction: logged(createTransaction),
    executeAtomicMining: logged(executeAtomicMining),
    mine: logged(mine),
    isRunnable: (transactionId) => Effect.sync(() => inFlight.get(transactionId)?.running === false),
    getTransactionStatus,
    getStatistics,
    cleanupStaleTransactions: logged(admin.cleanupStaleTransactions),
    forceCleanupTransaction: logged(admin.forceCleanupTransaction),
    recoverTransactions: logged(recovery.recoverTransactions),
    auditChain: chainAudit.audit().pipe(Effect.annotateLogs({ logger: "atomic_coordinator" })),
    chainLost: PubSub.subscribe(lost),
    activeCount: Effect.sync(() => inFlight.size())
  })
})
