import { type ChildProcess, spawn } from "node:child_process"
import { Effect } from "effect"
import { ResourceError } from "../../../domain/errors.ts"

/**
 * anvil as a child process: spawned in a process group of its own, watched by a watchdog that stops it when this
 * process dies however it dies, stopped with SIGTERM (anvil dumps its state) then SIGKILL.
 */

/** How an anvil process ended. */
export interface AnvilExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  /** The tail of its stderr. */
  readonly stderr: string
}


/** SIGTERM lets anvil dump its state and exit; it takes a few milliseconds. After this, SIGKILL. */
export const stopGraceMs = 3_000

export interface AnvilProcess {
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

export const spawnAnvil = (binary: string, args: ReadonlyArray<string>, port: number) =>
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
export const stopAnvil = (proc: AnvilProcess): Effect.Effect<void> =>
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

export const exitedEarly = (proc: AnvilProcess, stateFile: string | undefined): ResourceError => {
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
