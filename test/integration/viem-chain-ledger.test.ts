import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { createPublicClient, http, keccak256 } from "viem"
import { privateKeyToAccount } from "viem/accounts"
import { ResourceError } from "../../src/domain/errors.ts"
import type { RunningDevnet } from "../../src/layers/chain/devnet/Devnet.ts"
import { make as makeViemChain } from "../../src/layers/chain/ViemChain.ts"
import { NonceLedger } from "../../src/services/NonceLedger.ts"
import { InMemoryNonceLedger, makeNonceLedgerStore } from "../../src/testing/InMemoryNonceLedger.ts"
import { freshDevnet } from "../support/anvil.ts"
import { chainNonce, submissionFor, tenClaimsAtOnce } from "../support/chainWrites.ts"

/**
 * Two processes signing for one account (issue 18): with the account's nonce ledger, each signed transaction is
 * reserved at its nonce before anything else happens to it, so the two never broadcast different transactions at one
 * nonce; a nonce reserved by a signer that died before sending is filled with its bytes, not skipped.
 */

const ledgerService = (store = makeNonceLedgerStore()) =>
  Layer.build(InMemoryNonceLedger.layer({ store })).pipe(Effect.map((c) => Context.get(c, NonceLedger)))

/** A ledger and its fault control: a ledger that is down (the fleet's Postgres) when a test says so. */
const ledgerWithFaults = () =>
  Layer.build(InMemoryNonceLedger.layer()).pipe(
    Effect.map((c) => ({ ledger: Context.get(c, NonceLedger), control: Context.get(c, InMemoryNonceLedger) }))
  )
const down = new ResourceError({ message: "the fleet's database is down", resource: "journal" })
/** An intent that fails while the ledger is down too (the one Postgres holds both): the reservation stays. */
const failsWithLedgerDown = (control: InMemoryNonceLedger["Service"], message: string) => () =>
  control.setFaults({ replace: { alwaysFail: down }, get: { alwaysFail: down } }).pipe(
    Effect.andThen(Effect.fail(new ResourceError({ message })))
  )

const signerOf = (devnet: RunningDevnet, ledger: NonceLedger["Service"], holder: string) =>
  makeViemChain({
    rpcUrl: devnet.rpcUrl,
    registry: devnet.registry,
    privateKey: Redacted.make(devnet.accounts[1]!.privateKey),
    pollingInterval: "20 millis",
    nonces: { ledger, holder }
  })

describe("ViemChain with the account's nonce ledger, against a real anvil", () => {
  it.live("two signers of one account write at once: every write lands, one transaction per nonce, no gap", () =>
    Effect.gen(function*() {
      const devnet = yield* freshDevnet()
      const ledger = yield* ledgerService()
      const [a, b] = [yield* signerOf(devnet, ledger, "runner-a"), yield* signerOf(devnet, ledger, "runner-b")]
      // Both start from the same chain nonce: without the ledger their first writes collide.
      const rows = yield* tenClaimsAtOnce(devnet, ledger, [a, b])
      assert.sameMembers([...new Set(rows.map((r) => r.holder))], ["runner-a", "runner-b"])
      // The ledger's bytes are what the chain mined at each nonce.
      const client = createPublicClient({ transport: http(devnet.rpcUrl) })
      for (const row of rows) {
        const mined = yield* Effect.promise(() => client.getTransaction({ hash: row.transactionHash as `0x${string}` }))
        assert.strictEqual(mined.nonce, row.nonce)
      }
    }), 120_000)

  it.live("a nonce reserved by a signer that died before sending is sent with its bytes, and the next write lands", () =>
    Effect.gen(function*() {
      const devnet = yield* freshDevnet()
      const ledger = yield* ledgerService()
      const start = yield* chainNonce(devnet)
      // The dead signer's transaction: an empty transfer at the chain's nonce, reserved, never sent.
      const key = devnet.accounts[1]!.privateKey as `0x${string}`
      const account = privateKeyToAccount(key)
      const raw = yield* Effect.promise(() =>
        account.signTransaction({
          chainId: 31337,
          to: account.address,
          value: 0n,
          nonce: start,
          gas: 21_000n,
          maxFeePerGas: 10_000_000_000n,
          maxPriorityFeePerGas: 1_000_000_000n
        })
      )
      yield* ledger.reserve(account.address, 31337, start, { transactionHash: keccak256(raw), signedBytes: raw, holder: "dead" })
      const chain = yield* signerOf(devnet, ledger, "alive")
      const [round] = yield* chain.rounds
      const claim = yield* chain.claimChunk(round!.roundId)
      assert.isAtLeast(claim.chunkId, 0)
      assert.strictEqual(yield* chainNonce(devnet), start + 2)
      const client = createPublicClient({ transport: http(devnet.rpcUrl) })
      const dead = yield* Effect.promise(() => client.getTransactionReceipt({ hash: keccak256(raw) }))
      assert.strictEqual(dead.status, "success")
      // The dead signer's row was taken over (its very bytes, now held by the sender) before they were sent.
      const rows = yield* ledger.list(account.address, 31337, { fromNonce: start })
      assert.deepStrictEqual(rows.map((r) => [r.nonce, r.holder]), [[start, "alive"], [start + 1, "alive"]])
      assert.strictEqual(rows[0]!.transactionHash, keccak256(raw))
      assert.deepStrictEqual(rows[0]!.replacedHashes, [keccak256(raw)])
    }), 120_000)

  it.live("bytes of ours never sent and taken over by another holder are theirs: the next write signs past them and they are sent", () =>
    Effect.gen(function*() {
      const devnet = yield* freshDevnet()
      const { control, ledger } = yield* ledgerWithFaults()
      const chain = yield* signerOf(devnet, ledger, "runner-a")
      const { claim, id, round, submission } = yield* submissionFor(chain, "ab")
      // Signed and reserved, then the intent could not be journaled, the ledger down as well: never sent, and the
      // reservation could not be filled with a no-op: the nonce is still runner-a's.
      const failed = yield* Effect.flip(chain.submitGradient(submission, failsWithLedgerDown(control, "journal full")))
      assert.strictEqual(failed.message, "journal full")
      yield* control.setFaults({})
      const unsentNonce = yield* chainNonce(devnet)
      const row = (yield* ledger.get(id.miner, 31337, unsentNonce))!
      assert.strictEqual(row.holder, "runner-a")
      // Another runner takes the row over (it will send those bytes): runner-a must not replace them now.
      yield* ledger.replace(id.miner, 31337, unsentNonce, { transactionHash: row.transactionHash, holder: "runner-a" }, { ...row, holder: "runner-b" })
      const next = yield* chain.claimChunk(round!.roundId)
      assert.notStrictEqual(next.chunkId, claim.chunkId)
      // Its claim went to the next nonce; the node got the taken-over bytes to fill the one below.
      assert.strictEqual(yield* chainNonce(devnet), unsentNonce + 2)
      assert.isTrue(Option.isSome(yield* chain.getSubmission(round!.roundId, claim.chunkId)))
      // Filling the gap, runner-a took the row back with runner-b's very bytes (its own once): the same hash throughout.
      const rows = yield* ledger.list(id.miner, 31337, { fromNonce: unsentNonce })
      assert.deepStrictEqual(rows.map((r) => [r.nonce, r.holder]), [[unsentNonce, "runner-a"], [unsentNonce + 1, "runner-a"]])
      assert.strictEqual(rows[0]!.transactionHash, row.transactionHash)
      assert.deepStrictEqual(rows[0]!.replacedHashes, [row.transactionHash, row.transactionHash])
    }), 120_000)

  it.live("a submission another signer reserved and never sent (it died) is this write when asked again: its bytes, no second one", () =>
    Effect.gen(function*() {
      // The fleet's chaos test: a runner died between reserving its submission and journaling it; the runner that
      // took its transaction over submitted again at a new nonce, the dead one's bytes were sent by a gap fill, and
      // the chain mined both (the second reverted): two paid submissions of one chunk.
      const devnet = yield* freshDevnet()
      const { control, ledger } = yield* ledgerWithFaults()
      const dead = yield* signerOf(devnet, ledger, "runner-a/boot-1")
      const { claim, id, round, submission } = yield* submissionFor(dead, "cd")
      // It "dies" with the reservation in place: its intent and the no-op over it both fail, and it never writes again.
      yield* Effect.flip(dead.submitGradient(submission, failsWithLedgerDown(control, "killed")))
      yield* control.setFaults({})
      const reservedAt = yield* chainNonce(devnet)
      const reserved = (yield* ledger.get(id.miner, 31337, reservedAt))!
      const taker = yield* signerOf(devnet, ledger, "runner-b/boot-1")
      const journaled: Array<string> = []
      const receipt = yield* taker.submitGradient(submission, (signed) => Effect.sync(() => void journaled.push(signed.hash)))
      assert.deepStrictEqual(journaled, [reserved.transactionHash], "the intent journaled is the reserved transaction")
      assert.strictEqual(receipt.txHash.toLowerCase(), reserved.transactionHash.toLowerCase())
      assert.strictEqual(yield* chainNonce(devnet), reservedAt + 1, "one transaction, not two")
      assert.deepStrictEqual((yield* ledger.list(id.miner, 31337, { fromNonce: reservedAt })).map((r) => r.nonce), [reservedAt])
      // A claim is not named by its arguments: the next one is a transaction of its own.
      const next = yield* taker.claimChunk(round!.roundId)
      assert.notStrictEqual(next.chunkId, claim.chunkId)
    }), 120_000)

  it.live("an intent that fails leaves no bytes a gap fill could send: the nonce is filled with a no-op, the submission never lands", () =>
    Effect.gen(function*() {
      // The fleet's hole before: a runner reserved its submission, its journal intent failed (a Postgres blip), it
      // rolled back and unpinned — and another runner's gap fill sent the reserved bytes: a submission whose
      // gradient nobody pins.
      const devnet = yield* freshDevnet()
      const ledger = yield* ledgerService()
      const chain = yield* signerOf(devnet, ledger, "runner-a")
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
      // Another signer filling gaps finds nothing of it to send; the transaction can be done again, once.
      const other = yield* signerOf(devnet, ledger, "runner-b")
      const receipt = yield* other.submitGradient(submission)
      assert.strictEqual(receipt.alreadySubmitted, false)
      assert.strictEqual(yield* chainNonce(devnet), at + 2)
    }), 120_000)

  it.live("an intent that fails after another signer took the reserved bytes over: they will be sent, so the intent is journaled again and the write goes on", () =>
    Effect.gen(function*() {
      const devnet = yield* freshDevnet()
      const ledger = yield* ledgerService()
      const chain = yield* signerOf(devnet, ledger, "runner-a")
      const { claim, id, round, submission } = yield* submissionFor(chain, "12")
      const intents: Array<string> = []
      let first = true
      const receipt = yield* chain.submitGradient(submission, (signed) =>
        Effect.gen(function*() {
          intents.push(signed.hash)
          if (!first) return
          first = false
          // Meanwhile runner-b, filling a gap, took the row over to send it.
          const row = (yield* ledger.get(id.miner, 31337, signed.nonce))!
          yield* ledger.replace(id.miner, 31337, signed.nonce, { transactionHash: row.transactionHash, holder: row.holder }, { ...row, holder: "runner-b" }).pipe(Effect.orDie)
          return yield* new ResourceError({ message: "journal blip" })
        }))
      assert.strictEqual(intents.length, 2)
      assert.strictEqual(intents[0], intents[1], "the same transaction journaled again")
      assert.strictEqual(receipt.txHash.toLowerCase(), intents[0]!.toLowerCase())
      assert.isTrue(Option.isSome(yield* chain.getSubmission(round.roundId, claim.chunkId)))
    }), 120_000)
})
