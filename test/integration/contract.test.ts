import { assert, describe, it, layer } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { type Address, type Hex, parseEventLogs, type TransactionReceipt } from "viem"
import { renderArtifact } from "../../scripts/build-contracts.ts"
import type { ChainRevertError, MiningError } from "../../src/domain/errors.ts"
import { bytesToHex, challenge, leadingZeroBits, powHash, sha256, solveReference } from "../../src/domain/pow.ts"
import { miningRegistryAbi } from "../../src/layers/chain/MiningRegistryArtifact.ts"
import fixture from "../fixtures/pow-vectors.json" with { type: "json" }
import { RegistryChain } from "../support/anvil.ts"

/** MiningRegistry on a real anvil, driven with viem: the rules of DESIGN.md "Contract MiningRegistry". */

const difficulty = 16
const cid = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
const spec = `{"model":"test"}`
const gradientHashOf = (text: string): Hex => bytesToHex(sha256(new TextEncoder().encode(text)))

const events = <
  N extends
    | "RoundOpened"
    | "ChunkClaimed"
    | "GradientSubmitted"
    | "ChunkCompleted"
    | "VerifierSet"
    | "GradientVerified"
    | "RoundFinalized"
>(
  receipt: TransactionReceipt,
  eventName: N
) => parseEventLogs({ abi: miningRegistryAbi, logs: receipt.logs, eventName, strict: true })

/** The decoded revert of a failed call; fails the test when the call succeeded or failed otherwise. */
const revertOf = <A>(effect: Effect.Effect<A, MiningError>): Effect.Effect<ChainRevertError> =>
  effect.pipe(
    Effect.matchEffect({
      onSuccess: () => Effect.die(new Error("expected a revert, but the call succeeded")),
      onFailure: (error) =>
        error._tag === "ChainRevertError"
          ? Effect.succeed(error)
          : Effect.die(new Error(`expected a revert, got ${error._tag}: ${error.message}`))
    })
  )

describe("artifact", () => {
  it("src/layers/chain/MiningRegistryArtifact.ts is what solc makes of contracts/MiningRegistry.sol", () => {
    const committed = readFileSync(new URL("../../src/layers/chain/MiningRegistryArtifact.ts", import.meta.url), "utf8")
    assert.strictEqual(committed, renderArtifact(), "stale artifact: run `npm run build:contracts`")
  })
})

layer(RegistryChain.layer, { excludeTestServices: true, timeout: "30 seconds" })("MiningRegistry on anvil", (it) => {
  /** A fresh registry (owner = account 0) with round 1 open: 4 chunks, difficulty 16, an hour to go. */
  const setup = Effect.fnUntraced(function*(options: { leaseSeconds?: number; chunkCount?: number; duration?: number } = {}) {
    const chain = yield* RegistryChain
    const registry = yield* chain.deploy(options.leaseSeconds ?? 600)
    const deadline = (yield* chain.now) + BigInt(options.duration ?? 3600)
    const opened = yield* chain.send(0, registry, "openRound", [
      1n,
      cid,
      spec,
      options.chunkCount ?? 4,
      difficulty,
      deadline
    ])
    return { chain, registry, deadline, opened }
  })

  /** Claims a chunk of round 1 from account `from`; the chunk id and lease come from ChunkClaimed. */
  const claim = Effect.fnUntraced(function*(registry: Address, from: number) {
    const chain = yield* RegistryChain
    const receipt = yield* chain.send(from, registry, "claimChunk", [1n])
    const [claimed] = events(receipt, "ChunkClaimed")
    assert.isDefined(claimed)
    return { ...claimed!.args, blockNumber: receipt.blockNumber }
  })

  const solve = Effect.fnUntraced(function*(registry: Address, from: number, chunkId: number, gradientHash: Hex) {
    const chain = yield* RegistryChain
    return yield* solveReference({
      chainId: chain.anvil.chainId,
      registry,
      miner: chain.account(from).address,
      roundId: 1n,
      chunkId,
      gradientHash,
      cid,
      difficulty
    })
  })

  it.effect("powChallenge equals every test vector's challenge and the domain's challenge", () =>
    Effect.gen(function*() {
      const { chain, registry } = yield* setup()
      assert.isAtLeast(fixture.vectors.length, 1)
      for (const v of fixture.vectors) {
        const onChain = yield* chain.call(registry, "powChallenge", [
          BigInt(v.chain_id),
          v.registry as Address,
          v.miner as Address,
          BigInt(v.round_id),
          v.chunk_id,
          v.gradient_hash as Hex,
          v.cid
        ])
        assert.strictEqual(onChain, v.challenge, `vector ${v.cid}`)
        const domain = challenge({
          chainId: v.chain_id,
          registry: v.registry,
          miner: v.miner,
          roundId: BigInt(v.round_id),
          chunkId: v.chunk_id,
          gradientHash: v.gradient_hash,
          cid: v.cid
        })
        assert.strictEqual(bytesToHex(domain), onChain)
        // The contract counts the vector's pow hash's zero bits as the domain does.
        const bits = yield* chain.call(registry, "leadingZeroBits", [v.pow_hash as Hex])
        assert.strictEqual(Number(bits), leadingZeroBits(Uint8Array.from(Buffer.from(v.pow_hash.slice(2), "hex"))))
        assert.isAtLeast(Number(bits), v.difficulty)
      }
    }))

  it.effect("openRound → claim → submit (PoW at difficulty 16) → complete, with every event read back", () =>
    Effect.gen(function*() {
      const { chain, registry, deadline, opened } = yield* setup()
      const [roundOpened] = events(opened, "RoundOpened")
      assert.deepStrictEqual(roundOpened!.args, {
        roundId: 1n,
        modelCid: cid,
        spec,
        specHash: gradientHashOf(spec),
        chunkCount: 4,
        difficulty,
        deadline
      })

      const miner = chain.account(1).address
      const claimed = yield* claim(registry, 1)
      assert.strictEqual(claimed.chunkId, 0)
      assert.strictEqual(claimed.miner, miner)
      const claimBlock = yield* Effect.promise(() => chain.client.getBlock({ blockNumber: claimed.blockNumber }))
      assert.strictEqual(claimed.leaseExpiry, claimBlock.timestamp + 600n)

      const gradientHash = gradientHashOf("gradient of chunk 0")
      const solution = yield* solve(registry, 1, 0, gradientHash)
      const submitted = yield* chain.send(1, registry, "submitGradient", [1n, 0, cid, gradientHash, solution.nonce])
      const [event] = events(submitted, "GradientSubmitted")
      assert.deepStrictEqual(event!.args, {
        roundId: 1n,
        chunkId: 0,
        miner,
        cid,
        gradientHash,
        powNonce: solution.nonce
      })

      const completed = yield* chain.send(1, registry, "completeChunk", [1n, 0])
      assert.deepStrictEqual(events(completed, "ChunkCompleted")[0]!.args, { roundId: 1n, chunkId: 0, miner })
      // Completing twice is idempotent: no second event.
      const again = yield* chain.send(1, registry, "completeChunk", [1n, 0])
      assert.strictEqual(events(again, "ChunkCompleted").length, 0)

      const [subMiner, subCid, subHash, subNonce, subBlock, subCompleted] = yield* chain.call(
        registry,
        "getSubmission",
        [1n, 0]
      )
      assert.deepStrictEqual([subMiner, subCid, subHash, subNonce, subBlock, subCompleted], [
        miner,
        cid,
        gradientHash,
        solution.nonce,
        submitted.blockNumber,
        true
      ])
      const round = yield* chain.call(registry, "getRound", [1n])
      assert.strictEqual(round[5], 1, "nextChunk")
      assert.strictEqual(round[6], 1, "submittedCount")

      // The same history through eth_getLogs, as a miner reading the chain sees it.
      const logs = yield* Effect.promise(() =>
        chain.client.getContractEvents({ address: registry, abi: miningRegistryAbi, fromBlock: 0n, strict: true })
      )
      assert.deepStrictEqual(logs.map((l) => l.eventName), [
        "RoundOpened",
        "ChunkClaimed",
        "GradientSubmitted",
        "ChunkCompleted"
      ])
    }))

  it.effect("a nonce with too few zero bits reverts with InsufficientWork(powHash, difficulty)", () =>
    Effect.gen(function*() {
      const { chain, registry } = yield* setup()
      yield* claim(registry, 1)
      const gradientHash = gradientHashOf("weak")
      const c = challenge({
        chainId: chain.anvil.chainId,
        registry,
        miner: chain.account(1).address,
        roundId: 1n,
        chunkId: 0,
        gradientHash,
        cid
      })
      let nonce = 0n
      while (leadingZeroBits(powHash(c, nonce)) >= difficulty) nonce++
      const revert = yield* revertOf(chain.send(1, registry, "submitGradient", [1n, 0, cid, gradientHash, nonce]))
      assert.strictEqual(revert.errorName, "InsufficientWork")
      assert.deepStrictEqual(revert.args, [bytesToHex(powHash(c, nonce)), String(difficulty)])
    }))

  it.effect("a second submission of a chunk reverts with AlreadySubmitted(round, chunk, miner, hash)", () =>
    Effect.gen(function*() {
      const { chain, registry } = yield* setup()
      yield* claim(registry, 1)
      const gradientHash = gradientHashOf("first")
      const solution = yield* solve(registry, 1, 0, gradientHash)
      yield* chain.send(1, registry, "submitGradient", [1n, 0, cid, gradientHash, solution.nonce])
      const revert = yield* revertOf(
        chain.send(1, registry, "submitGradient", [1n, 0, cid, gradientHash, solution.nonce])
      )
      assert.strictEqual(revert.errorName, "AlreadySubmitted")
      assert.deepStrictEqual(revert.args, ["1", "0", chain.account(1).address, gradientHash])
    }))

  it.effect("an expired lease reverts with LeaseExpired and the chunk goes to the next claimer", () =>
    Effect.gen(function*() {
      const { chain, registry } = yield* setup({ leaseSeconds: 60, chunkCount: 1 })
      const first = yield* claim(registry, 1)
      const gradientHash = gradientHashOf("late")
      const solution = yield* solve(registry, 1, 0, gradientHash)
      // While the lease holds, nobody else gets the round's only chunk.
      assert.strictEqual((yield* revertOf(chain.send(2, registry, "claimChunk", [1n]))).errorName, "NoFreeChunk")

      yield* chain.increaseTime(61)
      const revert = yield* revertOf(chain.send(1, registry, "submitGradient", [1n, 0, cid, gradientHash, solution.nonce]))
      assert.strictEqual(revert.errorName, "LeaseExpired")
      assert.deepStrictEqual(revert.args, ["1", "0", String(first.leaseExpiry)])

      const second = yield* claim(registry, 2)
      assert.strictEqual(second.chunkId, 0)
      assert.strictEqual(second.miner, chain.account(2).address)
      // The first miner no longer holds it; the second one submits.
      assert.strictEqual(
        (yield* revertOf(chain.send(1, registry, "submitGradient", [1n, 0, cid, gradientHash, solution.nonce])))
          .errorName,
        "ChunkNotClaimed"
      )
      const theirs = yield* solve(registry, 2, 0, gradientHash)
      yield* chain.send(2, registry, "submitGradient", [1n, 0, cid, gradientHash, theirs.nonce])
      const [miner] = yield* chain.call(registry, "getSubmission", [1n, 0])
      assert.strictEqual(miner, chain.account(2).address)
    }))

  it.effect("past its deadline a round reverts claims and submissions with RoundExpired", () =>
    Effect.gen(function*() {
      const { chain, registry, deadline } = yield* setup({ duration: 100 })
      yield* claim(registry, 1)
      const gradientHash = gradientHashOf("too late")
      const solution = yield* solve(registry, 1, 0, gradientHash)
      yield* chain.increaseTime(101)
      const onSubmit = yield* revertOf(chain.send(1, registry, "submitGradient", [1n, 0, cid, gradientHash, solution.nonce]))
      assert.strictEqual(onSubmit.errorName, "RoundExpired")
      assert.deepStrictEqual(onSubmit.args, ["1", String(deadline)])
      const onClaim = yield* revertOf(chain.send(2, registry, "claimChunk", [1n]))
      assert.strictEqual(onClaim.errorName, "RoundExpired")
    }))

  it.effect("openRound from a non-owner reverts with NotOwner", () =>
    Effect.gen(function*() {
      const { chain, registry } = yield* setup()
      const deadline = (yield* chain.now) + 3600n
      const revert = yield* revertOf(chain.send(1, registry, "openRound", [2n, cid, spec, 4, difficulty, deadline]))
      assert.strictEqual(revert.errorName, "NotOwner")
    }))

  it.effect("openRound rejects difficulty 0 and over 64 with InvalidDifficulty, and an existing id with RoundExists", () =>
    Effect.gen(function*() {
      const { chain, registry } = yield* setup()
      const deadline = (yield* chain.now) + 3600n
      for (const bad of [0, 65, 255]) {
        const revert = yield* revertOf(chain.send(0, registry, "openRound", [2n, cid, spec, 4, bad, deadline]))
        assert.strictEqual(revert.errorName, "InvalidDifficulty")
        assert.deepStrictEqual(revert.args, [String(bad)])
      }
      yield* chain.send(0, registry, "openRound", [2n, cid, spec, 4, 64, deadline])
      assert.strictEqual(
        (yield* revertOf(chain.send(0, registry, "openRound", [2n, cid, spec, 4, 20, deadline]))).errorName,
        "RoundExists"
      )
    }))
  /** A registry with chunk 0 of round 1 submitted by account 1, and accounts 2 and 3 allowed to verify. */
  const submitted = Effect.fnUntraced(function*() {
    const { chain, registry } = yield* setup()
    yield* claim(registry, 1)
    const gradientHash = gradientHashOf("to verify")
    const solution = yield* solve(registry, 1, 0, gradientHash)
    yield* chain.send(1, registry, "submitGradient", [1n, 0, cid, gradientHash, solution.nonce])
    for (const verifier of [2, 3]) {
      const set = yield* chain.send(0, registry, "setVerifier", [chain.account(verifier).address, true])
      assert.deepStrictEqual(events(set, "VerifierSet")[0]!.args, { verifier: chain.account(verifier).address, allowed: true })
    }
    return { chain, registry }
  })

  const reportHash = gradientHashOf("report")

  it.effect("setVerifier: owner only (NotOwner), allows and disallows, isVerifier follows", () =>
    Effect.gen(function*() {
      const { chain, registry } = yield* setup()
      const verifier = chain.account(2).address
      assert.isFalse(yield* chain.call(registry, "isVerifier", [verifier]))
      assert.strictEqual(
        (yield* revertOf(chain.send(1, registry, "setVerifier", [verifier, true]))).errorName,
        "NotOwner"
      )
      yield* chain.send(0, registry, "setVerifier", [verifier, true])
      assert.isTrue(yield* chain.call(registry, "isVerifier", [verifier]))
      const removed = yield* chain.send(0, registry, "setVerifier", [verifier, false])
      assert.deepStrictEqual(events(removed, "VerifierSet")[0]!.args, { verifier, allowed: false })
      assert.isFalse(yield* chain.call(registry, "isVerifier", [verifier]))
    }))

  it.effect("recordVerdict: stored, read back with getVerdict, GradientVerified emitted; 0 for no verdict", () =>
    Effect.gen(function*() {
      const { chain, registry } = yield* submitted()
      const verifier = chain.account(2).address
      assert.deepStrictEqual(yield* chain.call(registry, "getVerdict", [1n, 0, verifier]), [0, `0x${"0".repeat(64)}`])
      const receipt = yield* chain.send(2, registry, "recordVerdict", [1n, 0, 19, reportHash])
      assert.deepStrictEqual(events(receipt, "GradientVerified")[0]!.args, {
        roundId: 1n,
        chunkId: 0,
        verifier,
        verdict: 19,
        reportHash
      })
      assert.deepStrictEqual(yield* chain.call(registry, "getVerdict", [1n, 0, verifier]), [19, reportHash])
    }))

  it.effect("recordVerdict reverts NotVerifier, NoSubmission, InvalidVerdict, and AlreadyVerified for a second verdict", () =>
    Effect.gen(function*() {
      const { chain, registry } = yield* submitted()
      const notVerifier = yield* revertOf(chain.send(1, registry, "recordVerdict", [1n, 0, 1, reportHash]))
      assert.strictEqual(notVerifier.errorName, "NotVerifier")
      assert.deepStrictEqual(notVerifier.args, [chain.account(1).address])
      // A verifier removed by the owner is refused too.
      yield* chain.send(0, registry, "setVerifier", [chain.account(3).address, false])
      assert.strictEqual(
        (yield* revertOf(chain.send(3, registry, "recordVerdict", [1n, 0, 1, reportHash]))).errorName,
        "NotVerifier"
      )

      const noSubmission = yield* revertOf(chain.send(2, registry, "recordVerdict", [1n, 1, 1, reportHash]))
      assert.strictEqual(noSubmission.errorName, "NoSubmission")
      assert.deepStrictEqual(noSubmission.args, ["1", "1"])
      assert.strictEqual(
        (yield* revertOf(chain.send(2, registry, "recordVerdict", [7n, 0, 1, reportHash]))).errorName,
        "NoSubmission"
      )

      for (const bad of [0, 3, 15, 21, 255]) {
        const invalid = yield* revertOf(chain.send(2, registry, "recordVerdict", [1n, 0, bad, reportHash]))
        assert.strictEqual(invalid.errorName, "InvalidVerdict")
        assert.deepStrictEqual(invalid.args, [String(bad)])
      }

      yield* chain.send(2, registry, "recordVerdict", [1n, 0, 2, reportHash])
      const again = yield* revertOf(chain.send(2, registry, "recordVerdict", [1n, 0, 20, gradientHashOf("other")]))
      assert.strictEqual(again.errorName, "AlreadyVerified")
      assert.deepStrictEqual(again.args, ["1", "0", chain.account(2).address, "2", reportHash])
      assert.deepStrictEqual(yield* chain.call(registry, "getVerdict", [1n, 0, chain.account(2).address]), [2, reportHash])
    }))

  it.effect("every defined verdict code is accepted, one per verifier, and two verifiers judge the same chunk", () =>
    Effect.gen(function*() {
      const { chain, registry } = yield* submitted()
      yield* chain.send(2, registry, "recordVerdict", [1n, 0, 1, reportHash])
      const otherReport = gradientHashOf("other report")
      yield* chain.send(3, registry, "recordVerdict", [1n, 0, 20, otherReport])
      assert.deepStrictEqual(yield* chain.call(registry, "getVerdict", [1n, 0, chain.account(2).address]), [1, reportHash])
      assert.deepStrictEqual(yield* chain.call(registry, "getVerdict", [1n, 0, chain.account(3).address]), [20, otherReport])

      // Each code the contract defines, from a verifier of its own (one verdict per verifier and chunk).
      for (const [index, code] of [2, 16, 17, 18, 19].entries()) {
        const account = 4 + index
        yield* chain.send(0, registry, "setVerifier", [chain.account(account).address, true])
        yield* chain.send(account, registry, "recordVerdict", [1n, 0, code, reportHash])
        assert.deepStrictEqual(yield* chain.call(registry, "getVerdict", [1n, 0, chain.account(account).address]), [code, reportHash])
      }
    }))

  const weightsHash = gradientHashOf("aggregated weights")
  const modelCid = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"

  it.effect("finalizeRound: owner only, once, accuracy ≤ 1_000_000 ppm; RoundFinalized emitted, getFinalization reads it with its block's time", () =>
    Effect.gen(function*() {
      const { chain, registry } = yield* setup()
      const zero: Hex = `0x${"0".repeat(64)}`
      assert.deepStrictEqual(yield* chain.call(registry, "getFinalization", [1n]), [false, "", zero, 0, 0, 0n])

      const args = [1n, modelCid, weightsHash, 3, 912_345] as const
      assert.strictEqual((yield* revertOf(chain.send(1, registry, "finalizeRound", args))).errorName, "NotOwner")
      const unknown = yield* revertOf(chain.send(0, registry, "finalizeRound", [2n, modelCid, weightsHash, 3, 1_000_001]))
      assert.strictEqual(unknown.errorName, "RoundNotOpen")
      assert.deepStrictEqual(unknown.args, ["2"])
      const invalid = yield* revertOf(chain.send(0, registry, "finalizeRound", [1n, modelCid, weightsHash, 3, 1_000_001]))
      assert.strictEqual(invalid.errorName, "InvalidAccuracy")
      assert.deepStrictEqual(invalid.args, ["1000001"])

      const receipt = yield* chain.send(0, registry, "finalizeRound", args)
      assert.deepStrictEqual(events(receipt, "RoundFinalized")[0]!.args, {
        roundId: 1n,
        modelCid,
        weightsHash,
        acceptedCount: 3,
        testAccuracyPpm: 912_345
      })
      const block = yield* Effect.promise(() => chain.client.getBlock({ blockNumber: receipt.blockNumber }))
      assert.deepStrictEqual(
        yield* chain.call(registry, "getFinalization", [1n]),
        [true, modelCid, weightsHash, 3, 912_345, block.timestamp]
      )

      const again = yield* revertOf(chain.send(0, registry, "finalizeRound", [1n, modelCid, weightsHash, 4, 1_000_000]))
      assert.strictEqual(again.errorName, "RoundAlreadyFinalized")
      assert.deepStrictEqual(again.args, ["1"])
    }))

  it.effect("a finalized round refuses claims, new submissions and new verdicts (RoundNotOpen), answers replays with AlreadySubmitted / AlreadyVerified, and still takes completions", () =>
    Effect.gen(function*() {
      const { chain, registry } = yield* submitted()
      yield* claim(registry, 2)
      const late = gradientHashOf("late")
      const lateSolution = yield* solve(registry, 2, 1, late)
      yield* chain.send(0, registry, "finalizeRound", [1n, modelCid, weightsHash, 1, 900_000])

      const onClaim = yield* revertOf(chain.send(3, registry, "claimChunk", [1n]))
      assert.strictEqual(onClaim.errorName, "RoundNotOpen")
      assert.deepStrictEqual(onClaim.args, ["1"])
      const onSubmit = yield* revertOf(chain.send(2, registry, "submitGradient", [1n, 1, cid, late, lateSolution.nonce]))
      assert.strictEqual(onSubmit.errorName, "RoundNotOpen")
      assert.deepStrictEqual(onSubmit.args, ["1"])
      const [, , gradientHash, powNonce] = yield* chain.call(registry, "getSubmission", [1n, 0])
      assert.strictEqual(
        (yield* revertOf(chain.send(1, registry, "submitGradient", [1n, 0, cid, gradientHash, powNonce]))).errorName,
        "AlreadySubmitted"
      )

      const completed = yield* chain.send(1, registry, "completeChunk", [1n, 0])
      assert.strictEqual(events(completed, "ChunkCompleted").length, 1)
      // The aggregate took the verdicts it had: a new one would make it unreproducible.
      const onVerdict = yield* revertOf(chain.send(2, registry, "recordVerdict", [1n, 0, 1, reportHash]))
      assert.strictEqual(onVerdict.errorName, "RoundNotOpen")
      assert.deepStrictEqual(onVerdict.args, ["1"])
      assert.deepStrictEqual(yield* chain.call(registry, "getVerdict", [1n, 0, chain.account(2).address]), [0, `0x${"0".repeat(64)}`])
    }))

  it.effect("a verdict recorded before finalization answers its replay with AlreadyVerified after it", () =>
    Effect.gen(function*() {
      const { chain, registry } = yield* submitted()
      yield* chain.send(2, registry, "recordVerdict", [1n, 0, 1, reportHash])
      yield* chain.send(0, registry, "finalizeRound", [1n, modelCid, weightsHash, 1, 900_000])
      const replay = yield* revertOf(chain.send(2, registry, "recordVerdict", [1n, 0, 1, reportHash]))
      assert.strictEqual(replay.errorName, "AlreadyVerified")
    }))
})
