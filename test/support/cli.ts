import { spawn, spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"

/**
 * The r3mes-miner CLI as a child process, for end-to-end tests: `node src/program.ts …args` on the Node running
 * the tests (Node 24 under npm), without the R3MES_* variables of the test run (a developer's shell must not change
 * a test's outcome).
 */

export const program = fileURLToPath(new URL("../../src/program.ts", import.meta.url))

/** The test's environment without any R3MES_* variable, plus `extra`. */
export const minerEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("R3MES_"))),
  NO_COLOR: "1",
  ...extra
})

export interface Spawned {
  readonly pid: number
  readonly stdout: () => string
  readonly stderr: () => string
  /** Resolves with the exit once the process ended (at the latest when `timeoutMs` elapsed: SIGTERM, then SIGKILL). */
  readonly exited: Promise<Exited>
  readonly signal: (signal: NodeJS.Signals) => void
  readonly running: () => boolean
  /** Resolves true as soon as stderr matches `re` (checked on every chunk), false after `ms` or at exit. */
  readonly waitStderr: (re: RegExp, ms: number) => Promise<boolean>
}

export interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly ms: number
  /** The test had to stop it after `timeoutMs`. */
  readonly timedOut: boolean
  readonly stdout: string
  readonly stderr: string
}

/** Spawns `node src/program.ts ...args` (Node 24 = this process's node). */
export const spawnCli = (
  args: ReadonlyArray<string>,
  options: { readonly env?: Record<string, string>; readonly timeoutMs: number; readonly detached?: boolean }
): Spawned => {
  const started = Date.now()
  const child = spawn(process.execPath, [program, ...args], {
    env: minerEnv(options.env),
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.detached ?? false
  })
  let stdout = ""
  let stderr = ""
  const stderrWatchers = new Set<() => void>()
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d))
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    stderr += d
    for (const w of stderrWatchers) w()
  })
  const guard = () => child.kill("SIGKILL")
  process.once("exit", guard)
  let timedOut = false
  const running = () => child.exitCode === null && child.signalCode === null
  const timers: Array<NodeJS.Timeout> = []
  timers.push(setTimeout(() => {
    if (!running()) return
    timedOut = true
    child.kill("SIGTERM")
    timers.push(setTimeout(() => running() && child.kill("SIGKILL"), 15_000))
  }, options.timeoutMs))
  const exited = new Promise<Exited>((resolve, reject) => {
    child.once("error", reject)
    child.once("close", (code, signal) => {
      for (const t of timers) clearTimeout(t)
      process.off("exit", guard)
      resolve({ code, signal, ms: Date.now() - started, timedOut, stdout, stderr })
    })
  })
  return {
    pid: child.pid!,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    signal: (s) => {
      if (running()) child.kill(s)
    },
    running,
    waitStderr: (re, ms) =>
      new Promise<boolean>((resolve) => {
        const done = (found: boolean) => {
          stderrWatchers.delete(check)
          clearTimeout(timer)
          resolve(found)
        }
        const check = () => {
          if (re.test(stderr)) done(true)
          else if (!running()) done(false)
        }
        const timer = setTimeout(() => done(false), ms)
        stderrWatchers.add(check)
        check()
      })
  }
}

/** Polls `check` every 50 ms; fails after `ms`. */
export const waitFor = (check: () => boolean, ms: number, what: string): Promise<void> =>
  new Promise((resolve, reject) => {
    const until = Date.now() + ms
    const timer = setInterval(() => {
      let ok = false
      try {
        ok = check()
      } catch {
        ok = false
      }
      if (ok) {
        clearInterval(timer)
        resolve()
      } else if (Date.now() > until) {
        clearInterval(timer)
        reject(new Error(`${what}: not within ${ms} ms`))
      }
    }, 50)
  })

export interface CliRun {
  readonly status: number | null
  readonly stdout: string
  readonly stdoutBytes: Buffer
  readonly stderr: string
  /** stderr's non-empty lines. */
  readonly stderrLines: ReadonlyArray<string>
}

export interface CliOptions {
  /** R3MES_* (or any) variables for this run, over the clean environment. */
  readonly env?: Record<string, string>
  readonly cwd?: string
  /** Killed (SIGKILL) past this; default 30 s. */
  readonly timeoutMs?: number
}

const runOf = (status: number | null, stdoutBytes: Buffer, stderr: string): CliRun => ({
  status,
  stdout: stdoutBytes.toString(),
  stdoutBytes,
  stderr,
  stderrLines: stderr.split("\n").filter((line) => line !== "")
})

/** Runs the CLI to its end without blocking the test's event loop (servers in the test process keep answering). */
export const cli = (args: ReadonlyArray<string>, options: CliOptions = {}): Promise<CliRun> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [program, ...args], { cwd: options.cwd, env: minerEnv(options.env) })
    const out: Array<Buffer> = []
    const err: Array<Buffer> = []
    child.stdout.on("data", (b: Buffer) => out.push(b))
    child.stderr.on("data", (b: Buffer) => err.push(b))
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 30_000)
    child.on("error", reject)
    child.on("close", (status) => {
      clearTimeout(timer)
      resolve(runOf(status, Buffer.concat(out), Buffer.concat(err).toString()))
    })
  })

/** Runs the CLI to its end, blocking: for commands that need nothing from the test process while they run. */
export const cliSync = (args: ReadonlyArray<string>, options: CliOptions = {}): CliRun => {
  const result = spawnSync(process.execPath, [program, ...args], {
    cwd: options.cwd,
    env: minerEnv(options.env),
    timeout: options.timeoutMs ?? 30_000
  })
  if (result.error !== undefined) throw result.error
  return runOf(result.status, result.stdout, result.stderr.toString())
}
