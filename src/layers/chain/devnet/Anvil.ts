import { type ChildProcess, spawn } from "node:child_process"
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { createServer } from "node:net"
import { dirname, join, resolve } from "node:path"
import { Clock, Duration, Effect, type Scope } from "effect"
import { ResourceError, TimeoutError, ValidationError } from "../../../domain/errors.ts"

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
 * A dead parent's anvil still writes FILE for a moment after the parent is gone (the watchdog's SIGTERM → dump →
 * exit), so a restart right away could load a half-written FILE, or have its chain overwritten by the old dump:
 * `FILE.pid` names the anvil that owns FILE, and a new one starts only once that one has exited.
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

/** How an anvil process ended. */
export interface AnvilExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  /** The tail of its stderr. */
  readonly stderr: string
}

/** anvil's default mnemonic (also Hardhat's); its accounts are in {@link anvilAccounts}. */
export const anvilMnemonic = "test test test test test test test test test test test junk"

/**
 * Accounts 0..9 of {@link anvilMnemonic} at m/44'/60'/0'/0/i, written out because deriving them (PBKDF2 + BIP32)
 * costs ~0.1 s; test/devnet.test.ts re-derives them with viem's mnemonicToAccount and asks anvil's eth_accounts.
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

const host = "127.0.0.1"
/** SIGTERM lets anvil dump its state and exit; it takes a few milliseconds. After this, SIGKILL. */
const stopGraceMs = 3_000
const maxPortAttempts = 3

// ---------------------------------------------------------------------------------------------------------------
// The binary

const platformNames: Record<string, string> = { linux: "linux", darwin: "darwin", win32: "win32" }
const archNames: Record<string, string> = { x64: "amd64", arm64: "arm64" }

/** The npm package that ships anvil for this machine, as `@foundry-rs/anvil` names its optional dependencies. */
export const anvilPlatformPackage = (
  platform: string = process.platform,
  arch: string = process.arch
): string | undefined => {
  const os = platformNames[platform]
  const cpu = archNames[arch]
  return os === undefined || cpu === undefined ? undefined : `@foundry-rs/anvil-${os}-${cpu}`
}

/** The path of the anvil binary from this platform's npm package. */
export const resolveAnvilBinary: Effect.Effect<string, ResourceError> = Effect.suspend(() => {
  const pkg = anvilPlatformPackage()
  const hint = "install Foundry's anvil and pass its path as the anvil binary, or run on linux/darwin (x64, arm64) " +
    "or win32 (x64) where npm installs it"
  if (pkg === undefined) {
    return Effect.fail(
      new ResourceError({
        message: `no anvil npm package exists for ${process.platform}-${process.arch}`,
        resource: "anvil binary",
        hint
      })
    )
  }
  return Effect.try({
    try: () => {
      const manifest = createRequire(import.meta.url).resolve(`${pkg}/package.json`)
      return join(dirname(manifest), "bin", process.platform === "win32" ? "anvil.exe" : "anvil")
    },
    catch: (cause) =>
      new ResourceError({
        message: `${pkg} is not installed: the devnet needs its anvil binary`,
        resource: "anvil binary",
        cause: String(cause),
        hint: `run \`npm install\` (npm skips optional dependencies with --omit=optional), or ${hint}`
      })
  })
})

// ---------------------------------------------------------------------------------------------------------------
// Ports

const listenOnce = (port: number): Promise<number> =>
  new Promise((resolvePort, reject) => {
    const server = createServer()
    server.unref()
    server.once("error", reject)
    server.listen({ port, host, exclusive: true }, () => {
      const address = server.address()
      const bound = typeof address === "object" && address !== null ? address.port : port
      server.close(() => resolvePort(bound))
    })
  })

/** A port on 127.0.0.1 that was free a moment ago (the OS picks it). */
export const freePort: Effect.Effect<number, ResourceError> = Effect.tryPromise({
  try: () => listenOnce(0),
  catch: (cause) =>
    new ResourceError({ message: `cannot find a free TCP port on ${host}`, resource: "port", cause: String(cause) })
})

/** Fails when something already listens on the port (else anvil's probe could be answered by that other server). */
const checkPortFree = (port: number): Effect.Effect<void, ResourceError> =>
  Effect.tryPromise({
    try: () => listenOnce(port),
    catch: (cause) =>
      new ResourceError({
        message: `port ${port} on ${host} is in use`,
        resource: "port",
        cause: String(cause),
        hint: "stop whatever listens there (another devnet?) or choose another port (0 picks a free one)"
      })
  }).pipe(Effect.asVoid)

// ---------------------------------------------------------------------------------------------------------------
// The child process

interface AnvilProcess {
  readonly child: ChildProcess
  readonly pid: number
  readonly port: number
  /** The tail of anvil's stderr, for error messages. */
  readonly stderr: () => string
  /** Set once the process has exited. */
  readonly exit: () => { readonly code: number | null; readonly signal: NodeJS.Signals | null } | undefined
  /** Completes when the process has exited, for whatever reason. */
  readonly exited: Effect.Effect<AnvilExit>
  readonly watchdog: ChildProcess | undefined
}

/** Children still running, stopped by the exit hook if the process ends without closing their scopes. */
const running = new Set<ChildProcess>()
let exitHookInstalled = false
const installExitHook = (): void => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // Only synchronous work is possible here: signal, and let anvil dump its state and exit on its own.
  process.on("exit", () => {
    for (const child of running) child.kill("SIGTERM")
  })
}

/**
 * A shell that waits for EOF on a pipe from this process, then stops anvil (TERM, then KILL after the grace period
 * if it is still there). The pipe closes when this process dies in any way; on a normal stop the watchdog is killed
 * first, so it never signals a pid that the OS might have reused.
 */
const startWatchdog = (pid: number): ChildProcess | undefined => {
  if (process.platform === "win32") return undefined
  const tenths = stopGraceMs / 100
  const script = `while read -r _; do :; done; kill -TERM ${pid} 2>/dev/null; i=0; ` +
    `while kill -0 ${pid} 2>/dev/null && [ $i -lt ${tenths} ]; do sleep 0.1; i=$((i+1)); done; ` +
    `kill -KILL ${pid} 2>/dev/null`
  try {
    // Its own process group like anvil's (a Ctrl-C must not take the guard away); the pipe's EOF does not care
    // which group the reader is in.
    const watchdog = spawn("/bin/sh", ["-c", script], { stdio: ["pipe", "ignore", "ignore"], detached: true })
    watchdog.on("error", () => {})
    watchdog.unref()
    const stdin = watchdog.stdin as unknown as { unref?: () => void } | null
    stdin?.unref?.()
    return watchdog
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The state file's owner

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Whether `pid` is an anvil on this state file (where /proc tells; elsewhere a live pid is taken for it). */
const ownsStateFile = (pid: number, stateFile: string): boolean => {
  if (!isAlive(pid)) return false
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(stateFile)
  } catch {
    return process.platform !== "linux"
  }
}

const pidFileOf = (stateFile: string): string => `${stateFile}.pid`

/**
 * Waits until no earlier anvil owns the state file: one whose parent died is dumping its chain there and exits on
 * its own (its watchdog escalates to SIGKILL after the grace period), so this waits a little longer than that.
 */
const awaitPreviousOwner = Effect.fnUntraced(function*(stateFile: string) {
  const pidFile = pidFileOf(stateFile)
  let previous: number
  try {
    previous = Number.parseInt(readFileSync(pidFile, "utf8"), 10)
  } catch {
    return
  }
  if (!Number.isSafeInteger(previous) || previous === process.pid) return
  const start = yield* Clock.currentTimeMillis
  while (ownsStateFile(previous, stateFile)) {
    if ((yield* Clock.currentTimeMillis) - start > stopGraceMs + 2_000) {
      return yield* new ResourceError({
        message: `anvil (pid ${previous}) still runs on the chain state file ${stateFile}`,
        resource: "anvil",
        hint: `stop that anvil (kill ${previous}) or give this devnet another data dir`
      })
    }
    yield* Effect.sleep("25 millis")
  }
  yield* Effect.logDebug(`anvil: the previous owner (pid ${previous}) of ${stateFile} is gone`)
})

/** Records a started anvil as the state file's owner. Best effort: without it a restart only loses the wait. */
const recordOwner = (stateFile: string, pid: number): Effect.Effect<void> =>
  Effect.sync(() => {
    try {
      writeFileSync(pidFileOf(stateFile), `${pid}\n`)
    } catch {
      // An unwritable data dir shows up soon enough in anvil's own dump.
    }
  })

/** Drops the record once its anvil has exited (a record naming another pid is left alone). */
const dropOwner = (stateFile: string, pid: number): Effect.Effect<void> =>
  Effect.sync(() => {
    try {
      if (Number.parseInt(readFileSync(pidFileOf(stateFile), "utf8"), 10) === pid) rmSync(pidFileOf(stateFile))
    } catch {
      // already gone
    }
  })

const spawnAnvil = (binary: string, args: ReadonlyArray<string>, port: number) =>
  Effect.callback<AnvilProcess, ResourceError>((resume) => {
    let stderr = ""
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined
    let exited: (exit: AnvilExit) => void = () => {}
    const exitPromise = new Promise<AnvilExit>((resolveExit) => (exited = resolveExit))
    // A process group of its own (setsid): a terminal's Ctrl-C goes to the foreground group, which is then the
    // miner's alone; the miner stops anvil last, once its transactions in flight have ended (DESIGN.md "Durability").
    // Not unref'd: like any child, a running anvil keeps this process's event loop alive until it is stopped.
    const child = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"], detached: true })
    child.stderr?.setEncoding("utf8")
    child.stderr?.on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-4_000)
    })
    child.once("exit", (code, signal) => {
      exit = { code, signal }
      running.delete(child)
      exited({ code, signal, stderr: stderr.trim() })
    })
    child.once("error", (error: NodeJS.ErrnoException) => {
      running.delete(child)
      resume(Effect.fail(
        new ResourceError({
          message: `cannot start anvil (${binary}): ${error.message}`,
          resource: "anvil binary",
          cause: error.code ?? error.message,
          hint: error.code === "EACCES"
            ? "the anvil binary is not executable: reinstall node_modules or chmod +x it"
            : "reinstall node_modules (npm install) so that the anvil platform package is present"
        })
      ))
    })
    child.once("spawn", () => {
      const pid = child.pid!
      running.add(child)
      installExitHook()
      resume(Effect.succeed({
        child,
        pid,
        port,
        stderr: () => stderr.trim(),
        exit: () => exit,
        exited: Effect.promise(() => exitPromise),
        watchdog: startWatchdog(pid)
      }))
    })
  })

/** SIGTERM (anvil dumps its state and exits), SIGKILL after the grace period. Idempotent. */
const stopAnvil = (proc: AnvilProcess): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    proc.watchdog?.kill("SIGKILL")
    if (proc.exit() !== undefined) return resume(Effect.void)
    const escalate = setTimeout(() => proc.child.kill("SIGKILL"), stopGraceMs)
    proc.child.once("exit", () => {
      clearTimeout(escalate)
      resume(Effect.void)
    })
    proc.child.kill("SIGTERM")
  }).pipe(
    Effect.tap(() => Effect.logDebug(`anvil (pid ${proc.pid}, port ${proc.port}) stopped`))
  )

const exitedEarly = (proc: AnvilProcess, stateFile: string | undefined): ResourceError => {
  const exit = proc.exit()!
  const stderr = proc.stderr()
  const how = exit.signal !== null ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`
  const badState = stateFile !== undefined && /state|json/i.test(stderr)
  return new ResourceError({
    message: `anvil ${how} before it was ready (port ${proc.port})${stderr ? `: ${stderr}` : ""}`,
    resource: "anvil",
    ...(stderr ? { cause: stderr } : {}),
    hint: badState
      ? `the chain state file ${stateFile} cannot be loaded (written while anvil was killed?): ` +
        "move it away to start a fresh chain"
      : /address already in use/i.test(stderr)
      ? "another process took the port: choose another one (0 picks a free one)"
      : "run the anvil binary by hand with the same arguments to see why"
  })
}

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
