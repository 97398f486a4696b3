import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Context, Effect, Layer, type Scope } from "effect"
import { exited, freePort } from "./children.ts"

/**
 * A real Kubo-RPC server for tests: the js-ipfs daemon (npm `ipfs`, a devDependency), offline, with its own repo in
 * a fresh temp dir and free 127.0.0.1 ports. No Kubo binary can be installed where these tests run; js-ipfs answers
 * the same RPC API that kubo-rpc-client speaks, with the same default import settings.
 */
export interface JsIpfsDaemon {
  /** The RPC API, e.g. http://127.0.0.1:41234 (stable across restarts). */
  readonly url: string
  /** IPFS_PATH of the daemon. */
  readonly repo: string
  /** Stops the daemon (SIGTERM, SIGKILL after 5 s) and waits for it to exit. No-op when it is not running. */
  readonly stop: Effect.Effect<void>
  /** Kills the daemon at once (SIGKILL), like a crash, and waits for it to exit. */
  readonly kill: Effect.Effect<void>
  /** Starts it again on the same repo and ports (after `stop` or `kill`). */
  readonly start: Effect.Effect<void>
  readonly running: Effect.Effect<boolean>
}

const cli = fileURLToPath(new URL("../../node_modules/ipfs/src/cli.js", import.meta.url))



/** Spawns `jsipfs daemon --offline` and resolves once it prints "Daemon is ready". */
const spawnDaemon = (repo: string, initConfig: string): Promise<ChildProcess> =>
  new Promise((resolve, reject) => {
    // A killed daemon leaves its lock and api files behind; it is ours and it is dead, so they are stale.
    rmSync(join(repo, "repo.lock"), { recursive: true, force: true })
    rmSync(join(repo, "api"), { force: true })
    const child = spawn(process.execPath, [cli, "daemon", "--offline", "--init-config", initConfig], {
      env: { ...process.env, IPFS_PATH: repo, IPFS_MONITORING: "", DEBUG: "" },
      stdio: ["ignore", "pipe", "pipe"]
    })
    // Never outlive the test process, even when it exits without closing the daemon's scope.
    const orphanGuard = () => child.kill("SIGKILL")
    process.once("exit", orphanGuard)
    child.once("exit", () => process.off("exit", orphanGuard))
    let output = ""
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`js-ipfs daemon not ready after 30 s:\n${output}`))
    }, 30_000)
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes("Daemon is ready")) {
        clearTimeout(timer)
        child.stdout?.off("data", onData)
        // Keep draining its output so the daemon never blocks on a full pipe.
        child.stdout?.resume()
        child.stderr?.resume()
        resolve(child)
      }
    }
    child.stdout?.on("data", onData)
    child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()))
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`js-ipfs daemon exited (${code ?? signal}) before it was ready:\n${output}`))
    })
  })

const rpc = async (url: string, path: string): Promise<string> => {
  const response = await fetch(`${url}/api/v0/${path}`, { method: "POST" })
  const body = await response.text()
  if (!response.ok) throw new Error(`${path}: ${response.status} ${body}`)
  return body
}

/** Removes what `init` pins (the readme and an empty dir), so each test file starts from an empty store. */
const emptyStore = async (url: string) => {
  const { Keys } = JSON.parse(await rpc(url, "pin/ls?type=recursive")) as { Keys: Record<string, unknown> }
  for (const cid of Object.keys(Keys)) await rpc(url, `pin/rm?arg=${cid}`)
  await rpc(url, "repo/gc")
}

/** Starts a daemon for the enclosing scope; it is stopped (by pid) and its repo deleted when the scope closes. */
export const startJsIpfs: Effect.Effect<JsIpfsDaemon, Error, Scope.Scope> = Effect.acquireRelease(
  Effect.tryPromise({
    try: async () => {
      const dir = mkdtempSync(join(tmpdir(), "r3mes-jsipfs-"))
      const repo = join(dir, "repo")
      const [api, gateway, grpc] = [await freePort(), await freePort(), await freePort()]
      const initConfig = join(dir, "init-config.json")
      writeFileSync(
        initConfig,
        JSON.stringify({
          Addresses: {
            API: `/ip4/127.0.0.1/tcp/${api}`,
            Gateway: `/ip4/127.0.0.1/tcp/${gateway}`,
            RPC: `/ip4/127.0.0.1/tcp/${grpc}`,
            Swarm: [],
            Announce: [],
            NoAnnounce: [],
            Delegates: []
          },
          Bootstrap: [],
          Discovery: { MDNS: { Enabled: false }, webRTCStar: { Enabled: false } }
        })
      )
      const url = `http://127.0.0.1:${api}`
      let child: ChildProcess | undefined = await spawnDaemon(repo, initConfig)
      await emptyStore(url)
      const halt = (signal: NodeJS.Signals) =>
        Effect.promise(async () => {
          const running = child
          if (running === undefined) return
          child = undefined
          running.kill(signal)
          const escalate = setTimeout(() => running.kill("SIGKILL"), 5_000)
          await exited(running)
          clearTimeout(escalate)
        })
      const daemon: JsIpfsDaemon = {
        url,
        repo,
        stop: halt("SIGTERM"),
        kill: halt("SIGKILL"),
        start: Effect.promise(async () => {
          if (child === undefined) child = await spawnDaemon(repo, initConfig)
        }),
        running: Effect.sync(() => child !== undefined)
      }
      return { daemon, dir }
    },
    catch: (error) => (error instanceof Error ? error : new Error(String(error)))
  }),
  ({ daemon, dir }) =>
    daemon.stop.pipe(Effect.andThen(Effect.sync(() => rmSync(dir, { recursive: true, force: true }))))
).pipe(Effect.map(({ daemon }) => daemon))

/** One js-ipfs daemon shared by the tests of a file: `layer(JsIpfs.layer, { timeout: "60 seconds" })(…)`. */
export class JsIpfs extends Context.Service<JsIpfs, JsIpfsDaemon>()("r3mes/test/JsIpfs") {
  static readonly layer: Layer.Layer<JsIpfs, Error> = Layer.effect(JsIpfs, startJsIpfs)
}
