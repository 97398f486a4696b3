import { Clock, Effect } from "effect"
import type { MiningError } from "../domain/errors.ts"
import { transactionKey } from "../domain/mining.ts"
import { newRecord, type TransactionRecord } from "../domain/TransactionRecord.ts"
import { Chain } from "./Chain.ts"
import { GradientStore } from "./GradientStore.ts"
import { Journal } from "./Journal.ts"

export interface RebuildSummary {
  /** Committed records written, one per submission of this miner on chain. */
  readonly rebuilt: number
  /** Of those, the ones whose envelope is pinned in the store (fetched and pinned again when it was reachable). */
  readonly pinned: number
  /** CIDs the chain records as ours that the store neither holds nor can fetch: committed on chain, not pinned. */
  readonly unavailable: ReadonlyArray<string>
}

/** Envelopes are fetched up to this size when a pin is missing (the default R3MES_MAX_GRADIENT_SIZE_MB). */
const maxFetchBytes = 100 * 1024 * 1024

/**
 * `r3mes-miner journal rebuild`: writes into an empty journal one committed record per submission the chain holds
 * from this miner (the chain is the judge: what it records is what was committed), with the transaction, block and
 * completion it records, and pins each envelope again where the store has lost the pin but can still reach the
 * content. What the chain does not record is not rebuilt: a corrupted journal's rolled-back or unfinished
 * transactions left nothing on chain to keep.
 */
export const rebuildJournal = Effect.fn("JournalRebuild.rebuildJournal")(function*(): Effect.fn.Return<
  RebuildSummary,
  MiningError,
  Chain | GradientStore | Journal
> {
  const chain = yield* Chain
  const store = yield* GradientStore
  const journal = yield* Journal
  const identity = yield* chain.identity
  const submissions = yield* chain.ownSubmissions
  const pins = new Set(yield* store.pins)
  const now = yield* Clock.currentTimeMillis
  const unavailable: Array<string> = []
  let pinned = 0
  for (const s of submissions) {
    let held = pins.has(s.cid)
    if (!held) {
      const fetched = yield* store.get(s.cid, maxFetchBytes).pipe(Effect.option)
      if (fetched._tag === "Some") held = (yield* store.add(fetched.value)) === s.cid
    }
    if (held) pinned++
    else unavailable.push(s.cid)
    const record: TransactionRecord = {
      ...newRecord({
        transactionId: `tx-${s.roundId}-${s.chunkId}-rebuilt`,
        key: transactionKey(identity, s),
        roundId: s.roundId,
        chunkId: s.chunkId,
        nowMs: now
      }),
      state: "committed",
      gradient_hash: s.gradientHash,
      ipfs_hash: s.cid,
      pow_nonce: s.powNonce.toString(),
      blockchain_tx_hash: s.txHash,
      block_number: Number(s.blockNumber),
      block_hash: s.blockHash,
      task_completed: s.completed,
      progress: { training: true, ipfs_upload: true, blockchain_submit: true, task_complete: s.completed }
    }
    yield* journal.save(record, {
      at: record.updated_at,
      state: "committed",
      event: "rebuilt_from_chain",
      detail: `block ${s.blockNumber}, tx ${s.txHash}${held ? "" : "; the envelope is not pinned and not reachable"}`
    })
  }
  return { rebuilt: submissions.length, pinned, unavailable } satisfies RebuildSummary
})
