import { Effect, Option } from "effect"
import { createPublicClient } from "viem"
import type { MiningError } from "../domain/errors.ts"
import { journalLayer, journalPath } from "../app/adapters.ts"
import { miningRegistryAbi } from "../layers/chain/MiningRegistryArtifact.ts"
import { rpcTransport } from "../layers/chain/rpcTransport.ts"
import { fromViemError } from "../layers/chain/viemErrors.ts"
import { Journal } from "../services/Journal.ts"
import { existsSync } from "node:fs"

/**
 * Where `gradient inspect` finds the gradient hash recorded for a CID, without --expect-hash: the GradientSubmitted
 * events of the configured chain (R3MES_RPC_URL, R3MES_REGISTRY_ADDRESS), else the journal of the data dir, which
 * holds the submission of every transaction its miner committed on the data dir's devnet (that devnet runs only
 * inside a miner, so the journal is what is left to read when none runs).
 */

/** A submission that names the CID, as recorded. */
export interface RecordedSubmission {
  readonly source: "chain" | "journal"
  readonly round_id: string
  readonly chunk_id: number
  readonly gradient_hash: string
  readonly block_number: string | null
  readonly tx_hash: string | null
  /** The submitting miner's address (chain), or the journal's transaction id. */
  readonly by: string
}

/** Blocks asked for per eth_getLogs: within the range most providers accept. */
export const logWindow = 10_000n
/** How far back the chain is scanned: a bound on the requests, which an operator with an older CID raises. */
export const scannedBlocks = 200_000n

/** The newest GradientSubmitted of `registry` naming `cid`, in the last `scannedBlocks` blocks. */
export const findOnChain = Effect.fnUntraced(function*(rpcUrl: string, registry: string, cid: string) {
  const transport = yield* rpcTransport(rpcUrl)
  const client = createPublicClient({ transport })
  const latest = yield* Effect.tryPromise({
    try: () => client.getBlockNumber(),
    catch: (e) => fromViemError(e, "reading the chain's latest block")
  })
  const oldest = latest >= scannedBlocks ? latest - scannedBlocks + 1n : 0n
  for (let toBlock = latest; toBlock >= oldest; toBlock -= logWindow) {
    const fromBlock = toBlock - logWindow + 1n > oldest ? toBlock - logWindow + 1n : oldest
    const logs = yield* Effect.tryPromise({
      try: () =>
        client.getContractEvents({
          abi: miningRegistryAbi,
          address: registry as `0x${string}`,
          eventName: "GradientSubmitted",
          fromBlock,
          toBlock
        }),
      catch: (e) => fromViemError(e, `reading GradientSubmitted events of blocks ${fromBlock}..${toBlock}`)
    })
    const found = logs.reverse().find((log) => (log.args as { cid?: string }).cid === cid)
    if (found !== undefined) {
      const args = found.args as { roundId: bigint; chunkId: number; miner: string; gradientHash: string }
      return Option.some<RecordedSubmission>({
        source: "chain",
        round_id: args.roundId.toString(),
        chunk_id: Number(args.chunkId),
        gradient_hash: args.gradientHash.toLowerCase(),
        block_number: found.blockNumber?.toString() ?? null,
        tx_hash: found.transactionHash ?? null,
        by: args.miner
      })
    }
    if (fromBlock === 0n) break
  }
  return Option.none<RecordedSubmission>()
}, Effect.scoped)

/** The journal's committed transaction that pinned `cid` (among its latest 1000), read-only; none without a journal. */
export const findInJournal = (dataDir: string, cid: string): Effect.Effect<Option.Option<RecordedSubmission>, MiningError> => {
  if (!existsSync(journalPath(dataDir))) return Effect.succeed(Option.none())
  return Journal.use((journal) => journal.list({ state: "committed", limit: 1000 })).pipe(
    Effect.map((records) =>
      Option.fromNullishOr(records.find((r) => r.ipfs_hash === cid && r.gradient_hash !== null)).pipe(
        Option.map((r): RecordedSubmission => ({
          source: "journal",
          round_id: String(r.round_id),
          chunk_id: r.chunk_id,
          gradient_hash: r.gradient_hash!.toLowerCase(),
          block_number: r.block_number === null ? null : String(r.block_number),
          tx_hash: r.blockchain_tx_hash,
          by: r.transaction_id
        }))
      )
    ),
    Effect.provide(journalLayer(dataDir, { readOnly: true }))
  )
}
