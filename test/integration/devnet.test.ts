import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type Address, createPublicClient, createWalletClient, type Hex, http, keccak256, parseEventLogs } from "viem"
import { mnemonicToAccount, privateKeyToAccount } from "viem/accounts"
import { foundry } from "viem/chains"
import { bytesToHex, sha256, solveReference } from "../../src/domain/pow.ts"
import { canonicalRoundSpec, parseRoundSpec } from "../../src/domain/training/spec.ts"
import { anvilAccounts, anvilMnemonic, anvilPlatformPackage, startAnvil } from "../../src/layers/chain/devnet/Anvil.ts"
import {
  defaultRoundSpecJson,
  Devnet,
  devnetInfoJson,
  type DevnetInfo,
  placeholderModelCid,
  startDevnet
} from "../../src/layers/chain/devnet/Devnet.ts"
import { miningRegistryAbi, miningRegistryBytecode } from "../../src/layers/chain/MiningRegistryArtifact.ts"
import { freshDevnet, isRunning, pgidOf } from "../support/anvil.ts"

/** The devnet on a real anvil: deployment, the round keeper, persistence, and no process left behind. */

const clientsOf = (info: DevnetInfo, account: number) => {
  const chain = { ...foundry, id: info.chainId }
  const transport = http(info.rpcUrl, { retryCount: 0 })
  const client = createPublicClient({ chain, transport, pollingInterval: 50 })
  const wallet = createWalletClient({ chain, transport, account: privateKeyToAccount(info.accounts[account]!.privateKey) })
  return { client, wallet }
}

const read = <A>(f: () => Promise<A>) => Effect.promise(f)

const isVerifier = (info: DevnetInfo, address: Address) =>
  read(() =>
    clientsOf(info, 0).client.readContract({
      address: info.registry,
      abi: miningRegistryAbi,
      functionName: "isVerifier",
      args: [address]
    })
  )

const roundCount = (info: DevnetInfo) =>
  read(() =>
    clientsOf(info, 0).client.readContract({
      address: info.registry,
      abi: miningRegistryAbi,
      functionName: "roundCount"
    })
  )

const getRound = (info: DevnetInfo, roundId: bigint) =>
  read(() =>
    clientsOf(info, 0).client.readContract({
      address: info.registry,
      abi: miningRegistryAbi,
      functionName: "getRound",
      args: [roundId]
    })
  )

const claim = (info: DevnetInfo, account: number, roundId: bigint) =>
  read(() =>
    clientsOf(info, account).wallet.writeContractSync({
      address: info.registry,
      abi: miningRegistryAbi,
      functionName: "claimChunk",
      args: [roundId],
      throwOnReceiptRevert: true
    })
  ).pipe(
    Effect.map((receipt) =>
      parseEventLogs({ abi: miningRegistryAbi, logs: receipt.logs, eventName: "ChunkClaimed", strict: true })[0]!.args
    )
  )

/** Polls until `check` holds (at most `ms`). */
const eventually = <E>(check: Effect.Effect<boolean, E>, ms = 5_000) =>
  Effect.gen(function*() {
    const until = Date.now() + ms
    while (!(yield* check)) {
      if (Date.now() > until) return yield* Effect.die(new Error(`condition not met within ${ms} ms`))
      yield* Effect.sleep("50 millis")
    }
  })

describe("anvil", () => {
  it.live("the hard-coded dev accounts are the default mnemonic's, and anvil's own", () =>
    Effect.gen(function*() {
      const anvil = yield* startAnvil()
      const fromNode = yield* read(() => createWalletClient({ transport: http(anvil.rpcUrl) }).getAddresses())
      assert.deepStrictEqual(fromNode.map((a) => a.toLowerCase()), anvilAccounts.map((a) => a.address.toLowerCase()))
      anvilAccounts.forEach((account, addressIndex) => {
        const derived = mnemonicToAccount(anvilMnemonic, { addressIndex })
        assert.strictEqual(derived.address, account.address)
        assert.strictEqual(bytesToHex(derived.getHdKey().privateKey!), account.privateKey)
      })
    }))

  it("names the npm platform packages as @foundry-rs/anvil does", () => {
    assert.strictEqual(anvilPlatformPackage("linux", "x64"), "@foundry-rs/anvil-linux-amd64")
    assert.strictEqual(anvilPlatformPackage("darwin", "arm64"), "@foundry-rs/anvil-darwin-arm64")
    assert.strictEqual(anvilPlatformPackage("win32", "x64"), "@foundry-rs/anvil-win32-amd64")
    assert.isUndefined(anvilPlatformPackage("aix", "ppc64"))
  })

  it.live("a missing binary is a ResourceError; a busy port too, instead of talking to the other node", () =>
    Effect.gen(function*() {
      const missing = yield* Effect.flip(startAnvil({ binary: "/nonexistent/anvil" }))
      assert.strictEqual(missing._tag, "ResourceError")
      assert.match(missing.message, /cannot start anvil/)

      const first = yield* startAnvil()
      const busy = yield* Effect.flip(startAnvil({ port: first.port }))
      assert.strictEqual(busy._tag, "ResourceError")
      assert.match(busy.message, new RegExp(`port ${first.port}`))
    }))

  it.live("the process is gone when the scope closes, and when it is interrupted while in use", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const anvil = yield* startAnvil().pipe(Scope.provide(scope))
      assert.isTrue(isRunning(anvil.pid))
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(isRunning(anvil.pid))

      let pid = 0
      const exit = yield* Effect.scoped(
        Effect.gen(function*() {
          pid = (yield* startAnvil()).pid
          return yield* Effect.never
        })
      ).pipe(Effect.timeout("300 millis"), Effect.exit)
      assert.isTrue(Exit.isFailure(exit))
      assert.notStrictEqual(pid, 0)
      assert.isFalse(isRunning(pid))
    }))

  it.live.skipIf(process.platform === "win32")(
    "anvil has a process group of its own: a Ctrl-C to its parent's group misses it, the parent's SIGKILL does not",
    () =>
      Effect.gen(function*() {
        const script = `import { Effect } from "effect"
const { startAnvil } = await import(${JSON.stringify(new URL("../../src/layers/chain/devnet/Anvil.ts", import.meta.url).href)})
process.on("SIGINT", () => console.log("SIGINT"))
Effect.runFork(Effect.scoped(Effect.gen(function*() {
  const anvil = yield* startAnvil()
  console.log(anvil.pid)
  yield* Effect.never
})))`
        // detached: the parent leads a group of its own, as a shell job does.
        const parent = spawn(process.execPath, ["--input-type=module", "-e", script], {
          cwd: new URL("../..", import.meta.url),
          stdio: ["ignore", "pipe", "inherit"],
          detached: true
        })
        // Whatever the outcome, the job goes (a failed assertion would leave it running, and vitest waiting on it).
        yield* Effect.addFinalizer(() => Effect.sync(() => {
          try {
            process.kill(-parent.pid!, "SIGKILL")
          } catch {
            // already gone
          }
        }))
        let out = ""
        parent.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk))
        yield* eventually(Effect.sync(() => /^\d+\n/.test(out)), 10_000)
        const pid = Number.parseInt(out, 10)
        assert.isTrue(isRunning(pid))
        if (process.platform === "linux") {
          assert.notStrictEqual(pgidOf(pid), pgidOf(parent.pid!))
          assert.notStrictEqual(pgidOf(pid), pgidOf(process.pid))
        }

        // What a terminal's Ctrl-C does: SIGINT to every process of the foreground group.
        process.kill(-parent.pid!, "SIGINT")
        yield* eventually(Effect.sync(() => out.includes("SIGINT")))
        yield* Effect.sleep("200 millis")
        assert.isTrue(isRunning(pid), "anvil did not get the SIGINT")

        // The whole job killed (kill -9 %1): the watchdog, in its own group too, still sees its pipe close.
        process.kill(-parent.pid!, "SIGKILL")
        yield* eventually(Effect.sync(() => !isRunning(pid)))
      }).pipe(Effect.scoped),
    20_000
  )
})

describe("devnet", () => {
  it.live("starts anvil, deploys the registry from account 0 and opens round 1 with the default plan", () =>
    Effect.gen(function*() {
      const devnet = yield* freshDevnet({ difficulty: 18 })
      const { client } = clientsOf(devnet, 0)
      const code = yield* read(() => client.getCode({ address: devnet.registry }))
      assert.isAbove(code?.length ?? 0, 2)
      assert.strictEqual(devnet.owner, devnet.accounts[0]!.address)
      const onChainOwner = yield* read(() =>
        client.readContract({ address: devnet.registry, abi: miningRegistryAbi, functionName: "owner" })
      )
      assert.strictEqual(onChainOwner, devnet.owner)
      assert.strictEqual(devnet.leaseSeconds, 600)
      assert.strictEqual(devnet.chainId, 31337)

      assert.strictEqual(yield* roundCount(devnet), 1n)
      const [modelCid, specHash, chunkCount, difficulty, , nextChunk, , exists] = yield* getRound(devnet, 1n)
      assert.isTrue(exists)
      assert.strictEqual(modelCid, placeholderModelCid)
      assert.strictEqual(specHash, bytesToHex(sha256(new TextEncoder().encode(defaultRoundSpecJson(1n)))))
      assert.deepStrictEqual([chunkCount, difficulty, nextChunk], [64, 18, 0])

      // The default spec is one the trainer accepts.
      const parsed = yield* parseRoundSpec(defaultRoundSpecJson(1n))
      assert.strictEqual(canonicalRoundSpec(parsed), defaultRoundSpecJson(1n))
      assert.strictEqual(parsed.dataset_seed, 1)

      const printed = devnetInfoJson(devnet)
      assert.deepStrictEqual(Object.keys(printed), ["rpc_url", "chain_id", "registry", "owner", "verifier", "accounts"])
      // The verifier is account 2, and the registry lets it (and no other account) record verdicts.
      assert.deepStrictEqual(printed.verifier, {
        address: anvilAccounts[2]!.address,
        private_key: anvilAccounts[2]!.privateKey
      })
      for (const [index, expected] of [[2, true], [1, false], [0, false]] as const) {
        assert.strictEqual(yield* isVerifier(devnet, devnet.accounts[index]!.address), expected, `account ${index}`)
      }
      assert.deepStrictEqual(printed.accounts[1], {
        address: anvilAccounts[1]!.address,
        private_key: anvilAccounts[1]!.privateKey
      })
    }))

  it.live("the round keeper opens the next round once the newest is fully claimed", () =>
    Effect.gen(function*() {
      const devnet = yield* freshDevnet({
        roundPlan: (roundId) => ({
          modelCid: placeholderModelCid,
          spec: defaultRoundSpecJson(roundId),
          chunkCount: 2,
          difficulty: 16,
          durationSeconds: 3600
        })
      })
      assert.strictEqual(yield* devnet.keepRound, 1n, "round 1 still has free chunks")
      yield* claim(devnet, 1, 1n)
      yield* claim(devnet, 2, 1n)
      // The background fiber notices on its own.
      yield* eventually(roundCount(devnet).pipe(Effect.map((n) => n === 2n)))
      const [, , chunkCount, , , nextChunk, , exists] = yield* getRound(devnet, 2n)
      assert.deepStrictEqual([exists, chunkCount, nextChunk], [true, 2, 0])
      assert.strictEqual(yield* devnet.keepRound, 2n)
      assert.strictEqual(yield* roundCount(devnet), 2n)
    }))

  it.live("the round keeper opens the next round when the newest nears its deadline", () =>
    Effect.gen(function*() {
      const devnet = yield* freshDevnet({ keeperInterval: "1 hour", deadlineMarginSeconds: 60 })
      const [, , , , deadline] = yield* getRound(devnet, 1n)
      const { client } = clientsOf(devnet, 0)
      const now = (yield* read(() => client.getBlock({ blockTag: "pending" }))).timestamp
      assert.strictEqual(yield* devnet.keepRound, 1n)
      yield* read(() => client.request({ method: "evm_increaseTime", params: [Number(deadline - now) - 30] } as never))
      assert.strictEqual(yield* devnet.keepRound, 2n)
      const [, , , , deadline2] = yield* getRound(devnet, 2n)
      assert.isAbove(Number(deadline2), Number(deadline) + 3000)
    }))

  it.live("persistent mode: a restart on the same data dir keeps the registry, its rounds and submissions", () =>
    Effect.gen(function*() {
      const dataDir = mkdtempSync(join(tmpdir(), "r3mes-devnet-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dataDir, { recursive: true, force: true })))
      const cid = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
      const gradientHash: Hex = bytesToHex(sha256(new TextEncoder().encode("persisted gradient")))

      const first = yield* Effect.scoped(
        Effect.gen(function*() {
          const devnet = yield* freshDevnet({ dataDir, leaseSeconds: 900 })
          // A second devnet on the same directory is refused while this one runs.
          const locked = yield* Effect.flip(freshDevnet({ dataDir }))
          assert.strictEqual(locked._tag, "ResourceError")
          assert.match(locked.message, /in use by process/)

          const claimed = yield* claim(devnet, 1, 1n)
          const solution = yield* solveReference({
            chainId: devnet.chainId,
            registry: devnet.registry,
            miner: devnet.accounts[1]!.address,
            roundId: 1n,
            chunkId: claimed.chunkId,
            gradientHash,
            cid,
            difficulty: 16
          })
          yield* read(() =>
            clientsOf(devnet, 1).wallet.writeContractSync({
              address: devnet.registry,
              abi: miningRegistryAbi,
              functionName: "submitGradient",
              args: [1n, claimed.chunkId, cid, gradientHash, solution.nonce],
              throwOnReceiptRevert: true
            })
          )
          return { devnet, solution }
        })
      )
      assert.isFalse(isRunning(first.devnet.pid))
      assert.isTrue(existsSync(join(dataDir, "anvil-state.json")))
      assert.isFalse(existsSync(join(dataDir, "devnet.lock")))
      assert.deepStrictEqual(JSON.parse(readFileSync(join(dataDir, "devnet.json"), "utf8")), {
        registry: first.devnet.registry,
        chain_id: 31337,
        owner: first.devnet.owner,
        lease_seconds: 900,
        artifact: keccak256(miningRegistryBytecode)
      })

      // Restarted through the Layer, on another port.
      yield* Effect.gen(function*() {
        const devnet = yield* Devnet
        assert.strictEqual(devnet.registry, first.devnet.registry)
        assert.notStrictEqual(devnet.rpcUrl, first.devnet.rpcUrl)
        assert.strictEqual(devnet.leaseSeconds, 900)
        assert.strictEqual(yield* roundCount(devnet), 1n)
        const submission = yield* read(() =>
          clientsOf(devnet, 0).client.readContract({
            address: devnet.registry,
            abi: miningRegistryAbi,
            functionName: "getSubmission",
            args: [1n, 0]
          })
        )
        assert.deepStrictEqual(submission.slice(0, 4), [devnet.accounts[1]!.address, cid, gradientHash, first.solution.nonce])
        // Events survive too: miners read specs and earlier submissions from logs.
        const logs = yield* read(() =>
          clientsOf(devnet, 0).client.getContractEvents({
            address: devnet.registry as Address,
            abi: miningRegistryAbi,
            fromBlock: 0n,
            strict: true
          })
        )
        // The verifier was registered once, at deployment: a devnet re-opened from its state keeps it.
        assert.deepStrictEqual(logs.map((l) => l.eventName), ["VerifierSet", "RoundOpened", "ChunkClaimed", "GradientSubmitted"])
        assert.strictEqual(devnet.verifier.address, first.devnet.verifier.address)
        assert.isTrue(yield* isVerifier(devnet, devnet.verifier.address))
      }).pipe(Effect.provide(Devnet.layer({ dataDir, keeperInterval: "100 millis" })))
    }))

  it.live("a devnet.json of an older version (a registry without the verifier role) gets today's registry", () =>
    Effect.gen(function*() {
      const dataDir = mkdtempSync(join(tmpdir(), "r3mes-devnet-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dataDir, { recursive: true, force: true })))
      const first = yield* Effect.scoped(freshDevnet({ dataDir }))
      // As an r3mes-miner before the verifier role wrote it: no artifact key.
      const file = join(dataDir, "devnet.json")
      const { artifact: _artifact, ...older } = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>
      writeFileSync(file, JSON.stringify(older))
      const second = yield* Effect.scoped(
        Effect.gen(function*() {
          const devnet = yield* freshDevnet({ dataDir })
          assert.isTrue(yield* isVerifier(devnet, devnet.verifier.address))
          return devnet
        })
      )
      assert.notStrictEqual(second.registry, first.registry)
      assert.strictEqual(JSON.parse(readFileSync(file, "utf8")).artifact, keccak256(miningRegistryBytecode))
    }))

  it.live("a devnet.json for another chain id is refused with a hint", () =>
    Effect.gen(function*() {
      const dataDir = mkdtempSync(join(tmpdir(), "r3mes-devnet-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dataDir, { recursive: true, force: true })))
      yield* Effect.scoped(freshDevnet({ dataDir }))
      const error = yield* Effect.flip(Effect.scoped(startDevnet({ dataDir, chainId: 1337 })))
      assert.strictEqual(error._tag, "ValidationError")
      assert.match(error.message, /runs chain 31337, not 1337/)
      assert.isFalse(existsSync(join(dataDir, "devnet.lock")))
    }))

  it.live("an invalid round plan fails the start with a ValidationError naming the round", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(freshDevnet({
        roundPlan: () => ({ modelCid: placeholderModelCid, spec: "{}", chunkCount: 0, difficulty: 16, durationSeconds: 60 })
      })))
      assert.strictEqual(error._tag, "ValidationError")
      assert.match(error.message, /round plan for round 1 is invalid: chunkCount 0/)
    }))

  it.live("closing the scope stops anvil", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const devnet = yield* freshDevnet().pipe(Scope.provide(scope))
      assert.isTrue(isRunning(devnet.pid))
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(isRunning(devnet.pid))
      const error = yield* read(() => createPublicClient({ transport: http(devnet.rpcUrl, { retryCount: 0 }) }).getChainId())
        .pipe(Effect.as(undefined), Effect.catchDefect((e) => Effect.succeed(e)))
      assert.isDefined(error, "the RPC port no longer answers")
    }))

  it.live("the Devnet layer is a service for the miner's composition root", () =>
    Effect.gen(function*() {
      const devnet = yield* Devnet
      assert.strictEqual(yield* devnet.keepRound, 1n)
    }).pipe(Effect.provide(Layer.fresh(Devnet.layer({ keeperInterval: "1 hour" })))))
})

