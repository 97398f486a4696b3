import { Clock, Effect, Option, PubSub, Schema } from "effect"
import { isRetryable, type MiningError } from "../../domain/errors.ts"
import { retryDelays } from "../../domain/retryPolicy.ts"
import type { ChainFingerprint, MinerIdentity } from "../../domain/mining.ts"
import type { TransactionRecord } from "../../domain/TransactionRecord.ts"
import type { InFlightRegistry, MiningDeps } from "./InFlight.ts"
import type { KeyedLock } from "./KeyedLock.ts"
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
const checkpointKeyOf = (id: MinerIdentity) => `chain_checkpoint:${id.chainId}:${id.registry.toLowerCase()}`

const StoredCheckpoint = Schema.fromJsonString(Schema.Struct({
  block_number: Schema.Number,
  block_hash: Schema.String,
  /** Records committed after this instant were not seen by the audit that set it. */
  at: Schema.String
}))
const keyPrefixOf = (id: MinerIdentity) => `${id.chainId}:${id.registry.toLowerCase()}:${id.miner.toLowerCase()}:`

/**
 * "The journal is a cache of the chain, never its substitute" (DESIGN.md "Durability"). A journaled `committed` is
 * believed only while the chain holds the submission:
 *
 * - the chain's identity (genesis hash, registry code hash) is kept in the journal: a chain that was reset is a new
 *   chain, and every record of the old one is lost with it;
 * - committed records are checked by the hash of the block that holds them. Each audit leaves a checkpoint (the
 *   chain's head when it began): the next one checks that block, then each record committed since,
 *   one by one — a devnet that lost its last seconds and went on mining interleaves lost and new blocks at the same
 *   heights. When the checkpoint's block is gone, the older records are walked newest first until one whose block is
 *   still there, which vouches for every older one (each block commits to its parent). A healthy chain costs one look
 *   per transaction. Records the chain no longer holds become `rolled_back` (chain_lost), their pins released.
 */
export const makeChainAudit = (deps: MiningDeps & {
  readonly records: TransactionJournal
  readonly judge: SubmissionJudge
  readonly inFlight: InFlightRegistry
  /** The per-chunk lock transactions are created under: a record is judged only as the journal has it now. */
  readonly keys: KeyedLock
  /** Releases a CID unless something still references it (see releaseOrphanPins). */
  readonly releaseIfUnreferenced: (cids: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string>, MiningError>
  /** Told the id of every committed transaction found lost, so a running loop corrects what it reported. */
  readonly lost: PubSub.PubSub<string>
}) => {
  const { breakers, chain, inFlight, journal, judge, keys, records, releaseIfUnreferenced, stats } = deps
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
      if (Option.isSome(hash) && hash.value.toLowerCase() === record.block_hash.toLowerCase()) {
        return { held: "by_block" as const, record }
      }
    }
    const own = yield* retried(judge.ownSubmissionOf(record))
    if (Option.isNone(own)) return { held: "lost" as const, record }
    // Held, in another block than the journal knew (re-included after a reorg, or a journal from before block hashes).
    const verified: TransactionRecord = {
      ...record,
      blockchain_tx_hash: own.value.txHash,
      block_number: Number(own.value.blockNumber),
      block_hash: own.value.blockHash
    }
    yield* records.saveRecord(verified, "chain_verified", `block ${own.value.blockNumber}`)
    return { held: "by_submission" as const, record: verified }
  })

  /**
   * Whether the chain still has the chunk marked complete, where the record says it is: the completion comes in a
   * later block than the submission, so a chain that lost its last seconds may hold one and not the other. Task
   * completion is non-critical: the record only stops claiming it.
   */
  const completionHeld = (listed: TransactionRecord) => stillCommittedNow(listed, completionHeldNow)

  const completionHeldNow = Effect.fnUntraced(function*(record: TransactionRecord) {
    if (!record.task_completed) return true
    const held = yield* guarded(chain.getSubmission(BigInt(record.round_id), record.chunk_id))
    if (Option.isSome(held) && held.value.completed) return true
    yield* records.saveRecord({ ...record, task_completed: false }, "completion_lost", "the chain no longer has the chunk completed")
    yield* Effect.logWarning(`transaction ${record.transaction_id}: the chain lost the chunk's completion (non-critical)`)
    return false
  })

  /**
   * Runs `f` on the record as the journal holds it now, under its chunk's lock, if it is still committed: a listed
   * record may be stale by the time it is looked at — found lost and its chunk mined again meanwhile (the new
   * transaction's identical submission would make the old record look held, and saving it would commit it twice).
   */
  const stillCommittedNow = <A>(
    listed: TransactionRecord,
    f: (record: TransactionRecord) => Effect.Effect<A, MiningError>
  ): Effect.Effect<A | undefined, MiningError> =>
    keys.withLock(
      listed.key,
      Effect.flatMap(journal.get(listed.transaction_id), (now) =>
        now === undefined || now.state !== "committed" || inFlight.has(now.transaction_id)
          ? Effect.succeed(undefined)
          : f(now))
    )

  /** Checks one committed record: the held one as it is now (or undefined when lost or no longer committed), and whether its block vouches. */
  const check = (listed: TransactionRecord, why: string, lost: Array<TransactionRecord>) =>
    stillCommittedNow(listed, (record) => checkNow(record, why, lost)).pipe(
      Effect.map((checked) => checked ?? { current: undefined, vouches: false })
    )

  const checkNow = Effect.fnUntraced(function*(record: TransactionRecord, why: string, lost: Array<TransactionRecord>) {
    const { held, record: current } = yield* stillHeld(record)
    if (held === "lost") {
      lost.push(yield* markLost(current, why))
      return { current: undefined, vouches: false }
    }
    return { current, vouches: held === "by_block" }
  })

  const ours = (prefix: string, records: ReadonlyArray<TransactionRecord>) =>
    records
      .filter((r) => r.key.startsWith(prefix) && !inFlight.has(r.transaction_id))
      .sort((a, b) => (b.block_number ?? Number.MAX_SAFE_INTEGER) - (a.block_number ?? Number.MAX_SAFE_INTEGER))

  /** The chain's head when the last audit began, and when: what the next audit starts from. */
  const loadCheckpoint = (id: MinerIdentity) =>
    journal.getMeta(checkpointKeyOf(id)).pipe(
      Effect.flatMap((text) =>
        text === undefined
          ? Effect.succeed(undefined)
          : Schema.decodeUnknownEffect(StoredCheckpoint)(text).pipe(Effect.option, Effect.map(Option.getOrUndefined))
      )
    )

  const audit = Effect.fn("ChainAudit.audit")(function*() {
    // Whatever is committed after this instant is checked next time. A second early: a record saved in the same
    // millisecond as the instant, after this audit listed the records, must not fall between two audits.
    const startedAt = new Date((yield* Clock.currentTimeMillis) - 1_000).toISOString()
    // The head now: the next audit's checkpoint.
    const head = yield* guarded(chain.head)
    const id = yield* guarded(chain.identity)
    const reset = yield* identityChanged(id, yield* guarded(chain.fingerprint))
    const prefix = keyPrefixOf(id)
    const lost: Array<TransactionRecord> = []
    let checked = 0
    const held: Array<TransactionRecord> = []
    const why = reset ? "the chain was reset" : undefined
    /** Checks a record; true when its block is there as the journal knew it. */
    const checkOne = Effect.fnUntraced(function*(record: TransactionRecord) {
      checked++
      const { current, vouches } = yield* check(record, why ?? `block ${record.block_number} is gone (reset or reorg)`, lost)
      if (current !== undefined) held.push(current)
      return vouches
    })

    /** The newest older record whose block still holds, once the chain lost blocks: where the histories part. */
    let vouching: TransactionRecord | undefined
    const checkpoint = reset ? undefined : yield* loadCheckpoint(id)
    const checkpointHolds = checkpoint !== undefined &&
      Option.getOrUndefined(yield* guarded(chain.blockHash(BigInt(checkpoint.block_number))))?.toLowerCase() ===
        checkpoint.block_hash.toLowerCase()

    if (checkpoint === undefined) {
      // No checkpoint (a first audit, a journal from before them) or a reset chain: every record is looked at, newest
      // block first; on an unreset chain the first one whose block is there vouches for the older ones.
      for (const record of ours(prefix, yield* journal.list({ state: "committed" }))) {
        if ((yield* checkOne(record)) && !reset) break
      }
    } else {
      // Committed since the checkpoint: each one on its own. A chain that lost its last seconds and went on mining
      // interleaves lost blocks and new ones at the same heights, so no one of them vouches for another.
      const fresh = ours(prefix, yield* journal.list({ state: "committed", updatedAfter: checkpoint.at }))
      for (const record of fresh) yield* checkOne(record)
      if (!checkpointHolds) {
        // The chain lost blocks at or below the checkpoint. The older records were all seen on the old history: the
        // first of them whose block is still there shows where the chains part, and vouches for those below it.
        yield* Effect.logError(`the chain no longer has block ${checkpoint.block_number} as it was: checking older records`)
        const seen = new Set(fresh.map((r) => r.transaction_id))
        const older = ours(prefix, (yield* journal.list({ state: "committed" })).filter((r) => !seen.has(r.transaction_id)))
        for (const record of older) {
          if (yield* checkOne(record)) {
            vouching = record
            break
          }
        }
      }
    }

    // A chunk's completion comes in a later block than its submission, and may be lost with a chain's last seconds
    // alone: every record whose submission was checked here has its completion looked at too (a chain that kept the
    // checkpoint and every submission since may still have lost their completions: CI's chaos run, a devnet killed
    // right after a recovery completed two chunks). Once the chain lost blocks, so has every record completed late
    // (by a recovery) after the record that vouches for its submission.
    const looked = new Set<string>()
    for (const record of held) {
      looked.add(record.transaction_id)
      yield* completionHeld(record)
    }
    if (lost.length > 0 || (checkpoint !== undefined && !checkpointHolds)) {
      if (vouching !== undefined) {
        const since = new Date(Date.parse(vouching.updated_at) - 1_000).toISOString()
        const completedSince = ours(prefix, yield* journal.list({ state: "committed", updatedAfter: since }))
        for (const record of completedSince) if (!looked.has(record.transaction_id)) yield* completionHeld(record)
      }
    }

    yield* journal.setMeta(
      checkpointKeyOf(id),
      JSON.stringify({ block_number: Number(head.number), block_hash: head.hash, at: startedAt })
    )
    const cids = lost.flatMap((r) => (r.ipfs_hash === null ? [] : [r.ipfs_hash]))
    if (cids.length > 0) yield* releaseIfUnreferenced(cids)
    return { reset, lost: lost.map((r) => r.transaction_id), checked } satisfies AuditSummary
  })

  return { audit, markLost }
}

export type ChainAudit = ReturnType<typeof makeChainAudit>
