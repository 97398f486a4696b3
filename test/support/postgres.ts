import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { PgClient } from "@effect/sql-pg"
import { afterAll, beforeAll } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { Reactivity } from "effect/reactivity"
import { exited, freePort } from "./children.ts"

/**
 * A throwaway Postgres for a test file: `initdb` into a fresh temp dir, `postgres` on a free 127.0.0.1 port (its
 * unix socket in that dir too, so nothing touches /var/run/postgresql), stopped and deleted after. Debian's
 * `postgresql` package provides the binaries (.ci/run installs it); where there are none, `findPostgres` says why,
 * for `describe.skipIf`. Tuned to start in about a second and to lose everything on a crash (fsync off): a test
 * server, never a template for a real one.
 */

export interface PostgresBinaries {
  /** The directory holding `initdb` and `postgres`. */
  readonly bindir: string
  /** Postgres refuses to run as root: then it runs as this system user (uid and gid for spawn). */
  readonly runAs: { readonly name: string; readonly uid: number; readonly gid: number } | undefined
}

export type PostgresAvailability = PostgresBinaries | { readonly skip: string }

export interface PostgresServer {
  /** `postgres://r3mes:PASSWORD@127.0.0.1:PORT/r3mes`: a database made at start. */
  readonly url: string
  readonly port: number
  /** The password in every URL this server hands out (tests check it never shows in an error). */
  readonly password: string
  /** A new, empty database on this server (`CREATE DATABASE` with a unique name); its URL. */
  readonly freshDatabase: () => Promise<string>
  /** Shuts the server down (fast: open sessions are terminated), keeping its data. No-op when stopped. */
  readonly stop: () => Promise<void>
  /** Starts it again on the same data and port, after `stop`. */
  readonly start: () => Promise<void>
  readonly running: () => boolean
  /**
   * Freezes the server and every backend (SIGSTOP to the postmaster and its children): connections stay open and
   * nothing answers, as with a hung host. `thaw` (SIGCONT) lets it go on where it was.
   */
  readonly freeze: () => void
  readonly thaw: () => void
  /** Stops it and deletes its temp dir. */
  readonly close: () => Promise<void>
}

const install = "install Debian's postgresql (`apt-get install -y postgresql`, as root; .ci/run does)"

const hasServer = (dir: string): boolean => existsSync(join(dir, "initdb")) && existsSync(join(dir, "postgres"))

const majorOf = (dir: string): number => Number.parseFloat(dir.split("/").at(-2) ?? "0") || 0

/** `pg_config --bindir`, else Debian's /usr/lib/postgresql/<major>/bin (newest), else `initdb` on the PATH. */
const findBindir = (): string | undefined => {
  const pgConfig = spawnSync("pg_config", ["--bindir"], { encoding: "utf8" })
  const configured = pgConfig.status === 0 ? pgConfig.stdout.trim() : ""
  if (configured !== "" && hasServer(configured)) return configured
  const debian = "/usr/lib/postgresql"
  const versions = existsSync(debian)
    ? readdirSync(debian).map((v) => join(debian, v, "bin")).filter(hasServer).sort((a, b) => majorOf(b) - majorOf(a))
    : []
  if (versions[0] !== undefined) return versions[0]
  const onPath = spawnSync("sh", ["-c", "command -v initdb"], { encoding: "utf8" })
  const initdb = onPath.status === 0 ? onPath.stdout.trim() : ""
  return initdb !== "" && hasServer(dirname(initdb)) ? dirname(initdb) : undefined
}

const systemUser = (name: string): { readonly name: string; readonly uid: number; readonly gid: number } | undefined => {
  try {
    const line = readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith(`${name}:`))
    const fields = line?.split(":")
    return fields === undefined ? undefined : { name, uid: Number(fields[2]), gid: Number(fields[3]) }
  } catch {
    return undefined
  }
}

/** Where the Postgres binaries are and whom to run them as, or why a test must skip. Synchronous: for collection. */
export const findPostgres = (): PostgresAvailability => {
  const bindir = findBindir()
  if (bindir === undefined) return { skip: `no Postgres binaries (initdb, postgres) found: ${install}` }
  if (process.getuid?.() !== 0) return { bindir, runAs: undefined }
  const runAs = systemUser("postgres")
  return runAs === undefined
    ? { skip: "running as root, which Postgres refuses, and there is no `postgres` system user to run it as" }
    : { bindir, runAs }
}


/** The user Postgres runs as must reach its dir: every ancestor searchable by others, else /tmp. */
const baseDir = (runAs: PostgresBinaries["runAs"]): string => {
  if (runAs === undefined) return tmpdir()
  let dir = tmpdir()
  for (; dir !== dirname(dir); dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) return "/tmp"
  }
  return tmpdir()
}

/** The child's environment: no PG* variables of the caller's (PGDATA, PGPORT…), messages in English. */
const childEnv = (): NodeJS.ProcessEnv => ({
  ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PG"))),
  LC_ALL: "C",
  TZ: "UTC"
})

const asUser = (runAs: PostgresBinaries["runAs"]) => (runAs === undefined ? {} : { uid: runAs.uid, gid: runAs.gid })

const initdb = (binaries: PostgresBinaries, data: string, pwfile: string): Promise<void> =>
  new Promise((resolve, reject) => {
    execFile(
      join(binaries.bindir, "initdb"),
      [
        "-D", data, "-U", "r3mes", `--pwfile=${pwfile}`, "--auth-local=trust", "--auth-host=scram-sha-256",
        "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"
      ],
      { env: childEnv(), cwd: dirname(data), ...asUser(binaries.runAs) },
      (error, _stdout, stderr) => (error === null ? resolve() : reject(new Error(`initdb failed: ${error.message}\n${stderr}`)))
    )
  })


/** Spawns `postgres` and resolves once it accepts connections; rejects (with its log) when it exits first. */
const spawnServer = (binaries: PostgresBinaries, dir: string, port: number): Promise<ChildProcess> =>
  new Promise((resolve, reject) => {
    const settings = {
      listen_addresses: "127.0.0.1",
      unix_socket_directories: dir,
      // Throwaway data: no fsync, small memory, quick to start on a 2-core machine.
      fsync: "off",
      synchronous_commit: "off",
      full_page_writes: "off",
      shared_buffers: "16MB",
      max_connections: "60",
      max_wal_size: "64MB",
      log_min_messages: "warning",
      log_destination: "stderr",
      logging_collector: "off"
    }
    const args = ["-D", join(dir, "data"), "-p", String(port), ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`])]
    const child = spawn(join(binaries.bindir, "postgres"), args, {
      env: childEnv(),
      cwd: dir,
      stdio: ["ignore", "pipe", "pipe"],
      ...asUser(binaries.runAs)
    })
    // Never outlive the test process: SIGQUIT is Postgres's immediate shutdown (its backends go too).
    const orphanGuard = () => child.kill("SIGQUIT")
    process.once("exit", orphanGuard)
    child.once("exit", () => process.off("exit", orphanGuard))
    let log = ""
    const timer = setTimeout(() => {
      child.kill("SIGQUIT")
      reject(new Error(`postgres not ready after 30 s:\n${log}`))
    }, 30_000)
    const onData = (chunk: Buffer) => {
      log += chunk.toString()
      // log_min_messages=warning still prints this one: LOG outranks WARNING in the server log.
      if (log.includes("ready to accept connections")) {
        clearTimeout(timer)
        child.stderr?.off("data", onData)
        // Keep draining its output so the server never blocks on a full pipe.
        child.stderr?.resume()
        child.stdout?.resume()
        resolve(child)
      }
    }
    child.stderr?.on("data", onData)
    child.stdout?.on("data", onData)
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`postgres exited (${code ?? signal}) before it was ready:\n${log}`))
    })
  })

/** Raw SQL on `url` through a pool of one, for what a port does not show (schema tables, rows written by hand). */
export const withSql = <A>(url: string, f: (sql: PgClient.PgClient) => Effect.Effect<A, unknown>): Effect.Effect<A> =>
  Effect.scoped(Effect.gen(function*() {
    const sql = yield* PgClient.make({ url: Redacted.make(url), maxConnections: 1 }).pipe(
      Effect.provideService(Reactivity.Reactivity, yield* Reactivity.make)
    )
    return yield* f(sql)
  })).pipe(Effect.orDie)

/** Fails the test when the error, as shown or serialised, contains the password. */
export const assertNoPassword = (error: { readonly message: string }, password: string): void => {
  const shown = JSON.stringify({ ...error, message: error.message })
  if (shown.includes(password)) throw new Error(`the password leaked: ${shown}`)
}

/** Runs one statement as the superuser on the `postgres` database (CREATE DATABASE refuses a transaction). */
const admin = (port: number, password: string, statement: string): Promise<void> =>
  Effect.runPromise(withSql(`postgres://r3mes:${password}@127.0.0.1:${port}/postgres`, (sql) => Effect.asVoid(sql.unsafe(statement))))

let databases = 0

/** Starts a server for the caller, who closes it (afterAll). */
export const startPostgres = async (binaries: PostgresBinaries): Promise<PostgresServer> => {
  const dir = mkdtempSync(join(baseDir(binaries.runAs), "r3mes-pg-"))
  const password = `pw-${randomBytes(9).toString("hex")}`
  const pwfile = join(dir, "pwfile")
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 })
  if (binaries.runAs !== undefined) {
    chownSync(dir, binaries.runAs.uid, binaries.runAs.gid)
    chownSync(pwfile, binaries.runAs.uid, binaries.runAs.gid)
  }
  const data = join(dir, "data")
  try {
    await initdb(binaries, data, pwfile)
  } catch (e) {
    rmSync(dir, { recursive: true, force: true })
    throw e
  }
  rmSync(pwfile, { force: true })

  // A free port can be taken between the probe and the bind: try another, a few times.
  let port = 0
  let child: ChildProcess | undefined
  for (let attempt = 1; child === undefined; attempt++) {
    port = await freePort()
    try {
      child = await spawnServer(binaries, dir, port)
    } catch (e) {
      const busy = e instanceof Error && /could not bind|already in use/i.test(e.message)
      if (!busy || attempt >= 3) {
        rmSync(dir, { recursive: true, force: true })
        throw e
      }
    }
  }

  const stop = async () => {
    const current = child
    if (current === undefined || current.exitCode !== null || current.signalCode !== null) return
    const escalate = setTimeout(() => current.kill("SIGQUIT"), 10_000)
    current.kill("SIGINT")
    await exited(current)
    clearTimeout(escalate)
  }
  try {
    await admin(port, password, "CREATE DATABASE r3mes")
  } catch (e) {
    await stop()
    rmSync(dir, { recursive: true, force: true })
    throw e
  }
  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null

  return {
    url: `postgres://r3mes:${password}@127.0.0.1:${port}/r3mes`,
    port,
    password,
    freshDatabase: async () => {
      const name = `r3mes_t${++databases}_${randomBytes(3).toString("hex")}`
      await admin(port, password, `CREATE DATABASE ${name}`)
      return `postgres://r3mes:${password}@127.0.0.1:${port}/${name}`
    },
    stop,
    start: async () => {
      if (running()) return
      child = await spawnServer(binaries, dir, port)
    },
    running,
    freeze: () => signalFamily(child, "SIGSTOP"),
    thaw: () => signalFamily(child, "SIGCONT"),
    close: async () => {
      await stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** The server process and its children (the backends, checkpointer, autovacuum…), found in /proc. */
const signalFamily = (child: ChildProcess | undefined, signal: NodeJS.Signals): void => {
  const pid = child?.pid
  if (pid === undefined) return
  const children = readdirSync("/proc").filter((name) => /^\d+$/.test(name)).flatMap((name) => {
    try {
      // Field 4 of /proc/PID/stat is the parent pid (after the command name in parentheses, which may hold spaces).
      const stat = readFileSync(`/proc/${name}/stat`, "utf8")
      return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid ? [Number(name)] : []
    } catch {
      return []
    }
  })
  for (const p of [pid, ...children]) {
    try {
      process.kill(p, signal)
    } catch {
      // Gone meanwhile: nothing to freeze or thaw.
    }
  }
}

/**
 * One throwaway server for the tests of a describe block (call it inside the block): started before them, closed
 * after them. The returned function hands it to a test, which takes a `freshDatabase()` on it.
 */
export const serverForTests = (availability: PostgresAvailability): (() => PostgresServer) => {
  let server: PostgresServer | undefined
  beforeAll(async () => {
    if ("skip" in availability) return
    server = await startPostgres(availability)
  }, 60_000)
  afterAll(async () => {
    await server?.close()
  })
  return () => server!
}
