import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option, Redacted, Scope } from "effect"
import { createWalletClient, defineChain, http } from "viem"
import { privateKeyToAccount } from "viem/accounts"
import { type MiningError, ResourceError } from "../../src/domain/errors.ts"
import { type MinerIdentity, type SignedTransaction, Submission } from "../../src/domain/mining.ts"
import { bytesToHex, challenge, meetsDifficulty, powHash, solveReference } from "../../src/domain/pow.ts"
import { freePort } from "../../src/layers/chain/devnet/Anvil.ts"
import type { RunningDevnet } from "../../src/layers/chain/devnet/Devnet.ts"
import { miningRegistryAbi } from "../../src/layers/chain/MiningRegistryArtifact.ts"
import { make as makeViemChain } from "../../src/layers/chain/ViemChain.ts"
import { fromViemError } from "../../src/layers/chain/viemErrors.ts"
import type { Chain } from "../../src/services/Chain.ts"
import { freshDevnet } from "../support/anvil.ts"
import { settledStatus } from "../support/chainContract.ts"

const CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
const hash = (byte: string) => `0x${byte.repeat(32)}`

const chainFor = (devnet: RunningDevnet, account = 1) =>
  makeViemChain({
    rpcUrl: devnet.rpcUrl,
    registry: devnet.registry,
    privateKey: Redacted.make(devnet.accounts[account]!.privateKey),
    pollingInterval: "20 millis"
  })

const rpc = (devnet: RunningDevnet, method: string, params: ReadonlyArray<unknown>) =>
  Effect.promise(() =>
    fetch(devnet.rpcUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params })
    }).then((r) => r.json())
  )

const increaseTime = (devnet: RunningDevnet, seconds: number) =>
  Effect.andThen(rpc(devnet, "evm_increaseTime", [seconds]), rpc(devnet, "evm_mine", []))

/** A valid proof of work for the submission at the given difficulty, found by the reference solver. */
const prove = (id: MinerIdentity, roundId: bigint, chunkId: number, gradientHash: string, difficulty: number) =>
  solveReference({ ...id, roundId, chunkId, gradientHash, cid: CID, difficulty }).pipe(
    Effect.map((solution) => new Submission({ roundId, chunkId, cid: CID, gradientHash, powNonce: solution.nonce }))
  )

const setup = Effect.gen(function*() {
  const devnet = yield* freshDevnet()
  const chain: Chain["Service"] = yield* chainFor(devnet)
  const id = yield* chain.identity
  const [round] = yield* chain.rounds
  return { devnet, chain, id, round: round! }
})

const revertName = (error: MiningError) => (error._tag === "ChainRevertError" ? error.errorName : error._tag)

describe("ViemChain against a real anvil", () => {
  it.live("happy path: claim, submit with PoW, complete; events and views read back", () =>
    Effect.gen(function*() {
      const { chain, devnet, id, round } = yield* setup
      assert.strictEqual(id.chainId, 31337)
      assert.strictEqual(id.miner, devnet.accounts[1]!.address)
      assert.strictEqual(round.difficulty, 16)
      assert.include(round.spec, "dataset_seed")
      const claim = yield* chain.claimChunk(round.roundId)
      assert.strictEqual(claim.chunkId, 0)
      assert.strictEqual(claim.miner, id.miner)
      const submission = yield* prove(id, round.roundId, claim.chunkId, hash("ab"), round.difficulty)
      const receipt = yield* chain.submitGradient(submission)
      assert.isFalse(receipt.alreadySubmitted)
      const onChain = Option.getOrThrow(yield* chain.getSubmission(round.roundId, claim.chunkId))
      assert.strictEqual(onChain.cid, CID)
      assert.strictEqual(onChain.gradientHash, hash("ab"))
      assert.strictEqual(onChain.powNonce, submission.powNonce)
      assert.strictEqual(onChain.blockNumber, receipt.blockNumber)
      assert.isFalse(onChain.completed)
      assert.isTrue(yield* chain.completeChunk(round.roundId, claim.chunkId))
      assert.isTrue(Option.getOrThrow(yield* chain.getSubmission(round.roundId, claim.chunkId)).completed)
      assert.isTrue(Option.isNone(yield* chain.getSubmission(round.roundId, 1)))
      const after = Option.getOrThrow(yield* chain.getRound(round.roundId))
      assert.strictEqual(after.submittedCount, 1)
    }).pipe(Effect.scoped))

  it.live("a nonce with too few zero bits is refused: InsufficientWork, decoded with its args", () =>
    Effect.gen(function*() {
      const { chain, id, round } = yield* setup
      const claim = yield* chain.claimChunk(round.roundId)
      const c = challenge({ ...id, roundId: round.roundId, chunkId: claim.chunkId, gradientHash: hash("cd"), cid: CID })
      let nonce = 0n
      while (meetsDifficulty(powHash(c, nonce), round.difficulty)) nonce++
      const error = yield* Effect.flip(
        chain.submitGradient(
          new Submission({ roundId: round.roundId, chunkId: claim.chunkId, cid: CID, gradientHash: hash("cd"), powNonce: nonce })
        )
      )
      assert.strictEqual(revertName(error), "InsufficientWork")
      if (error._tag === "ChainRevertError") {
        assert.strictEqual(error.args[0], bytesToHex(powHash(c, nonce)))
        assert.strictEqual(error.args[1], "16")
      }
    }).pipe(Effect.scoped))

  it.live("duplicate: AlreadySubmitted names the holder and its hash (the core decides it is ours); events agree", () =>
    Effect.gen(function*() {
      const { chain, devnet, id, round } = yield* setup
      const claim = yield* chain.claimChunk(round.roundId)
      const submission = yield* prove(id, round.roundId, claim.chunkId, hash("11"), round.difficulty)
      const first = yield* chain.submitGradient(submission)
      const again = yield* Effect.flip(chain.submitGradient(submission))
      assert.strictEqual(revertName(again), "AlreadySubmitted")
      assert.deepStrictEqual(again._tag === "ChainRevertError" ? again.args.slice(2).map((a) => a.toLowerCase()) : [], [
        id.miner.toLowerCase(),
        hash("11")
      ])
      const held = Option.getOrThrow(yield* chain.getSubmission(round.roundId, claim.chunkId))
      assert.strictEqual(held.txHash, first.txHash)
      assert.strictEqual(held.blockHash, first.blockHash)
      assert.strictEqual(Option.getOrThrow(yield* chain.blockHash(first.blockNumber)), first.blockHash)
      assert.deepStrictEqual((yield* chain.ownSubmissions).map((s) => s.txHash), [first.txHash])
      const other = yield* prove(id, round.roundId, claim.chunkId, hash("22"), round.difficulty)
      assert.strictEqual(revertName(yield* Effect.flip(chain.submitGradient(other))), "AlreadySubmitted")
      // Another miner resubmitting the same chunk is refused too.
      const stranger = yield* chainFor(devnet, 2)
      const theirs = yield* prove(yield* stranger.identity, round.roundId, claim.chunkId, hash("11"), round.difficulty)
      assert.strictEqual(revertName(yield* Effect.flip(stranger.submitGradient(theirs))), "AlreadySubmitted")
    }).pipe(Effect.scoped))

  it.live("an expired lease is refused (LeaseExpired) and the chunk can be claimed again by another miner", () =>
    Effect.gen(function*() {
      const { chain, devnet, id, round } = yield* setup
      const claim = yield* chain.claimChunk(round.roundId)
      const submission = yield* prove(id, round.roundId, claim.chunkId, hash("33"), round.difficulty)
      yield* increaseTime(devnet, devnet.leaseSeconds + 5)
      assert.strictEqual(revertName(yield* Effect.flip(chain.submitGradient(submission))), "LeaseExpired")
      // Round 1 still has never-claimed chunks: those go first; the expired one comes back once they are gone.
      const other = yield* chainFor(devnet, 2)
      const reclaimed = yield* other.claimChunk(round.roundId)
      assert.strictEqual(reclaimed.chunkId, 1)
    }).pipe(Effect.scoped))

  it.live("a round past its deadline refuses submissions (RoundExpired)", () =>
    Effect.gen(function*() {
      const { chain, devnet, id, round } = yield* setup
      const claim = yield* chain.claimChunk(round.roundId)
      const submission = yield* prove(id, round.roundId, claim.chunkId, hash("44"), round.difficulty)
      yield* increaseTime(devnet, 3600 + 10)
      assert.strictEqual(revertName(yield* Effect.flip(chain.submitGradient(submission))), "RoundExpired")
      assert.strictEqual(revertName(yield* Effect.flip(chain.claimChunk(round.roundId))), "RoundExpired")
    }).pipe(Effect.scoped))

  it.live("openRound from a miner (not the owner) reverts with NotOwner", () =>
    Effect.gen(function*() {
      const { devnet } = yield* setup
      const account = privateKeyToAccount(devnet.accounts[1]!.privateKey)
      const chain = defineChain({
        id: devnet.chainId,
        name: "devnet",
        nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
        rpcUrls: { default: { http: [devnet.rpcUrl] } }
      })
      const wallet = createWalletClient({ chain, account, transport: http(devnet.rpcUrl) })
      const error = yield* Effect.tryPromise({
        try: () =>
          wallet.writeContract({
            address: devnet.registry,
            abi: miningRegistryAbi,
            functionName: "openRound",
            args: [99n, CID, "{}", 4, 16, 4_000_000_000n]
          }),
        catch: (e) => fromViemError(e, "openRound")
      }).pipe(Effect.flip)
      assert.strictEqual(revertName(error), "NotOwner")
    }).pipe(Effect.scoped))

  it.live("20 concurrent claims and submissions from one account: no nonce collides", () =>
    Effect.gen(function*() {
      const { chain, id, round } = yield* setup
      const claims = yield* Effect.forEach(Array.from({ length: 20 }), () => chain.claimChunk(round.roundId), {
        concurrency: "unbounded"
      })
      assert.strictEqual(new Set(claims.map((c) => c.chunkId)).size, 20)
      const submissions = yield* Effect.forEach(
        claims,
        (c) => prove(id, round.roundId, c.chunkId, hash((c.chunkId + 16).toString(16).padStart(2, "0")), round.difficulty)
      )
      const receipts = yield* Effect.forEach(submissions, (s) => chain.submitGradient(s), { concurrency: "unbounded" })
      assert.strictEqual(new Set(receipts.map((r) => r.txHash)).size, 20)
      assert.strictEqual(Option.getOrThrow(yield* chain.getRound(round.roundId)).submittedCount, 20)
    }).pipe(Effect.scoped), 60_000)

  it.live("anvil stopped mid-run: NetworkError; after it is back on the same state, the same client succeeds", () =>
    Effect.gen(function*() {
      const dataDir = mkdtempSync(join(tmpdir(), "r3mes-devnet-"))
      const port = yield* freePort
      const first = yield* Scope.make()
      const devnet = yield* freshDevnet({ dataDir, port }).pipe(Scope.provide(first))
      const chain = yield* chainFor(devnet)
      const [round] = yield* chain.rounds
      const claim = yield* chain.claimChunk(round!.roundId)
      yield* Scope.close(first, Exit.void)
      const down = yield* Effect.flip(chain.rounds)
      assert.strictEqual(down._tag, "NetworkError")
      assert.strictEqual(down._tag === "NetworkError" ? down.service : undefined, "chain")
      yield* freshDevnet({ dataDir, port })
      const submission = yield* prove(yield* chain.identity, round!.roundId, claim.chunkId, hash("55"), round!.difficulty)
      const receipt = yield* chain.submitGradient(submission)
      assert.isFalse(receipt.alreadySubmitted)
    }).pipe(Effect.scoped), 60_000)

  it.live("a transaction signed before a crash: pending until the same bytes are re-sent, then mined once", () =>
    Effect.gen(function*() {
      const { chain, devnet, id, round } = yield* setup
      const claim = yield* chain.claimChunk(round.roundId)
      const submission = yield* prove(id, round.roundId, claim.chunkId, hash("66"), round.difficulty)
      // "Crash" between journaling the intent and broadcasting: the intent step fails, nothing is sent.
      let signed: SignedTransaction | undefined
      yield* chain.submitGradient(submission, (s) => {
        signed = s
        return Effect.fail(new ResourceError({ message: "crash before broadcast" }))
      }).pipe(Effect.flip)
      assert.isTrue(Option.isNone(yield* chain.getSubmission(round.roundId, claim.chunkId)))
      // After the restart, a fresh client asks the chain about it and re-sends the journaled bytes.
      const restarted = yield* chainFor(devnet)
      assert.strictEqual((yield* restarted.transactionStatus(signed!))._tag, "Pending")
      yield* restarted.rebroadcast(signed!)
      const status = yield* settledStatus(restarted, signed!)
      assert.strictEqual(status._tag, "Mined")
      assert.isTrue(status._tag === "Mined" && status.success && status.receipt.txHash === signed!.hash)
      // The same bytes again: "already known" / "nonce too low", no error and no second submission.
      yield* restarted.rebroadcast(signed!)
      assert.strictEqual(Option.getOrThrow(yield* chain.getRound(round.roundId)).submittedCount, 1)
      // The restarted client's next transaction goes through.
      assert.strictEqual((yield* restarted.claimChunk(round.roundId)).chunkId, 1)
      // The old client (a second writer of the same account, which a miner never is) finds its cached nonce
      // taken: a RetryableError (dropped) that resynchronises the nonce, so its retry goes through.
      assert.strictEqual((yield* Effect.flip(chain.claimChunk(round.roundId)))._tag, "RetryableError")
      assert.strictEqual((yield* chain.claimChunk(round.roundId)).chunkId, 2)
    }).pipe(Effect.scoped))

  it.live("a transaction whose nonce another transaction used is dropped", () =>
    Effect.gen(function*() {
      const { chain, devnet, id, round } = yield* setup
      const claim = yield* chain.claimChunk(round.roundId)
      const submission = yield* prove(id, round.roundId, claim.chunkId, hash("77"), round.difficulty)
      let signed: SignedTransaction | undefined
      yield* chain.submitGradient(submission, (s) => {
        signed = s
        return Effect.fail(new ResourceError({ message: "crash before broadcast" }))
      }).pipe(Effect.flip)
      // The same nonce goes to another transaction.
      yield* chain.claimChunk(round.roundId)
      assert.strictEqual((yield* chain.transactionStatus(signed!))._tag, "Dropped")
      yield* chain.rebroadcast(signed!)
      assert.isTrue(Option.isNone(yield* chain.getSubmission(round.roundId, claim.chunkId)))
      const own = yield* chain.ownClaims
      assert.deepStrictEqual(own.map((c) => c.chunkId).sort(), [0, 1])
    }).pipe(Effect.scoped))

  it.live("fingerprint: the genesis hash and the registry's code; a chain started later differs", () =>
    Effect.gen(function*() {
      const { chain } = yield* setup
      const a = yield* chain.fingerprint
      assert.match(a.genesisHash, /^0x[0-9a-f]{64}$/)
      assert.deepStrictEqual(yield* chain.fingerprint, a)
      // anvil's genesis block carries its start time in seconds: two chains started in one second are identical.
      yield* Effect.sleep("1100 millis")
      const other = yield* setup
      const b = yield* other.chain.fingerprint
      assert.strictEqual(b.registryCodeHash, a.registryCodeHash)
      assert.notStrictEqual(b.genesisHash, a.genesisHash)
      assert.isTrue(Option.isNone(yield* chain.blockHash(10_000n)))
    }).pipe(Effect.scoped))

  it.live("a node that lost earlier transactions: the same bytes re-sent, and the lost nonces below them filled", () =>
    Effect.gen(function*() {
      const { chain, devnet, id, round } = yield* setup
      const snapshot = (yield* rpc(devnet, "evm_snapshot", [])) as { result: string }
      const claim = yield* chain.claimChunk(round.roundId)
      let signed: SignedTransaction | undefined
      const submission = yield* prove(id, round.roundId, claim.chunkId, hash("88"), round.difficulty)
      yield* chain.submitGradient(submission, (s) => Effect.sync(() => (signed = s)))
      // The node loses both blocks (a devnet restarted from an older state): the claim's nonce is gone too.
      yield* rpc(devnet, "evm_revert", [snapshot.result])
      assert.strictEqual((yield* chain.transactionStatus(signed!))._tag, "Pending")
      // Re-sent, it waits in the node's queue behind the lost nonce; past the patience the gap is filled.
      yield* chain.rebroadcast(signed!)
      assert.strictEqual((yield* chain.transactionStatus(signed!))._tag, "Pending")
      yield* Effect.sleep("1600 millis")
      yield* chain.rebroadcast(signed!)
      const status = yield* settledStatus(chain, signed!)
      // Mined at last (reverted: its claim was lost with the blocks), no longer stuck until the round's deadline.
      assert.strictEqual(status._tag, "Mined")
      assert.isFalse(status._tag === "Mined" && status.success)
      // And the account writes again.
      assert.strictEqual((yield* chain.claimChunk(round.roundId)).roundId, round.roundId)
    }).pipe(Effect.scoped), 30_000)
})