import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { type Address, createPublicClient, decodeFunctionData, http } from "viem"
import type { TransactionRecord } from "../../src/domain/TransactionRecord.ts"
import { miningRegistryAbi } from "../../src/layers/chain/MiningRegistryArtifact.ts"
import { HeliaStore } from "../../src/layers/ipfs/HeliaStore.ts"
import { SqliteJournal } from "../../src/layers/journal/SqliteJournal.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { Journal } from "../../src/services/Journal.ts"

/**
 * Helpers of the network-fault and defect end-to-end tests (issue 11): the real miner CLI as a child process, and
 * an audit of what it left, read from the chain through the node's own URL (never through a fault proxy), from the
 * journal (SQLite) and from the pins (the embedded Helia store of the data dir, or a Kubo RPC API).
 */

export { type Exited, minerEnv, program, type Spawned, spawnCli, waitFor } from "./cli.ts"

/** The JSON log lines of a log file (unparsable lines skipped). */
export const logLines = (logFile: string): Array<Record<string, unknown>> =>
  !existsSync(logFile) ? [] : readFileSync(logFile, "utf8").split("\n").flatMap((line) => {
    if (line.trim() === "") return []
    try {
      return [JSON.parse(line) as Record<string, unknown>]
    } catch {
      return []
    }
  })

/** How many "… → committed" state changes the log file holds. */
export const committedInLog = (logFile: string): number =>
  logLines(logFile).filter((l) => typeof l["message"] === "string" && /→ committed/.test(l["message"])).length

/** The monitoring API's URL as the miner logged it ("monitoring API listening on URL"). */
export const statsUrlInLog = (logFile: string): string | undefined => {
  for (const l of logLines(logFile)) {
    const match = typeof l["message"] === "string" ? /monitoring API listening on (\S+)/.exec(l["message"]) : null
    if (match) return match[1]!.replace(/\/$/, "")
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the aftermath.

export interface Claim {
  readonly roundId: bigint
  readonly chunkId: number
  readonly txHash: string
}

export interface Submission extends Claim {
  readonly miner: Address
  readonly cid: string
  readonly gradientHash: string
}

export const chunkKey = (roundId: bigint | string, chunkId: number): string => `${roundId}:${chunkId}`

/** ChunkClaimed events of `miner` and every GradientSubmitted event of the registry, read from `rpcUrl`. */
export const readChain = (rpcUrl: string, registry: Address, miner: Address) =>
  Effect.promise(async () => {
    const client = createPublicClient({ transport: http(rpcUrl, { retryCount: 3 }) })
    const claimedLogs = await client.getContractEvents({
      address: registry,
      abi: miningRegistryAbi,
      eventName: "ChunkClaimed",
      args: { miner },
      fromBlock: 0n,
      strict: true
    })
    const submittedLogs = await client.getContractEvents({
      address: registry,
      abi: miningRegistryAbi,
      eventName: "GradientSubmitted",
      fromBlock: 0n,
      strict: true
    })
    const claims: Array<Claim> = claimedLogs.map((l) => ({
      roundId: l.args.roundId,
      chunkId: Number(l.args.chunkId),
      txHash: l.transactionHash
    }))
    const submissions: Array<Submission> = submittedLogs.map((l) => ({
      roundId: l.args.roundId,
      chunkId: Number(l.args.chunkId),
      miner: l.args.miner,
      cid: l.args.cid,
      gradientHash: l.args.gradientHash,
      txHash: l.transactionHash
    }))
    return { claims, submissions }
  })

/** A registry call the miner's account sent and the chain mined (successful or reverted). */
export interface MinedCall {
  readonly functionName: string
  readonly roundId: bigint | undefined
  readonly chunkId: number | undefined
  readonly txHash: string
  readonly nonce: number
  readonly success: boolean
}

/**
 * Every transaction from `miner` to `registry` in the chain's blocks, decoded, with its receipt status: a chunk
 * with two mined submitGradient transactions (the second reverted AlreadySubmitted, paid for nonetheless) was
 * submitted twice, which GradientSubmitted events alone cannot show.
 */
export const readMinedCalls = (rpcUrl: string, registry: Address, miner: Address) =>
  Effect.promise(async () => {
    const client = createPublicClient({ transport: http(rpcUrl, { retryCount: 3 }) })
    const latest = await client.getBlockNumber()
    const calls: Array<MinedCall> = []
    for (let n = 0n; n <= latest; n++) {
      const block = await client.getBlock({ blockNumber: n, includeTransactions: true })
      for (const tx of block.transactions) {
        if (tx.from.toLowerCase() !== miner.toLowerCase() || tx.to?.toLowerCase() !== registry.toLowerCase()) continue
        const receipt = await client.getTransactionReceipt({ hash: tx.hash })
        let functionName = "(undecodable)"
        let args: ReadonlyArray<unknown> = []
        try {
          const decoded = decodeFunctionData({ abi: miningRegistryAbi, data: tx.input })
          functionName = decoded.functionName
          args = (decoded.args ?? []) as ReadonlyArray<unknown>
        } catch {
          // kept as undecodable
        }
        calls.push({
          functionName,
          roundId: typeof args[0] === "bigint" ? args[0] : undefined,
          chunkId: typeof args[1] === "number" ? args[1] : typeof args[1] === "bigint" ? Number(args[1]) : undefined,
          txHash: tx.hash,
          nonce: tx.nonce,
          success: receipt.status === "success"
        })
      }
    }
    return calls
  })

/** Every journal record of the data dir (read with the miner's own adapter, after the miner exited). */
export const readJournal = (dataDir: string) =>
  Effect.gen(function*() {
    const journal = yield* Journal
    return yield* journal.list({ limit: 1_000_000 })
  }).pipe(Effect.provide(SqliteJournal.layer({ path: join(dataDir, "journal.sqlite") })), Effect.scoped)

/** The pins of the embedded store of the data dir (after the miner exited). */
export const readHeliaPins = (dataDir: string) =>
  Effect.gen(function*() {
    return yield* (yield* GradientStore).pins
  }).pipe(Effect.provide(HeliaStore.layer({ dataDir })), Effect.scoped)

/** The recursive pins of a Kubo RPC API. */
export const readKuboPins = (api: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${api}/api/v0/pin/ls?type=recursive`, { method: "POST" })
    const { Keys } = (await response.json()) as { Keys: Record<string, unknown> }
    return Object.keys(Keys)
  })

export interface Audit {
  readonly problems: ReadonlyArray<string>
  /** Facts worth printing that are not failures of the invariants asked for. */
  readonly notes: ReadonlyArray<string>
  readonly figures: {
    readonly claims: number
    readonly submissions: number
    readonly records: number
    readonly committed: number
    readonly committedOnChain: number
    readonly rolledBack: number
    readonly failed: number
    readonly nonTerminal: number
    readonly pins: number
  }
}

const terminal = new Set(["committed", "failed", "rolled_back"])

/**
 * Issue 11's invariants for one miner's run:
 * - every GradientSubmitted of the miner has its CID pinned and one committed journal record naming it;
 * - no chunk has two submissions (events, and with `calls`, mined submitGradient transactions of the miner); no
 *   committed record lacks the on-chain submission;
 * - no chunk abandoned: every ChunkClaimed of the miner has the miner's submission, or a journal record that ended
 *   rolled_back/failed (a claim the miner never worked on is abandoned);
 * - no journal record left non-terminal.
 */
export const audit = (input: {
  readonly miner: Address
  readonly claims: ReadonlyArray<Claim>
  readonly submissions: ReadonlyArray<Submission>
  readonly records: ReadonlyArray<TransactionRecord>
  readonly pins: ReadonlyArray<string>
  /** The miner's mined registry calls (readMinedCalls), when read: then a second submitGradient of a chunk is a problem. */
  readonly calls?: ReadonlyArray<MinedCall>
}): Audit => {
  const problems: Array<string> = []
  const notes: Array<string> = []
  const mine = (a: string) => a.toLowerCase() === input.miner.toLowerCase()
  const pins = new Set(input.pins)
  const ours = input.submissions.filter((s) => mine(s.miner))
  const submissionsByChunk = new Map<string, Array<Submission>>()
  for (const s of input.submissions) {
    const k = chunkKey(s.roundId, s.chunkId)
    submissionsByChunk.set(k, [...(submissionsByChunk.get(k) ?? []), s])
  }
  const recordsByChunk = new Map<string, Array<TransactionRecord>>()
  for (const r of input.records) {
    const k = chunkKey(r.round_id, r.chunk_id)
    recordsByChunk.set(k, [...(recordsByChunk.get(k) ?? []), r])
  }

  for (const [k, list] of submissionsByChunk) {
    if (list.length > 1) problems.push(`chunk ${k} has ${list.length} GradientSubmitted events`)
  }
  for (const s of ours) {
    const k = chunkKey(s.roundId, s.chunkId)
    const records = recordsByChunk.get(k) ?? []
    const committed = records.filter((r) => r.state === "committed")
    if (!pins.has(s.cid)) {
      const states = records.map((r) => `${r.transaction_id} ${r.state}${r.failed_step ? ` at ${r.failed_step}` : ""}`)
      problems.push(`chunk ${k}: submission ${s.txHash} on chain, its CID ${s.cid} is not pinned (journal: ${states.join(", ") || "no record"})`)
    }
    if (committed.length !== 1) {
      const states = records.map((r) => `${r.transaction_id} ${r.state}${r.failed_step ? ` at ${r.failed_step}` : ""}${r.error_message ? ` (${r.error_message.slice(0, 160)})` : ""}`)
      problems.push(`chunk ${k}: submission ${s.txHash} on chain, ${committed.length} committed journal records (journal: ${states.join("; ") || "no record"})`)
    } else if (committed[0]!.ipfs_hash !== s.cid) {
      problems.push(`chunk ${k}: the committed record ${committed[0]!.transaction_id} names ${committed[0]!.ipfs_hash}, the chain ${s.cid}`)
    }
  }
  for (const r of input.records) {
    const k = chunkKey(r.round_id, r.chunk_id)
    if (r.state === "committed" && !(submissionsByChunk.get(k) ?? []).some((s) => mine(s.miner))) {
      problems.push(`record ${r.transaction_id} (chunk ${k}) is committed, but the chain has no submission of ours`)
    }
    if (!terminal.has(r.state)) problems.push(`record ${r.transaction_id} (chunk ${k}) is left at ${r.state}`)
  }
  const claimKeys = new Map<string, Claim>()
  for (const c of input.claims) {
    const k = chunkKey(c.roundId, c.chunkId)
    if (claimKeys.has(k)) notes.push(`chunk ${k} claimed more than once (${claimKeys.get(k)!.txHash}, ${c.txHash})`)
    claimKeys.set(k, c)
  }
  for (const [k, c] of claimKeys) {
    if ((submissionsByChunk.get(k) ?? []).some((s) => mine(s.miner))) continue
    const ended = (recordsByChunk.get(k) ?? []).filter((r) => r.state === "rolled_back" || r.state === "failed")
    if (ended.length === 0) problems.push(`chunk ${k} abandoned: claimed by us (${c.txHash}), no submission and no rolled_back/failed record`)
  }
  if (input.calls !== undefined) {
    const submitsByChunk = new Map<string, Array<MinedCall>>()
    for (const c of input.calls.filter((c) => c.functionName === "submitGradient" && c.roundId !== undefined)) {
      const k = chunkKey(c.roundId!, c.chunkId!)
      submitsByChunk.set(k, [...(submitsByChunk.get(k) ?? []), c])
    }
    for (const [k, list] of submitsByChunk) {
      if (list.length > 1) {
        problems.push(
          `chunk ${k} submitted twice: ${list.length} submitGradient transactions mined (${
            list.map((c) => `${c.txHash.slice(0, 12)}… nonce ${c.nonce} ${c.success ? "ok" : "reverted"}`).join(", ")
          })`
        )
      }
    }
    const reverted = input.calls.filter((c) => !c.success)
    if (reverted.length > 0) {
      notes.push(`${reverted.length} reverted registry calls of the miner: ${reverted.map((c) => `${c.functionName}(${c.roundId ?? "?"}:${c.chunkId ?? "?"})`).join(", ")}`)
    }
  }
  const referenced = new Set(input.records.flatMap((r) => (r.state === "committed" && r.ipfs_hash !== null ? [r.ipfs_hash] : [])))
  const unreferenced = input.pins.filter((p) => !referenced.has(p))
  if (unreferenced.length > 0) notes.push(`${unreferenced.length} pins no committed record names (e.g. ${unreferenced[0]})`)

  const committed = input.records.filter((r) => r.state === "committed")
  return {
    problems,
    notes,
    figures: {
      claims: input.claims.length,
      submissions: ours.length,
      records: input.records.length,
      committed: committed.length,
      committedOnChain: committed.filter((r) =>
        (submissionsByChunk.get(chunkKey(r.round_id, r.chunk_id)) ?? []).some((s) => mine(s.miner) && s.cid === r.ipfs_hash)
      ).length,
      rolledBack: input.records.filter((r) => r.state === "rolled_back").length,
      failed: input.records.filter((r) => r.state === "failed").length,
      nonTerminal: input.records.filter((r) => !terminal.has(r.state)).length,
      pins: input.pins.length
    }
  }
}
