import { Effect, Option, PubSub, Schema } from "effect"
import { isRetryable, type MiningError } from "../../domain/errors.ts"
import { retryDelays } from "../../domain/retryPolicy.ts"
import type { ChainFingerprint, MinerIdentity } from "../../domain/mining.ts"
import type { TransactionRecord } from "../../domain/TransactionRecord.ts"
import type { InFlightRegistry, MiningDeps } from "./InFlight.ts"
import type { SubmissionJudge } from "./SubmissionJudge.ts"
import type { TransactionJournal } from "./TransactionJournal.ts"

/** What an audit of the journal against the chain found. */
export interface AuditSummary {
  /** The chain is not the one the journal knew (another genesis block or registry code: a reset devnet). */
  readonly reset: boolean
  /** Committed records whose submission the chain no longer holds, now rolled back (`chain_lost`). */
  readonly lost: ReadonlyArray<string>
  /** Committed records checked against the chain one by one. */
  readonly checked: number
}

const StoredFingerprint = Schema.fromJsonString(Schema.Struct({
  genesis_hash: Schema.String,
  registry_code_hash: Schema.String
}))

const metaKeyOf = (id: MinerIdentity) => `chain:${id.chainId}:${id.registry.toLowerCase()}`
const keyPrefixOf = (id: MinerIdentity) => `${id.chainId}:${id.registry.toLowerCase()}:${id.miner.toLowerCase()}:`

/**
 * "The journal is a cache of the chain, never its substitute" (DESIGN.md "Durability"). A journaled `committed` is
 * believed only while the chain holds the submission:
 *
 * - the chain's identity (genesis hash, registry code hash) is kept in the journal: a chain that was reset is a new
 *   chain, and every record of the old one is lost with it;
 * - committed records are checked newest first by the hash of the block that holds them; the first one whose block
 *   is still there vouches for every older one (each block commits to its parent), so a healthy chain costs one
 *   look. Records the chain no longer holds become `rolled_back` (chain_lost) and their pins are released.
 */
export const makeChainAudit = (deps: MiningDeps & {
  readonly records: TransactionJournal
  readonly judge: SubmissionJudge
  readonly inFlight: InFlightRegistry
  /** Releases a CID unless something still references it (see releaseOrphanPins). */
  readonly releaseIfUnreferenced: (cids: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string>, MiningError>
  /** Told the id of every committed transaction found lost, so a running loop corrects what it reported. */
  readonly lost: PubSub.PubSub<string>
}) => {
  const { breakers, chain, inFlight, journal, judge, records, releaseIfUnreferenced, stats } = deps
  // Every read retried by the configured schedule: one lost answer must not fail a start.
  const retried = <A>(effect: Effect.Effect<A, MiningError>) =>
    Effect.retry(effect, { schedule: retryDelays(deps.config), times: deps.config.maxRetries, while: isRetryable })
  const guarded = <A>(call: Effect.Effect<A, MiningError>) => retried(breakers.guard("chain", call))

  /** Compares the chain's fingerprint with the journal's (recording it the first time): true when it changed. */
  const identityChanged = Effect.fnUntraced(function*(id: MinerIdentity, fingerprint: ChainFingerprint) {
    const key = metaKeyOf(id)
    const current = { genesis_hash: fingerprint.genesisHash, registry_code_hash: fingerprint.registryCodeHash }
    const stored = yield* journal.getMeta(key)
    const known = stored === undefined
      ? undefined
      : yield* Schema.decodeUnknownEffect(StoredFingerprint)(stored).pipe(Effect.option, Effect.map(Option.getOrUndefined))
    const changed = known !== undefined &&
      (known.genesis_hash !== current.genesis_hash || known.registry_code_hash !== current.registry_code_hash)
    if (changed) {
      yield* Effect.logError(
        `the chain at registry ${id.registry} is not the one the journal knew (genesis ${known.genesis_hash} → ` +
          `${current.genesis_hash}): it was reset; what was committed on the old chain is lost`
      )
    }
    if (known === undefined || changed) yield* journal.setMeta(key, JSON.stringify(current))
    return changed
  })

  /** The chain no longer holds it: committed → rolled_back (chain_lost), and its pin released if nothing else uses it. */
  const markLost = Effect.fnUntraced(function*(record: TransactionRecord, why: string) {
    const lost = yield* records.moved(record, "rolled_back")
    const updated: TransactionRecord = {
      ...lost,
      failed_step: "blockchain_submit",
      error_category: "chain_lost",
      error_message: `the chain no longer holds this submission: ${why}`
    }
    yield* records.saveRecord(updated, "chain_lost", why)
    yield* stats.chainLost
    yield* PubSub.publish(deps.lost, record.transaction_id)
    yield* Effect.logError(`transaction ${record.transaction_id} was committed, but ${why}: now rolled back`)
    return updated
  })

  /** Whether the chain still holds a committed record's submission: by its block's hash, else by the chunk's record. */
  const stillHeld = Effect.fnUntraced(function*(record: TransactionRecord) {
    if (record.block_hash !== null && record.block_number !== null) {
      const hash = yield* guarded(chain.blockHash(BigInt(record.block_number)))
      if (Option.isSome(hash) && hash.value.toLowerCase() === record.block_hash.toLowerCase()) return "by_block" as const
    }
    const own = yield* retried(judge.ownSubmissionOf(record))
    if (Option.isNone(own)) return "lost" as const
    // Held, in another block than the journal knew (re-included after a reorg, or a journal from before block hashes).
    yield* records.saveRecord(
      {
        ...record,
        blockchain_tx_hash: own.value.txHash,
        block_number: Number(own.value.blockNumber),
        block_hash: own.value.blockHash
      },
      "chain_verified",
      `block ${own.value.blockNumber}`
    )
    return "by_submission" as const
  })

  const ours = (prefix: string, records: ReadonlyArray<TransactionRecord>) =>
    records
      .filter((r) => r.key.startsWith(prefix) && !inFlight.has(r.transaction_id))
      .sort((a, b) => (b.block_number ?? Number.MAX_SAFE_INTEGER) - (a.block_number ?? Number.MAX_SAFE_INTEGER))

  const audit = Effect.fn("ChainAudit.audit")(function*() {
    const id = yield* guarded(chain.identity)
    const reset = yield* identityChanged(id, yield* guarded(chain.fingerprint))
    const prefix = keyPrefixOf(id)
    const lost: Array<TransactionRecord> = []
    let checked = 0
    // The newest records first: on a healthy chain the walk stops at the first one. Blocks are not in creation order
    // (a transaction may wait for its receipt while later ones commit), so a window wider than the transactions that
    // can be in flight together is sorted by block; only when the whole window is lost is everything read.
    const window = 2 * deps.config.maxActiveTransactions + 32
    const newest = reset ? [] : yield* journal.list({ state: "committed", limit: window })
    let verified = false
    for (const record of ours(prefix, newest)) {
      checked++
      const held = yield* stillHeld(record)
      if (held === "by_block") {
        verified = true
        break
      }
      if (held === "lost") lost.push(yield* markLost(record, `block ${record.block_number} is gone (reset or reorg)`))
    }
    if (reset || (!verified && newest.length === window)) {
      const seen = new Set(newest.map((r) => r.transaction_id))
      const rest = ours(prefix, (yield* journal.list({ state: "committed" })).filter((r) => !seen.has(r.transaction_id)))
      for (const record of rest) {
        checked++
        const held = yield* stillHeld(record)
        // After a reset a block that is there vouches for nothing older: older records may be of the old chain.
        if (held === "by_block" && !reset) break
        if (held === "lost") {
          lost.push(yield* markLost(record, reset ? "the chain was reset" : `block ${record.block_number} is gone (reset or reorg)`))
        }
      }
    }
    const cids = lost.flatMap((r) => (r.ipfs_hash === null ? [] : [r.ipfs_hash]))
    if (cids.length > 0) yield* releaseIfUnreferenced(cids)
    return { reset, lost: lost.map((r) => r.transaction_id), checked } satisfies AuditSummary
  })

  return { audit, markLost }
}

export type ChainAudit = ReturnType<typeof makeChainAudit>
