import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { createPublicClient, http } from "viem"
import { ResourceError, RetryableError } from "../../src/domain/errors.ts"
import type { RunningDevnet } from "../../src/layers/chain/devnet/Devnet.ts"
import { make as makeViemChain, makeWithSigner } from "../../src/layers/chain/ViemChain.ts"
import { type AccountSigning, lendPatienceMs } from "../../src/services/AccountSigning.ts"
import { NonceLedger } from "../../src/services/NonceLedger.ts"
import { InMemoryNonceLedger } from "../../src/testing/InMemoryNonceLedger.ts"
import { freshDevnet } from "../support/anvil.ts"
import { chainNonce, submissionFor, tenClaimsAtOnce } from "../support/chainWrites.ts"

/**
 * The account's signer serving other writers (issue 18, the fleet on Effect's cluster): the writer of the runner that
 * hosts the signer entity lends signed, reserved bytes to callers, who journal and broadcast them. Here without the
 * cluster (its transport is accountSigner.ts's, tested by test/e2e/fleet-signer.test.ts): the callers reach the
 * host's `signer` directly, through a wrapper that can lose answers. Against a real anvil.
 */

const ledgerService = () => Layer.build(InMemoryNonceLedger.layer()).pipe(Effect.map((c) => Context.get(c, NonceLedger)))

const endpoint = (devnet: RunningDevnet) => ({
  rpcUrl: devnet.rpcUrl,
  registry: devnet.registry,
  privateKey: Redacted.make(devnet.accounts[1]!.privateKey),
  pollingInterval: "20 millis" as const
})

/** The host's signing side, and callers whose every write it signs. */
const fleetOf = Effect.fnUntraced(function*(devnet: RunningDevnet, reach: (host: AccountSigning) => AccountSigning = (h) => h) {
  const ledger = yield* ledgerService()
  const host = yield* makeWithSigner({ ...endpoint(devnet), nonces: { ledger, holder: "runner-a/host" } })
  const remote = reach(host.signer)
  const caller = (name: string) => makeViemChain({ ...endpoint(devnet), nonces: { ledger, holder: `${name}/boot` }, remote })
  return { ledger, signer: host.signer, caller }
})

describe("ViemChain signing through the account's signer, against a real anvil", () => {
  it.live("two callers write at once through one signer: every write lands, one transaction per nonce, all the signer's", () =>
    Effect.gen(function*() {
      const devnet = yield* freshDevnet()
      const { caller, ledger } = yield* fleetOf(devnet)
      const [b, c] = [yield* caller("runner-b"), yield* caller("runner-c")]
      const rows = yield* tenClaimsAtOnce(devnet, ledger, [b, c])
      assert.deepStrictEqual([...new Set(rows.map((r) => r.holder))], ["runner-a/host"], "one signer, no race")
    }), 120_000)

  it.live("an intent that fails is given back: the signer fills the nonce with a no-op, the submission never lands", () =>
    Effect.gen(function*() {
      const devnet = yield* freshDevnet()
      const { caller, ledger } = yield* fleetOf(devnet)
      const chain = yield* caller("runner-b")
      const { claim, id, round, submission } = yield* submissionFor(chain, "ef")
      const at = yield* chainNonce(devnet)
      const failed = yield* Effect.flip(chain.submitGradient(submission, () => Effect.fail(new ResourceError({ message: "journal blip" }))))
      assert.strictEqual(failed.message, "journal blip", "the intent's failure is the caller's to undo")
      assert.strictEqual(yield* chainNonce(devnet), at + 1, "the nonce is used, by a no-op")
      const row = (yield* ledger.get(id.miner, 31337, at))!
      const client = createPublicClient({ transport: http(devnet.rpcUrl) })
      const mined = yield* Effect.promise(() => client.getTransaction({ hash: row.transactionHash as `0x${string}` }))
      assert.strictEqual(mined.to?.toLowerCase(), id.miner.toLowerCase(), "the ledger holds the no-op, mined there")
      assert.isTrue(Option.isNone(yield* chain.getSubmission(round.roundId, claim.chunkId)))
      // Done again, once.
      const receipt = yield* chain.submitGradient(submission)
      assert.strictEqual(receipt.alreadySubmitted, false)
      assert.strictEqual(yield* chainNonce(devnet), at + 2)
    }), 120_000)

  it.live("a lend whose answer is lost: the write asked again gets the same bytes, and the chain one submission", () =>
    Effect.gen(function*() {
      const devnet = yield* freshDevnet()
      // The signer lends, and its answer never reaches the caller (the network, the signer's runner killed after).
      let lose = false
      const { caller, ledger } = yield* fleetOf(devnet, (host) => ({
        ...host,
        lend: (call) =>
          host.lend(call).pipe(Effect.flatMap((lent) =>
            lose ? Effect.sync(() => (lose = false)).pipe(Effect.andThen(Effect.fail(new RetryableError({ message: "answer lost" })))) : Effect.succeed(lent)
          ))
      }))
      const chain = yield* caller("runner-b")
      const { id, submission } = yield* submissionFor(chain, "cd")
      const at = yield* chainNonce(devnet)
      lose = true
      const lost = yield* Effect.flip(chain.submitGradient(submission))
      assert.strictEqual(lost.message, "answer lost")
      const journaled: Array<string> = []
      const receipt = yield* chain.submitGradient(submission, (signed) => Effect.sync(() => void journaled.push(signed.hash)))
      const reserved = (yield* ledger.get(id.miner, 31337, at))!
      assert.deepStrictEqual(journaled, [reserved.transactionHash], "the intent journaled is the bytes lent before")
      assert.strictEqual(receipt.txHash.toLowerCase(), reserved.transactionHash.toLowerCase())
      assert.strictEqual(yield* chainNonce(devnet), at + 1, "one transaction, not two")
    }), 120_000)

  it.live("a caller silent past its lend: the signer sends its bytes for it (they may be journaled), and a late release keeps them", () =>
    Effect.gen(function*() {
      const devnet = yield* freshDevnet()
      const { caller, signer } = yield* fleetOf(devnet)
      const chain = yield* caller("runner-b")
      const [round] = yield* chain.rounds
      const at = yield* chainNonce(devnet)
      // A caller that got its bytes and went silent (killed, frozen) before sending them.
      const { data } = yield* Effect.promise(async () => {
        const { encodeFunctionData } = await import("viem")
        const { miningRegistryAbi } = await import("../../src/layers/chain/MiningRegistryArtifact.ts")
        return { data: encodeFunctionData({ abi: miningRegistryAbi, functionName: "claimChunk", args: [round!.roundId] } as never) }
      })
      const silent = yield* signer.lend({ functionName: "claimChunk", data, gas: 300_000n, idempotent: false })
      assert.strictEqual(silent.signed.nonce, at)
      // The next write lands behind it: its wait fills the gap once the lend has run out.
      const started = Date.now()
      yield* chain.claimChunk(round!.roundId)
      assert.isAtLeast(Date.now() - started, lendPatienceMs - 500, "the silent caller was given its patience first")
      assert.strictEqual(yield* chainNonce(devnet), at + 2, "both mined: the silent one's bytes and the next write")
      assert.strictEqual(yield* signer.release(silent.signed), "kept", "too late to undo: they are on chain")
    }), 120_000)
})
