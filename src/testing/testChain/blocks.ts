import { sha256Hex } from "../../layers/sha256Hex.ts"

/**
 * The test chain's blocks: numbers from 1 above the genesis (block 0), and hashes that depend on the chain (`reset`)
 * and on the fork (`rewindTo`), so a chain that lost blocks gives its new blocks other hashes, as a restarted devnet
 * or a reorg does. Each block keeps the chain time it was mined at (never before its parent's, as on anvil).
 */
export const makeBlocks = () => {
  let head = 0n
  let fork = 0
  let genesis = 0
  const hashes = new Map<bigint, string>()
  const times = new Map<bigint, number>()
  // The fingerprint names the genesis, as block 1 of a fresh anvil names it as its parent.
  const genesisHash = () => sha256Hex(`genesis:${genesis}`)
  hashes.set(0n, genesisHash())

  return {
    head: () => head,
    /** Bumped by every rewind: transaction hashes of claims made again on the new fork differ. */
    fork: () => fork,
    genesisHash,
    /** The hash of a block up to the head; undefined past it. */
    hashOf: (block: bigint): string | undefined => hashes.get(block),
    /** The timestamp (Unix seconds) of a block up to the head; undefined past it (0 for the genesis). */
    timeOf: (block: bigint): number | undefined => (block === 0n ? 0 : times.get(block)),
    /** Mines the next block at chain time `now` (Unix seconds) and returns its number. */
    mine: (now: number): bigint => {
      const parentTime = times.get(head) ?? 0
      head += 1n
      hashes.set(head, sha256Hex(`block:${genesis}:${fork}:${head}`))
      times.set(head, Math.max(now, parentTime))
      return head
    },
    /** Every block after `target` is gone; the next ones are another fork's. */
    rewindTo: (target: bigint): void => {
      for (const block of [...hashes.keys()]) {
        if (block > target) {
          hashes.delete(block)
          times.delete(block)
        }
      }
      head = target
      fork++
    },
    /** A new chain: another genesis, nothing above it. */
    reset: (): void => {
      hashes.clear()
      times.clear()
      head = 0n
      genesis++
      hashes.set(0n, genesisHash())
    }
  }
}

export type Blocks = ReturnType<typeof makeBlocks>
