import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { exited, freePort } from "./children.ts"

export { freePort } from "./children.ts"

/**
 * fleetRunner.ts as a child process on the project's Node 24 (node_modules/.bin/node), driven over Node's IPC
 * channel: the test sends Increment requests through it and reads what it reports (ready, replies, the singleton's
 * start, heartbeats and stop, each stamped with the child's clock: one machine, one clock).
 */

/** Test → runner: send `Increment` to Counter `id` from this runner, answer with a `reply` of the same requestId. */
export interface FleetCommand {
  readonly requestId: number
  readonly id: string
  readonly amount: number
  readonly tag: string
}

export type FleetEvent =
  | { readonly event: "ready"; readonly runner: string; readonly at: number }
  | { readonly event: "singleton-start" | "singleton-stop" | "beat"; readonly runner: string; readonly at: number }
  | {
    readonly event: "reply"
    readonly requestId: number
    readonly ok: boolean
    readonly count?: number
    /** The runner whose Counter handled it. */
    readonly runner?: string
    readonly error?: string
  }

export interface FleetTimings {
  readonly shards: number
  readonly lockExpirationMs: number
  readonly lockRefreshMs: number
  readonly assignmentsMs: number
  readonly messagePollMs: number
  readonly healthCheckMs: number
}

export interface FleetRunner {
  readonly name: string
  readonly port: number
  readonly pid: number
  /** Everything it reported, in arrival order, with the test's receive time. */
  readonly events: ReadonlyArray<FleetEvent & { readonly receivedAt: number }>
  /** Resolves with the first event (already seen or to come) matching `predicate`; rejects after `ms`. */
  readonly waitFor: (predicate: (e: FleetEvent) => boolean, ms: number, what: string) => Promise<FleetEvent>
  /** Sends Increment(amount, tag) to Counter `id` through this runner; its reply (rejects after `ms`). */
  readonly increment: (id: string, amount: number, tag: string, ms: number) => Promise<FleetEvent & { event: "reply" }>
  readonly signal: (signal: NodeJS.Signals) => void
  readonly alive: () => boolean
  /** Its stdout and stderr so far (the cluster's logs), for failure messages. */
  readonly output: () => string
  /** SIGTERM (a graceful handoff), SIGKILL after `ms`; resolves once it exited. */
  readonly stop: (ms?: number) => Promise<void>
}

const node = fileURLToPath(new URL("../../node_modules/.bin/node", import.meta.url))
const script = fileURLToPath(new URL("./fleetRunner.ts", import.meta.url))



/** Starts runner `name` on a free port against `databaseUrl`; resolves once it reported ready (its layers built). */
export const startFleetRunner = async (
  name: string,
  databaseUrl: string,
  timings: FleetTimings,
  readyMs = 30_000
): Promise<FleetRunner> => {
  const port = await freePort()
  const child = spawn(node, [script], {
    env: {
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("R3MES_") && !k.startsWith("PG"))),
      NO_COLOR: "1",
      FLEET_RUNNER_NAME: name,
      FLEET_RUNNER_PORT: String(port),
      FLEET_DATABASE_URL: databaseUrl,
      FLEET_SHARDS: String(timings.shards),
      FLEET_LOCK_EXPIRATION_MS: String(timings.lockExpirationMs),
      FLEET_LOCK_REFRESH_MS: String(timings.lockRefreshMs),
      FLEET_ASSIGNMENTS_MS: String(timings.assignmentsMs),
      FLEET_MESSAGE_POLL_MS: String(timings.messagePollMs),
      FLEET_HEALTH_CHECK_MS: String(timings.healthCheckMs)
    },
    stdio: ["ignore", "pipe", "pipe", "ipc"]
  })
  // Never outlive the test process.
  const orphanGuard = () => child.kill("SIGKILL")
  process.once("exit", orphanGuard)
  child.once("exit", () => process.off("exit", orphanGuard))

  let output = ""
  child.stdout?.on("data", (d) => (output += d))
  child.stderr?.on("data", (d) => (output += d))
  const events: Array<FleetEvent & { readonly receivedAt: number }> = []
  const waiters = new Set<() => void>()
  child.on("message", (m) => {
    events.push({ ...(m as FleetEvent), receivedAt: Date.now() })
    for (const w of [...waiters]) w()
  })
  child.on("exit", () => {
    for (const w of [...waiters]) w()
  })
  const alive = () => child.exitCode === null && child.signalCode === null

  const waitFor = (predicate: (e: FleetEvent) => boolean, ms: number, what: string): Promise<FleetEvent> =>
    new Promise((resolve, reject) => {
      let checked = 0
      const check = () => {
        for (; checked < events.length; checked++) {
          if (predicate(events[checked]!)) {
            done()
            return resolve(events[checked]!)
          }
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`runner ${name}: no ${what} after ${ms} ms${alive() ? "" : " (it exited)"}\n${output.slice(-4000)}`))
      }, ms)
      const done = () => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })

  let requests = 0
  const increment = async (id: string, amount: number, tag: string, ms: number) => {
    const requestId = ++requests
    child.send({ requestId, id, amount, tag } satisfies FleetCommand)
    return (await waitFor((e) => e.event === "reply" && e.requestId === requestId, ms, `reply to ${tag}`)) as
      & FleetEvent
      & { event: "reply" }
  }

  const stop = async (ms = 15_000) => {
    if (!alive()) return
    const escalate = setTimeout(() => child.kill("SIGKILL"), ms)
    child.kill("SIGCONT")
    child.kill("SIGTERM")
    await exited(child)
    clearTimeout(escalate)
  }

  const runner: FleetRunner = {
    name,
    port,
    pid: child.pid!,
    events,
    waitFor,
    increment,
    signal: (s) => child.kill(s),
    alive,
    output: () => output,
    stop
  }
  try {
    await waitFor((e) => e.event === "ready", readyMs, "ready")
  } catch (e) {
    child.kill("SIGKILL")
    throw e
  }
  return runner
}
