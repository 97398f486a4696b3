import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { Context, Effect, Layer, type Scope } from "effect"
import {
  type Address,
  type ContractFunctionArgs,
  type ContractFunctionName,
  type ContractFunctionReturnType,
  createPublicClient,
  createWalletClient,
  defineChain,
  encodeDeployData,
  getAddress,
  http,
  type PrivateKeyAccount,
  type PublicClient,
  type TransactionReceipt
} from "viem"
import { privateKeyToAccount } from "viem/accounts"
import type { MiningError } from "../../src/domain/errors.ts"
import { type AnvilInstance, type AnvilOptions, startAnvil } from "../../src/layers/chain/devnet/Anvil.ts"
import { type DevnetOptions, type RunningDevnet, startDevnet } from "../../src/layers/chain/devnet/Devnet.ts"
import { miningRegistryAbi, miningRegistryBytecode } from "../../src/layers/chain/MiningRegistryArtifact.ts"
import { fromViemError } from "../../src/layers/chain/viemErrors.ts"
import { program } from "./cli.ts"

/**
 * Real chains for integration tests, each on a free port and gone when the test's scope closes.
 *
 * - `freshDevnet()`: the whole devnet (registry deployed, first round open, keeper polling every 100 ms).
 * - `RegistryChain`: a bare anvil with viem clients and helpers to deploy registries and call them from any dev
 *   account, for tests that drive the contract by hand (no keeper opening rounds behind their back). Share one per
 *   file with `layer(RegistryChain.layer, { excludeTestServices: true })` and deploy a registry per test.
 */

/** A devnet for the enclosing scope, with a fast round keeper and difficulty 16 (a test solves it in ~0.1 s). */
export const freshDevnet = (options: DevnetOptions = {}): Effect.Effect<RunningDevnet, MiningError, Scope.Scope> =>
  startDevnet({ keeperInterval: "100 millis", difficulty: 16, ...options })

type Abi = typeof miningRegistryAbi
type ReadName = ContractFunctionName<Abi, "view" | "pure">
type WriteName = ContractFunctionName<Abi, "nonpayable">

export interface RegistryChainShape {
  readonly anvil: AnvilInstance
  readonly client: PublicClient
  /** Dev account `index` (0 deploys, so it owns every registry deployed here). */
  readonly account: (index: number) => PrivateKeyAccount
  /** A new MiningRegistry from account 0. */
  readonly deploy: (leaseSeconds?: number) => Effect.Effect<Address, MiningError>
  /** Sends a registry call from account `from`; a revert fails with the decoded ChainRevertError. */
  readonly send: <F extends WriteName>(
    from: number,
    registry: Address,
    functionName: F,
    args: ContractFunctionArgs<Abi, "nonpayable", F>
  ) => Effect.Effect<TransactionReceipt, MiningError>
  readonly call: <F extends ReadName>(
    registry: Address,
    functionName: F,
    args: ContractFunctionArgs<Abi, "view" | "pure", F>
  ) => Effect.Effect<ContractFunctionReturnType<Abi, "view" | "pure", F>, MiningError>
  /** Chain time as the next block sees it (the pending block's timestamp). */
  readonly now: Effect.Effect<bigint, MiningError>
  /** Moves chain time forward (anvil's evm_increaseTime); the next block carries it. */
  readonly increaseTime: (seconds: number) => Effect.Effect<void, MiningError>
  /** Mines an empty block now (anvil's evm_mine): the latest block then carries the time `increaseTime` added. */
  readonly mine: Effect.Effect<void, MiningError>
}

export const makeRegistryChain = Effect.fnUntraced(function*(options: AnvilOptions = {}) {
  const anvil = yield* startAnvil(options)
  const chain = defineChain({
    id: anvil.chainId,
    name: "r3mes-test",
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [anvil.rpcUrl] } }
  })
  const transport = http(anvil.rpcUrl, { retryCount: 0 })
  const client: PublicClient = createPublicClient({ chain, transport, pollingInterval: 50 })
  const accounts = anvil.accounts.map((a) => privateKeyToAccount(a.privateKey))
  const wallets = accounts.map((account) => createWalletClient({ chain, transport, account }))
  const rpc = <A>(context: string, f: () => Promise<A>): Effect.Effect<A, MiningError> =>
    Effect.tryPromise({ try: f, catch: (e) => fromViemError(e, context) })

  const account = (index: number): PrivateKeyAccount => {
    const a = accounts[index]
    if (a === undefined) throw new RangeError(`anvil has dev accounts 0..${accounts.length - 1}, not ${index}`)
    return a
  }

  const deploy = (leaseSeconds = 600) =>
    rpc("deploying MiningRegistry", () =>
      wallets[0]!.sendTransactionSync({
        data: encodeDeployData({ abi: miningRegistryAbi, bytecode: miningRegistryBytecode, args: [BigInt(leaseSeconds)] }),
        throwOnReceiptRevert: true
      })).pipe(Effect.map((receipt) => getAddress(receipt.contractAddress!)))

  const send: RegistryChainShape["send"] = (from, registry, functionName, args) =>
    rpc(`${functionName} from account ${from}`, () =>
      wallets[from]!.writeContractSync({
        address: registry,
        abi: miningRegistryAbi,
        functionName,
        args,
        throwOnReceiptRevert: true
      } as never))

  const call: RegistryChainShape["call"] = (registry, functionName, args) =>
    rpc(`calling ${functionName}`, () =>
      client.readContract({ address: registry, abi: miningRegistryAbi, functionName, args } as never)) as never

  const now = rpc("reading the pending block", () => client.getBlock({ blockTag: "pending" })).pipe(
    Effect.map((block) => block.timestamp)
  )

  const increaseTime = (seconds: number) =>
    rpc("evm_increaseTime", () => client.request({ method: "evm_increaseTime", params: [seconds] } as never)).pipe(
      Effect.asVoid
    )

  const mine = rpc("evm_mine", () => client.request({ method: "evm_mine" } as never)).pipe(Effect.asVoid)

  return { anvil, client, account, deploy, send, call, now, increaseTime, mine } satisfies RegistryChainShape
})

export class RegistryChain extends Context.Service<RegistryChain, RegistryChainShape>()("test/RegistryChain") {
  static readonly layer = Layer.effect(RegistryChain, makeRegistryChain())
}

// ---------------------------------------------------------------------------------------------------------------
// Processes: anvil's, and the miner CLI on its embedded devnet

/** True while a process with this pid exists (a zombie waiting for its reaper counts as gone). */
export const isRunning = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"))
  } catch {
    return true
  }
}

/** The process group of `pid` (the field after the state in /proc/PID/stat; Linux). */
export const pgidOf = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2])
}

/** Polls `check` every 20 ms; fails (a defect) after `ms`. */
export const waitFor = (check: () => boolean, ms: number, what: string): Effect.Effect<void> =>
  Effect.promise(() =>
    new Promise<void>((resolve, reject) => {
      const until = Date.now() + ms
      const timer = setInterval(() => {
        if (check()) {
          clearInterval(timer)
          resolve()
        } else if (Date.now() > until) {
          clearInterval(timer)
          reject(new Error(`${what}: not within ${ms} ms`))
        }
      }, 20)
    })
  )

export interface MinerProcess {
  readonly child: ChildProcessWithoutNullStreams
  readonly stdout: () => string
  readonly stderr: () => string
  /** The miner's log file (JSON lines), "" until it exists. */
  readonly log: () => string
  /** The pid of the embedded devnet's anvil now (from its state file's owner record). */
  readonly anvilPid: () => number
  readonly exited: Effect.Effect<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
}


/**
 * `r3mes-miner mine --json` on the embedded devnet and IPFS node in `dataDir`, as a child process killed (with its
 * group when detached) when the scope closes.
 */
export const spawnMiner = (dataDir: string, args: ReadonlyArray<string>, options: { readonly detached?: boolean } = {}) =>
  Effect.acquireRelease(
    Effect.sync((): MinerProcess => {
      const logFile = join(dataDir, "miner.log")
      const env = {
        ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("R3MES_"))),
        NO_COLOR: "1"
      }
      const child = spawn(
        process.execPath,
        [program, "mine", "--json", "--data-dir", dataDir, "--stats-port", "0", "--log-file", logFile, ...args],
        { env, stdio: ["pipe", "pipe", "pipe"], detached: options.detached ?? false }
      )
      let stdout = ""
      let stderr = ""
      child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d))
      child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.once("exit", (code, signal) => resolve({ code, signal }))
      )
      return {
        child,
        stdout: () => stdout,
        stderr: () => stderr,
        log: () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : ""),
        anvilPid: () => Number.parseInt(readFileSync(join(dataDir, "devnet", "anvil-state.json.pid"), "utf8"), 10),
        exited: Effect.promise(() => exited)
      }
    }),
    ({ child }) =>
      Effect.sync(() => {
        if (child.exitCode !== null || child.signalCode !== null) return
        try {
          if (options.detached) process.kill(-child.pid!, "SIGKILL")
          else child.kill("SIGKILL")
        } catch {
          // already gone
        }
      })
  )
