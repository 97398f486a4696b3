import { spawn } from "node:child_process"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, type Scope } from "effect"
import { createPublicClient, type Hex, http } from "viem"
import { miningRegistryAbi } from "../../src/layers/chain/MiningRegistryArtifact.ts"
import { cli, type CliRun, minerEnv, program } from "./cli.ts"

/**
 * A standalone `r3mes-miner devnet` in its own process, and what end-to-end tests of the network roles do on it: a
 * miner in another process commits submissions, a verifier judges them, the test reads the chain itself.
 */

/** What `devnet` prints (the parts these tests use). */
export interface DevnetJson {
  readonly rpc_url: string
  readonly registry: string
  readonly verifier: { readonly address: string; readonly private_key: string }
  readonly accounts: ReadonlyArray<{ readonly address: string; readonly private_key: string }>
  /** With `devnet --verify`: its verifier's IPFS node's addresses. */
  readonly ipfs?: ReadonlyArray<string>
}

/**
 * `r3mes-miner devnet [...args]` in its own process, for the scope: its JSON once it is up; SIGTERM at the scope's
 * end.
 */
export const devnetProcessWith = (
  args: ReadonlyArray<string>
): Effect.Effect<{ readonly info: DevnetJson }, never, Scope.Scope> => Effect.acquireRelease(
  Effect.promise(() => {
    const dataDir = mkdtempSync(join(tmpdir(), "r3mes-verify-devnet-"))
    const child = spawn(process.execPath, [program, "devnet", "--port", "0", "--data-dir", dataDir, ...args], {
      env: minerEnv(),
      stdio: ["ignore", "pipe", "pipe"]
    })
    return new Promise<{ readonly info: DevnetJson; readonly child: typeof child }>((resolve, reject) => {
      let out = ""
      child.stdout.on("data", (d) => {
        out += d
        if (out.includes("\n")) resolve({ info: JSON.parse(out.split("\n")[0]!) as DevnetJson, child })
      })
      child.on("exit", (code) => reject(new Error(`devnet exited with ${code}`)))
    })
  }),
  ({ child }) =>
    Effect.promise(() =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        child.on("exit", () => resolve())
        child.kill("SIGTERM")
      })
    )
)

/** `r3mes-miner devnet` in its own process (no verifier of its own). */
export const devnetProcess = devnetProcessWith([])

/** The flags that put a CLI command on the devnet and a shared Kubo-RPC store, with an ephemeral stats port. */
export const networkFlags = (info: DevnetJson, ipfsUrl: string): ReadonlyArray<string> => [
  "--rpc-url",
  info.rpc_url,
  "--registry",
  info.registry,
  "--ipfs",
  ipfsUrl,
  "--stats-port",
  "0"
]

/** The devnet's miner for these tests: account 3 (account 2 is the verifier). */
export const minerAccount = 3

/** `mine --json --iterations N` as the devnet's test miner, in its own data dir. */
export const mineOn = (info: DevnetJson, ipfsUrl: string, iterations: number, dataDir: string): Effect.Effect<CliRun> =>
  Effect.promise(() =>
    cli(["mine", "--json", "--iterations", String(iterations), ...networkFlags(info, ipfsUrl), "--data-dir", dataDir, "--log-file", join(dataDir, "miner.log")], {
      env: { R3MES_PRIVATE_KEY: info.accounts[minerAccount]!.private_key },
      timeoutMs: 60_000 * Math.max(2, iterations)
    })
  )

/** The arguments of `verify --once --json` on the devnet, in `dataDir`. */
export const verifyArgs = (info: DevnetJson, ipfsUrl: string, dataDir: string): ReadonlyArray<string> => [
  "verify",
  "--once",
  "--json",
  ...networkFlags(info, ipfsUrl),
  "--data-dir",
  dataDir,
  "--log-file",
  join(dataDir, "verifier.log")
]

/** What `verify --once --json` prints. */
export interface VerifySummary {
  readonly submissions: number
  readonly verdicts: Readonly<Record<string, number>>
  readonly already_on_chain: number
  readonly not_sampled: number
  readonly no_verdict: number
  readonly recovered: "recorded" | "not_recorded" | null
  readonly cursor: string
}

/** A verdict as the chain logged it (GradientVerified), read by the test itself, not through the Chain port. */
export interface LoggedVerdict {
  readonly roundId: bigint
  readonly chunkId: number
  readonly verifier: string
  readonly verdict: number
}

/** Every `eventName` event of the registry, in chain order, with its arguments (read by the test itself). */
const eventsOf = <A>(info: DevnetJson, eventName: "GradientVerified" | "GradientSubmitted" | "RoundFinalized") =>
  Effect.promise(async () => {
    const client = createPublicClient({ transport: http(info.rpc_url) })
    const logs = await client.getContractEvents({
      address: info.registry as Hex,
      abi: miningRegistryAbi,
      eventName,
      fromBlock: 0n,
      strict: true
    })
    return logs.map((log) => log.args as A)
  })

/** Every GradientVerified event of the registry, in chain order. */
export const verdictEvents = (info: DevnetJson): Effect.Effect<ReadonlyArray<LoggedVerdict>> =>
  Effect.map(
    eventsOf<{ roundId: bigint; chunkId: number; verifier: string; verdict: number }>(info, "GradientVerified"),
    (events) => events.map((a) => ({ roundId: a.roundId, chunkId: Number(a.chunkId), verifier: a.verifier, verdict: Number(a.verdict) }))
  )

/** Every GradientSubmitted event of the registry, as (round, chunk), in chain order. */
export const submittedChunks = (info: DevnetJson): Effect.Effect<ReadonlyArray<{ readonly roundId: bigint; readonly chunkId: number }>> =>
  Effect.map(
    eventsOf<{ roundId: bigint; chunkId: number }>(info, "GradientSubmitted"),
    (events) => events.map((a) => ({ roundId: a.roundId, chunkId: Number(a.chunkId) }))
  )

/** Every RoundFinalized event of the registry (the round coordinator's aggregates), in chain order. */
export const finalizedRounds = (info: DevnetJson): Effect.Effect<ReadonlyArray<{
  readonly roundId: bigint
  readonly modelCid: string
  readonly weightsHash: string
  readonly acceptedCount: number
  readonly testAccuracyPpm: number
}>> =>
  Effect.map(
    eventsOf<{ roundId: bigint; modelCid: string; weightsHash: string; acceptedCount: number; testAccuracyPpm: number }>(
      info,
      "RoundFinalized"
    ),
    (events) => events.map((a) => ({ ...a, acceptedCount: Number(a.acceptedCount), testAccuracyPpm: Number(a.testAccuracyPpm) }))
  )
