import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Effect } from "effect"

const script = fileURLToPath(new URL("./journalHolder.ts", import.meta.url))

export interface HolderAnswer {
  readonly held: boolean
  readonly pid: number
  readonly transaction_id?: string
  readonly error?: { readonly tag: string; readonly message: string; readonly hint?: string }
}

export interface Holder {
  readonly child: ChildProcess
  /** Its first line: whether it got the journal. */
  readonly answer: HolderAnswer
  /** Resolves with the exit signal or code once the process is gone. */
  readonly exited: Promise<NodeJS.Signals | number | null>
}

/**
 * Starts test/support/journalHolder.ts on the journal at `path` (Node 24 runs the .ts itself) and waits for its
 * answer. The process is SIGKILLed when the scope closes, if still alive.
 */
export const spawnHolder = (path: string) =>
  Effect.acquireRelease(
    Effect.callback<Holder, Error>((resume) => {
      const child = spawn(process.execPath, [script, path], { stdio: ["ignore", "pipe", "pipe"] })
      const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
        child.once("exit", (code, signal) => resolve(signal ?? code))
      )
      let stdout = ""
      let stderr = ""
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
        stdout += chunk
        const newline = stdout.indexOf("\n")
        if (newline >= 0) resume(Effect.succeed({ child, answer: JSON.parse(stdout.slice(0, newline)) as HolderAnswer, exited }))
      })
      child.once("error", (error) => resume(Effect.fail(error)))
      void exited.then((how) => resume(Effect.fail(new Error(`journal holder exited (${how}) before answering: ${stderr}`))))
    }),
    (holder) => Effect.sync(() => holder.child.exitCode === null && holder.child.signalCode === null && holder.child.kill("SIGKILL"))
  )

/** SIGKILL: no finalizer runs, as when the kernel's OOM killer or a power cut ends a miner. */
export const killHard = (holder: Holder) =>
  Effect.promise(() => {
    holder.child.kill("SIGKILL")
    return holder.exited
  })
