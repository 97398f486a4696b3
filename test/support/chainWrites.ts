import { assert } from "@effect/vitest"
import { Effect } from "effect"
import { createPublicClient, http } from "viem"
import { Submission } from "../../src/domain/mining.ts"
import { solveReference } from "../../src/domain/pow.ts"
import type { RunningDevnet } from "../../src/layers/chain/devnet/Devnet.ts"
import type { Chain } from "../../src/services/Chain.ts"
import type { NonceLedger } from "../../src/services/NonceLedger.ts"

/** Writes of the devnet's account 1 for the chain adapter's tests (nonce ledger, the account's signer). */

/** The account's nonce on the devnet, mined transactions only. */
export const chainNonce = (devnet: RunningDevnet) =>
  Effect.promise(() =>
    createPublicClient({ transport: http(devnet.rpcUrl) }).getTransactionCount({
      address: devnet.accounts[1]!.address as `0x${string}`,
      blockTag: "latest"
    })
  )

/** A submission of the chunk just claimed, with a made-up gradient (the chain cannot tell). */
export const submissionFor = Effect.fnUntraced(function*(chain: Chain["Service"], byte: string) {
  const id = yield* chain.identity
  const [round] = yield* chain.rounds
  const claim = yield* chain.claimChunk(round!.roundId)
  const gradientHash = `0x${byte.repeat(32)}`
  const cid = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
  const solution = yield* solveReference({ ...id, roundId: round!.roundId, chunkId: claim.chunkId, gradientHash, cid, difficulty: round!.difficulty })
  return { id, round: round!, claim, submission: new Submission({ roundId: round!.roundId, chunkId: claim.chunkId, cid, gradientHash, powNonce: solution.nonce }) }
})

/**
 * Five claims by each of two writers of the account at once: ten chunks, ten transactions mined, the ledger's rows at
 * ten contiguous nonces from the chain's nonce before (returned).
 */
export const tenClaimsAtOnce = Effect.fnUntraced(function*(
  devnet: RunningDevnet,
  ledger: NonceLedger["Service"],
  writers: readonly [Chain["Service"], Chain["Service"]]
) {
  const [round] = yield* writers[0].rounds
  const start = yield* chainNonce(devnet)
  const claims = yield* Effect.all(
    writers.flatMap((chain) => Array.from({ length: 5 }, () => chain.claimChunk(round!.roundId))),
    { concurrency: "unbounded" }
  )
  assert.strictEqual(new Set(claims.map((c) => c.chunkId)).size, 10)
  assert.strictEqual(yield* chainNonce(devnet), start + 10)
  const rows = yield* ledger.list(devnet.accounts[1]!.address, 31337, { fromNonce: start })
  assert.deepStrictEqual(rows.map((r) => r.nonce), Array.from({ length: 10 }, (_, i) => start + i))
  return rows
})
