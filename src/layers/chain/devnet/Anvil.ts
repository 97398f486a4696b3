import { mkdirSync } from "node:fs"
import { dirname, resolve } from "node:path"
import { Clock, Duration, Effect, type Scope } from "effect"
import { ResourceError, TimeoutError, ValidationError } from "../../../domain/errors.ts"
import { resolveAnvilBinary } from "./anvilBinary.ts"
import { checkPortFree, freePort, host } from "./anvilPorts.ts"
import { type AnvilExit, type AnvilProcess, exitedEarly, spawnAnvil, stopAnvil } from "./anvilProcess.ts"
import { awaitPreviousOwner, dropOwner, recordOwner } from "./anvilStateOwner.ts"

export { anvilPlatformPackage, resolveAnvilBinary } from "./anvilBinary.ts"
export { freePort } from "./anvilPorts.ts"
export type { AnvilExit } from "./anvilProcess.ts"

/**
 * anvil (Foundry's local node, from the npm platform package) as a scoped child process: started on 127.0.0.1,
 * ready when it answers `eth_chainId`, stopped when the scope closes — whether the scope succeeded, failed or was
 * interrupted. Three layers keep a dead parent from leaving an orphan anvil behind: the scope's finalizer (normal
 * path), a `process.on("exit")` hook (process.exit and a natural end), and on POSIX a tiny `sh` watchdog that holds
 * a pipe from this process and stops anvil when the pipe closes, which happens however this process dies
 * (SIGKILL, crash, a killed test worker). anvil and its watchdog run in process groups of their own, so a
 * terminal's Ctrl-C reaches this process alone, and this process decides when anvil stops.
 *
 * {@link startSupervisedAnvil} also restarts an anvil that dies on its own (crash, a SIGKILL from outside), on the
 * same port and from its state file, within a bounded number of restarts.
 *
 * Persistence (checked with anvil 1.7.1): `--state FILE` loads FILE when it exists and dumps the whole chain to it on
 * SIGTERM or SIGINT (blocks, transactions, receipts and logs included, so events stay queryable after a restart).
 * SIGKILL dumps nothing, hence the optional `--state-interval`. The dump truncates and rewrites FILE in place, and a
 * missing directory makes the dump fail silently: the directory is created here first.
 *
 * A dead parent's anvil still writes FILE for a moment after the parent is gone: anvilStateOwner.ts waits for it.
 *
 * Parts: anvilBinary.ts (which binary), anvilPorts.ts (which port), anvilProcess.ts (spawn, watchdog, stop),
 * anvilStateOwner.ts (who owns the state file); this file starts one anvil and waits until it answers.
 */

/** One of anvil's dev accounts. Devnet keys only: they are public knowledge. */
export interface DevAccount {
  readonly address: `0x${string}`
  readonly privateKey: `0x${string}`
}

export interface AnvilOptions {
  /** TCP port on 127.0.0.1; 0 or absent picks a free one. */
  readonly port?: number
  /**
   * Persistent mode: anvil loads this file at start when it exists and writes the chain to it when stopped.
   * Its directory is created when missing.
   */
  readonly stateFile?: string
  /** With `stateFile`: also write the state every N seconds, so a crash (SIGKILL) loses at most N seconds. */
  readonly stateIntervalSeconds?: number
  /** Default 31337 (anvil's own default). */
  readonly chainId?: number
  /** Interval mining every N seconds; absent = automine (a block per transaction). */
  readonly blockTime?: number
  /** How long anvil may take to answer (default 10 s). */
  readonly readyTimeout?: Duration.Input
  /** An anvil binary to run instead of the one from `@foundry-rs/anvil-<platform>-<arch>`. */
  readonly binary?: string
}

export interface AnvilInstance {
  readonly rpcUrl: string
  readonly chainId: number
  readonly port: number
  readonly pid: number
  /** anvil's ten default accounts (mnemonic {@link anvilMnemonic}), each funded with 10,000 ETH at genesis. */
  readonly accounts: ReadonlyArray<DevAccount>
  readonly stateFile: string | undefined
  /** Completes when this anvil process has exited: stopped with its scope, or dead on its own. */
  readonly exited: Effect.Effect<AnvilExit>
}

/** anvil's default mnemonic (also Hardhat's); its accounts are in {@link anvilAccounts}. */
export const anvilMnemonic = "test test test test test test test test test test test junk"

/**
 * Accounts 0..9 of {@link anvilMnemonic} at m/44'/60'/0'/0/i, written out because deriving them (PBKDF2 + BIP32)
 * costs ~0.1 s; test/integration/devnet.test.ts re-derives them with viem's mnemonicToAccount and asks anvil's eth_accounts.
 */
export const anvilAccounts: ReadonlyArray<DevAccount> = [
  ["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"],
  ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"],
  ["0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"],
  ["0x90F79bf6EB2c4f870365E785982E1f101E93b906", "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"],
  ["0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65", "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"],
  ["0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc", "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"],
  ["0x976EA74026E726554dB657fA54763abd0C3a0aa9", "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e"],
  ["0x14dC79964da2C08b23698B3D3cc7Ca32193d9955", "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356"],
  ["0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f", "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97"],
  ["0xa0Ee7A142d267C1f36714E4a8F75612F20a79720", "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6"]
].map(([address, privateKey]) => ({ address, privateKey }) as DevAccount)

const maxPortAttempts = 3

const chainIdProbe = async (rpcUrl: string): Promise<number | undefined> => {
  try {
    const response = await fetch(rpcUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
      signal: AbortSignal.timeout(1_000)
    })
    const body = await response.json() as { result?: string }
    return typeof body.result === "string" ? Number.parseInt(body.result, 16) : undefined
  } catch {
    return undefined
  }
}

const waitReady = Effect.fnUntraced(function*(
  proc: AnvilProcess,
  rpcUrl: string,
  timeout: Duration.Duration,
  stateFile: string | undefined
) {
  const start = yield* Clock.currentTimeMillis
  for (;;) {
    if (proc.exit() !== undefined) return yield* Effect.fail(exitedEarly(proc, stateFile))
    const chainId = yield* Effect.promise(() => chainIdProbe(rpcUrl))
    if (chainId !== undefined && proc.exit() === undefined) return chainId
    if ((yield* Clock.currentTimeMillis) - start > Duration.toMillis(timeout)) {
      const stderr = proc.stderr()
      return yield* new TimeoutError({
        message: `anvil (pid ${proc.pid}) did not answer eth_chainId on port ${proc.port} within ` +
          `${Duration.format(timeout)}${stderr ? `; stderr: ${stderr}` : ""}`,
        timeoutMs: Duration.toMillis(timeout),
        ...(stderr ? { cause: stderr } : {}),
        hint: "a loaded state file can be slow to replay on a busy machine: raise the ready timeout"
      })
    }
    yield* Effect.sleep("25 millis")
  }
})

const checkOptions = (options: AnvilOptions): ValidationError | undefined => {
  const bad = (field: string, value: unknown, expected: string) =>
    new ValidationError({ message: `anvil option ${field} = ${String(value)} is not ${expected}`, field })
  if (options.port !== undefined && (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535)) {
    return bad("port", options.port, "a TCP port (0..65535)")
  }
  if (options.chainId !== undefined && (!Number.isSafeInteger(options.chainId) || options.chainId < 1)) {
    return bad("chainId", options.chainId, "a positive integer")
  }
  if (options.blockTime !== undefined && !(options.blockTime > 0)) {
    return bad("blockTime", options.blockTime, "a positive number of seconds")
  }
  if (
    options.stateIntervalSeconds !== undefined &&
    (!Number.isInteger(options.stateIntervalSeconds) || options.stateIntervalSeconds < 1)
  ) {
    return bad("stateIntervalSeconds", options.stateIntervalSeconds, "a positive whole number of seconds")
  }
  return undefined
}

/**
 * Starts anvil on 127.0.0.1 and waits until it answers. The process lives as long as the enclosing Scope; closing
 * it (success, failure or interruption) sends SIGTERM — in persistent mode anvil then writes its state — and
 * SIGKILL 3 s later if anvil is still there. With `port` 0 a free port is picked, and picked again if another
 * process takes it first.
 */
export const startAnvil = Effect.fn("startAnvil")(function*(
  options: AnvilOptions = {}
): Effect.fn.Return<AnvilInstance, ResourceError | TimeoutError | ValidationError, Scope.Scope> {
  const invalid = checkOptions(options)
  if (invalid !== undefined) return yield* invalid
  const binary = options.binary ?? (yield* resolveAnvilBinary)
  const chainId = options.chainId ?? 31337
  const readyTimeout = Duration.fromInputUnsafe(options.readyTimeout ?? "10 seconds")
  const stateFile = options.stateFile === undefined ? undefined : resolve(options.stateFile)
  if (stateFile !== undefined) {
    yield* Effect.try({
      try: () => mkdirSync(dirname(stateFile), { recursive: true }),
      catch: (cause) =>
        new ResourceError({
          message: `cannot create the directory of the chain state file ${stateFile}`,
          resource: "disk",
          cause: String(cause)
        })
    })
  }
  if (stateFile !== undefined) yield* awaitPreviousOwner(stateFile)
  const pickPort = options.port === undefined || options.port === 0

  for (let attempt = 1;; attempt++) {
    const port = pickPort ? yield* freePort : options.port!
    if (!pickPort) yield* checkPortFree(port)
    const args = [
      "--host",
      host,
      "--port",
      String(port),
      "--chain-id",
      String(chainId),
      "--silent",
      ...(options.blockTime === undefined ? [] : ["--block-time", String(options.blockTime)]),
      ...(stateFile === undefined ? [] : ["--state", stateFile]),
      ...(stateFile === undefined || options.stateIntervalSeconds === undefined
        ? []
        : ["--state-interval", String(options.stateIntervalSeconds)])
    ]
    const proc = yield* Effect.acquireRelease(
      spawnAnvil(binary, args, port).pipe(
        Effect.tap((proc) => (stateFile === undefined ? Effect.void : recordOwner(stateFile, proc.pid)))
      ),
      (proc) =>
        stopAnvil(proc).pipe(Effect.andThen(stateFile === undefined ? Effect.void : dropOwner(stateFile, proc.pid)))
    )
    const rpcUrl = `http://${host}:${port}`
    const ready = yield* waitReady(proc, rpcUrl, readyTimeout, stateFile).pipe(
      Effect.map((id) => ({ ok: true as const, id })),
      Effect.catchTag("ResourceError", (error) =>
        pickPort && attempt < maxPortAttempts && /address already in use/i.test(proc.stderr())
          ? Effect.succeed({ ok: false as const })
          : Effect.fail(error)),
      Effect.onError(() => stopAnvil(proc))
    )
    if (!ready.ok) continue
    if (ready.id !== chainId) {
      yield* stopAnvil(proc)
      return yield* new ResourceError({
        message: `the node on port ${port} reports chain id ${ready.id}, expected ${chainId}`,
        resource: "anvil",
        hint: "another node answers on that port: choose another one"
      })
    }
    yield* Effect.logDebug(`anvil ready: pid ${proc.pid}, ${rpcUrl}, chain ${chainId}`)
    return { rpcUrl, chainId, port, pid: proc.pid, accounts: anvilAccounts, stateFile, exited: proc.exited }
  }
})
