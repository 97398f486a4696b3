import { Clock, Duration, Effect, Layer, Option } from "effect"
import type { ChainRevertError, MiningError } from "../../domain/errors.ts"
import { type ChunkClaim, type RoundInfo, type SubmissionReceipt, Task } from "../../domain/mining.ts"
import { Chain } from "../../services/Chain.ts"
import { TaskSource } from "../../services/TaskSource.ts"

export interface ChainTaskSourceOptions {
  /** How long to wait between two looks at the registry while no chunk is free. Default 2 s. */
  readonly pollInterval?: Duration.Input
  /** The shortest time between two looks for claims of ours nobody works on. Default 30 s. */
  readonly ownClaimsInterval?: Duration.Input
  /**
   * Look for them every `ownClaimsInterval` even while chunks are free (default: only at the first claim, after a
   * failed one, and while none is free). For a fleet: another runner of the account that died between a claim and
   * its journal record leaves a claim no journal knows, and no takeover finds; without this it waits until the round
   * fills up or its lease runs out.
   */
  readonly ownClaimsWhileFree?: boolean | undefined
}

/** A task handed back is worked on again only with at least this much of its lease left (seconds). */
const retryLeaseMarginSeconds = 30

/**
 * Reverts that mean "nothing to claim in this round": it filled up (NoFreeChunk), passed its deadline between our
 * read and our claim (RoundExpired), or is unknown to the registry (RoundNotOpen). The next round may still have work.
 */
const roundHasNoWork = (error: ChainRevertError): boolean =>
  error.errorName === "NoFreeChunk" || error.errorName === "RoundExpired" || error.errorName === "RoundNotOpen"

/**
 * The TaskSource on the MiningRegistry: `next` claims a chunk of the newest open round that has one, `complete`
 * marks the submitted chunk complete on chain.
 */
export const make = Effect.fnUntraced(function*(options: ChainTaskSourceOptions = {}) {
  const chain = yield* Chain
  const pollInterval = Duration.fromInputUnsafe(options.pollInterval ?? "2 seconds")
  const ownClaimsInterval = Duration.fromInputUnsafe(options.ownClaimsInterval ?? "30 seconds")

  const taskOf = (round: RoundInfo, chunkId: number, leaseExpiry: number) =>
    new Task({
      roundId: round.roundId,
      chunkId,
      modelCid: round.modelCid,
      spec: round.spec,
      difficulty: round.difficulty,
      leaseExpiry,
      deadline: round.deadline
    })

  /** One look at the registry: a claimed chunk of the newest open round with one free, or none. */
  const claimAny = Effect.gen(function*() {
    const now = yield* chain.now
    const rounds = yield* chain.rounds
    // Newest first: the network's coordinator opens a new round when the previous one fills up or expires.
    const open = rounds.filter((round) => round.deadline > now && round.submittedCount < round.chunkCount).reverse()
    for (const round of open) {
      const claimed = yield* chain.claimChunk(round.roundId).pipe(
        Effect.map(Option.some),
        Effect.catchTag("ChainRevertError", (error) => roundHasNoWork(error) ? Effect.succeedNone : Effect.fail(error))
      )
      if (Option.isSome(claimed)) return Option.some(taskOf(round, claimed.value.chunkId, claimed.value.leaseExpiry))
    }
    return Option.none<Task>()
  })

  // Claims of ours the chain holds with no submission: a claim whose answer was lost, that a crashed run never
  // started, or whose submission a chain that lost state forgot. Looked for at the first claim, at once after a failed
  // one (it may have landed), and while no chunk is free at most once per `ownClaimsInterval` (the look costs a few
  // reads per open round); each look's finds are handed out one by one. One that a transaction of ours works on right now
  // is handed out too, and the loop skips it (the chain cannot tell this source which are in flight).
  let lookForOwnClaims = true
  // After a failed claim the look is not put off by the interval: the claim may have landed with its answer lost,
  // and a run that ends before the interval is over would leave that chunk leased to nobody working on it (seen in
  // network-faults.test.ts: a claim 15 s into a 22 s run). The interval only spaces the looks while nothing is free.
  let claimFailed = false
  let lastLook = Number.NEGATIVE_INFINITY
  let found: Array<ChunkClaim> = []
  const ownClaim = Effect.gen(function*() {
    if (found.length === 0) {
      const now = yield* Clock.currentTimeMillis
      const due = (lookForOwnClaims || options.ownClaimsWhileFree === true) &&
        now - lastLook >= Duration.toMillis(ownClaimsInterval)
      if (!claimFailed && !due) return Option.none<Task>()
      claimFailed = false
      lookForOwnClaims = false
      lastLook = now
      found = [...(yield* chain.ownClaims)]
    }
    const claim = found.shift()
    if (claim === undefined) return Option.none<Task>()
    const round = yield* chain.getRound(claim.roundId)
    if (Option.isNone(round)) return Option.none<Task>()
    yield* Effect.logDebug(`chunk ${claim.chunkId} of round ${claim.roundId} is leased to this miner with no submission: taking it up`)
    return Option.some(taskOf(round.value, claim.chunkId, claim.leaseExpiry))
  })

  // Tasks handed back by `retry`: still ours while their lease lasts, with a margin for the work itself.
  const returned: Array<Task> = []
  const returnedTask = Effect.gen(function*() {
    const now = (yield* Clock.currentTimeMillis) / 1000
    while (returned.length > 0) {
      const task = returned.shift()!
      if (task.leaseExpiry - now > retryLeaseMarginSeconds && task.deadline > now) return Option.some(task)
    }
    return Option.none<Task>()
  })

  const next = Effect.fn("TaskSource.next")(function*(): Effect.fn.Return<Task, MiningError> {
    let waiting = false
    for (;;) {
      const again = yield* returnedTask
      if (Option.isSome(again)) {
        yield* Effect.logInfo(`working on chunk ${again.value.chunkId} of round ${again.value.roundId} again (its lease is ours)`)
        return again.value
      }
      const own = yield* ownClaim
      if (Option.isSome(own)) return own.value
      const task = yield* claimAny.pipe(Effect.tapError(() => Effect.sync(() => (claimFailed = true))))
      if (Option.isSome(task)) {
        yield* Effect.annotateCurrentSpan({
          "r3mes.round_id": task.value.roundId.toString(),
          "r3mes.chunk_id": task.value.chunkId
        })
        if (waiting) yield* Effect.logInfo(`claimed chunk ${task.value.chunkId} of round ${task.value.roundId}`)
        return task.value
      }
      // Nothing free: leases of ours with no submission may be why (a chain that lost our submissions keeps their
      // claims, and our journal rolled them back as lost) — look again at the next turn (at most every interval).
      lookForOwnClaims = true
      if (!waiting) {
        yield* Effect.logInfo("no free chunk; waiting").pipe(
          Effect.annotateLogs({ poll_interval: Duration.format(pollInterval) })
        )
        waiting = true
      }
      yield* Effect.sleep(pollInterval)
    }
  })

  const complete = Effect.fn("TaskSource.complete")(function*(task: Task, _receipt: SubmissionReceipt) {
    yield* Effect.annotateCurrentSpan({ "r3mes.round_id": task.roundId.toString(), "r3mes.chunk_id": task.chunkId })
    return yield* chain.completeChunk(task.roundId, task.chunkId)
  })

  const retry = (task: Task) => Effect.sync(() => void returned.push(task))

  return TaskSource.of({ next: next(), complete, retry })
})

export const ChainTaskSource = {
  /** Work from the chain: claims chunks through the Chain port, polling every `pollInterval` while none is free. */
  layer: (options: ChainTaskSourceOptions = {}): Layer.Layer<TaskSource, never, Chain> =>
    Layer.effect(TaskSource, make(options))
} as const
