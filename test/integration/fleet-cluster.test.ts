/**
 * Effect's cluster on Postgres, as the fleet's base (issue 18): real runner processes (test/support/fleetRunner.ts)
 * on a throwaway Postgres, through src/layers/fleet/clusterRunner.ts.
 *
 * Facts checked here (effect 4.1.0, @effect/platform-node 4.1.0, @effect/sql-pg 4.0.5, Postgres 15, Node 24;
 * 2026-12-02; figures from seven runs of this file, ~31 s each):
 * - Everything is in `effect/cluster` (Sharding, Entity, Singleton, ShardingConfig, SocketRunner, RunnerHealth,
 *   Runners, SqlMessageStorage, SqlRunnerStorage, ClusterSchema) and `effect/rpc` (Rpc, RpcSerialization); the TCP
 *   transport is `NodeClusterSocket.layerSocketServer` + `layerClientProtocol` (@effect/platform-node) and the message
 *   storage needs `NodeCrypto.layerDigest`. No missing export, no `unstable/` path.
 * - `NodeClusterSocket.layer({ storage: "sql", shardingConfig })` works but builds ShardingConfig with
 *   `layerFromEnv`: unset fields come from env vars in constant case (checked: SHARDS_PER_GROUP=7 changes
 *   shardsPerGroup) and a malformed one fails even when overridden (checked: PORT=abc → ConfigError with an explicit
 *   runnerAddress). clusterRunner.ts composes the same pieces with `ShardingConfig.layer` (no env) instead.
 * - Tables, created at start by each runner (two starting together are fine), checked in the last process test:
 *   cluster_runners, cluster_locks, cluster_runner_migrations, cluster_messages, cluster_replies, cluster_migrations
 *   (the prefix is an option).
 * - From the source (SqlRunnerStorage.ts, Sharding.ts; not tested separately): shard locks on Postgres are session
 *   advisory locks held on one connection reserved from the runner's pool for its lifetime (a pool of 1 would leave
 *   nothing for messages; these runners use 6). The library sets that session's
 *   `idle_session_timeout` to shardLockExpiration (Postgres ≥ 14), which is what frees a frozen runner's locks.
 *   Refresh period = min(shardLockRefreshInterval, shardLockExpiration / 3). Liveness = `last_heartbeat` in
 *   cluster_runners younger than shardLockExpiration, plus a ping health check (RunnerHealth.layerPing).
 * - Timings used: shardLockExpiration 6 s (3 s worked alone; 6 s leaves a loaded CI machine room), refresh 1 s,
 *   refreshAssignmentsInterval 0.5 s, entityMessagePollInterval 1 s, runnerHealthCheckInterval 2 s, 30 shards.
 *   Measured (with a 3 s expiration):
 *   - SIGKILL of the singleton's runner → singleton on the other in 2.3–3.2 s (its session ends with the process,
 *     so the locks are free at once; the wait is the dead runner's heartbeat ageing out of the runner list).
 *   - a persisted message sent to an id of the dead runner right after the kill: answered by the new owner 2.3–3.4 s
 *     after the kill (stored first, delivered when the shard is acquired). In-memory entity state starts over there.
 *   - SIGSTOP of the singleton's runner → singleton on the other in 2.1–3.1 s (heartbeat and idle session expire).
 *   - SIGCONT after 5 s frozen: the resumed runner's OLD singleton fiber keeps running until the runner notices it
 *     lost its locks: 1–2 more beats, stopped 84–155 ms after SIGCONT, i.e. ~0.1 s of the singleton running
 *     on two runners at once. No log line at Info level says so. The resumed runner then rejoins the ring and the
 *     singleton moves back to it cleanly (the other stops, then it starts ~1.2 s after SIGCONT): no double ownership
 *     afterwards (#6508 not reproduced). A lease is not a fence: anything that must happen once (nonces) needs a
 *     uniqueness constraint in Postgres.
 *   - SIGTERM (graceful): singleton on the other runner in 0.2–0.5 s, the runner exits at the same time (handoff
 *     releases the locks, no lease wait).
 *   - 49 persisted messages, each delivered exactly once in these runs (at-least-once is the contract).
 *   - startup hand-over (first runner takes all shards, gives some to the second): no overlap of singleton runs.
 *   - The runners log nothing above Debug through all of this (no warning on a lost lock or a freeze).
 * - A database user without CREATE on the schema: the library's migrations die (`Effect.orDie`, a defect, not a
 *   typed failure) with SqlError "Query failed", cause "permission denied for schema public"; clusterRunner.ts maps
 *   defects and failures alike to NetworkError / ResourceError (runner port taken) with hints.
 */
import { writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { PgClient } from "@effect/sql-pg"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { RunnerAddress } from "effect/cluster"
import { Reactivity } from "effect/reactivity"
import { ValidationError } from "../../src/domain/errors.ts"
import { clusterRunnerLayer, parseRunnerAddress } from "../../src/layers/fleet/clusterRunner.ts"
import {
  type FleetEvent,
  type FleetRunner,
  type FleetTimings,
  freePort,
  startFleetRunner
} from "../support/fleetProcess.ts"
import { findPostgres, type PostgresServer, startPostgres } from "../support/postgres.ts"

const postgres = findPostgres()
if ("skip" in postgres) console.warn(`fleet cluster tests skipped: ${postgres.skip}`)

/**
 * Short on purpose, so the file runs in well under a minute: a 3 s lease (refreshed every second, a third of it),
 * runner list read every 0.5 s, health pings every 2 s. 30 shards: the hash ring still spreads ids over two runners
 * and each acquisition is one 30-lock statement. The refresh's own timeout is the refresh period (1 s here): on a
 * badly overloaded machine a slower refresh counts as lock storage lost and shards move; if this file flakes under
 * load, raise lockExpirationMs and lockRefreshMs together.
 */
const timings: FleetTimings = {
  shards: 30,
  lockExpirationMs: 6_000,
  lockRefreshMs: 1_000,
  assignmentsMs: 500,
  messagePollMs: 1_000,
  healthCheckMs: 2_000
}
/** The generous bound for anything that waits on a lease: never a timing assertion, a "did it happen at all". */
const leaseBound = timings.lockExpirationMs + 20_000

let server: PostgresServer | undefined
const running = (): PostgresServer => server!
let databaseUrl = ""
const runners = new Map<string, FleetRunner>()

const query = <A>(text: string): Promise<ReadonlyArray<A>> =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const sql = yield* PgClient.make({ url: Redacted.make(databaseUrl), maxConnections: 1 }).pipe(
      Effect.provideService(Reactivity.Reactivity, yield* Reactivity.make)
    )
    return (yield* sql.unsafe(text)) as unknown as ReadonlyArray<A>
  })))

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const start = async (name: string) => {
  const runner = await startFleetRunner(name, databaseUrl, timings)
  runners.set(name, runner)
  return runner
}

const live = () => [...runners.values()].filter((r) => r.alive())

type Stamped = Exclude<FleetEvent, { readonly event: "reply" }>
const stamped = (r: FleetRunner): ReadonlyArray<Stamped> => r.events.flatMap((e) => (e.event === "reply" ? [] : [e]))

/** The runners whose singleton beat (their own clock) in [from, to). */
const beating = (from: number, to: number): ReadonlyArray<string> =>
  [...runners.values()].filter((r) => stamped(r).some((e) => e.event === "beat" && e.at >= from && e.at < to))
    .map((r) => r.name)

/** How many 200 ms slots of [from, to) hold beats of two runners or more (the singleton ran twice at once). */
const overlaps = (from: number, to: number): number => {
  const slots = new Map<number, Set<string>>()
  for (const r of runners.values()) {
    for (const e of stamped(r)) {
      if (e.event !== "beat" || e.at < from || e.at >= to) continue
      const slot = Math.floor((e.at - from) / 200)
      slots.set(slot, (slots.get(slot) ?? new Set()).add(r.name))
    }
  }
  return [...slots.values()].filter((names) => names.size > 1).length
}

/** Each run of the singleton on `r` as [start, stop] (its own clock); an unfinished run ends at its last beat. */
const runs = (r: FleetRunner): ReadonlyArray<readonly [number, number]> => {
  const out: Array<readonly [number, number]> = []
  let started: number | undefined
  let last = 0
  for (const e of stamped(r)) {
    if (e.event === "singleton-start") started = e.at
    if (e.event === "beat") last = e.at
    if (e.event === "singleton-stop" && started !== undefined) {
      out.push([started, e.at])
      started = undefined
    }
  }
  if (started !== undefined) out.push([started, r.alive() ? Number.POSITIVE_INFINITY : last])
  return out
}

/** Pairs of runs on different runners that intersect, among the runs still going at or after `from`. */
const doubleRuns = (from: number): ReadonlyArray<string> => {
  const all = [...runners.values()].flatMap((r) => runs(r).filter(([, end]) => end >= from).map((run) => ({ r: r.name, run })))
  return all.flatMap((x, i) =>
    all.slice(i + 1).filter((y) => y.r !== x.r && x.run[0] < y.run[1] && y.run[0] < x.run[1])
      .map((y) => `${x.r}[${x.run}] with ${y.r}[${y.run}]`)
  )
}

/** The runners whose last singleton event is a start or a beat (running as far as they told), alive ones only. */
const holders = (): ReadonlyArray<string> =>
  live().filter((r) => {
    const last = stamped(r).filter((e) => e.event !== "ready").at(-1)
    return last !== undefined && last.event !== "singleton-stop"
  }).map((r) => r.name)

/** Which runner the singleton beats on now (waits for a quiet 1 s with exactly one). */
const currentHolder = async (ms = leaseBound): Promise<FleetRunner> => {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    const now = Date.now()
    const names = beating(now - 1_000, now + 1)
    if (names.length === 1) return runners.get(names[0]!)!
    await sleep(250)
  }
  throw new Error(`no single singleton holder within ${ms} ms: beating ${beating(Date.now() - 1_000, Date.now())}`)
}

const output = (tail = 3_000) =>
  [...runners.values()].map((r) => `--- runner ${r.name}\n${r.output().slice(-tail)}`).join("\n")

/** Ids sent in the first test, with the runner that handled each. */
const owners = new Map<string, string>()
/** Every tag sent whose reply was ok: each must be delivered at least once. */
const sentTags: Array<string> = []

describe.skipIf("skip" in postgres)("fleet on Effect's cluster + Postgres (real runner processes)", () => {
  beforeAll(async () => {
    if ("skip" in postgres) return
    server = await startPostgres(postgres)
    databaseUrl = await server.freshDatabase()
    await query("CREATE TABLE fleet_deliveries (tag TEXT NOT NULL, entity_id TEXT NOT NULL, runner TEXT NOT NULL)")
    // Two runners starting together also shows the cluster's migrations are safe to race.
    await Promise.all([start("A"), start("B")])
  }, 60_000)

  afterAll(async () => {
    // The runners' own logs (the cluster's warnings), for a look after a run: FLEET_TEST_LOGS=/some/file.
    if (process.env.FLEET_TEST_LOGS !== undefined) writeFileSync(process.env.FLEET_TEST_LOGS, output(Infinity))
    await Promise.all([...runners.values()].map((r) => r.stop(5_000)))
    await server?.close()
  }, 30_000)

  it("messages sent from one runner reach ids owned by either, and both runners own some", async () => {
    const a = runners.get("A")!
    const b = runners.get("B")!
    // The hash ring settles once both runners are registered: a few assignment reads.
    await sleep(timings.assignmentsMs * 4)
    const ids = Array.from({ length: 24 }, (_, i) => `counter-${i}`)
    const fromA = await Promise.all(ids.map((id) => a.increment(id, 1, `spread-a-${id}`, 20_000)))
    for (const [i, reply] of fromA.entries()) {
      assert.isTrue(reply.ok, `A → ${ids[i]}: ${reply.error}\n${output()}`)
      owners.set(ids[i]!, reply.runner!)
      sentTags.push(`spread-a-${ids[i]}`)
    }
    assert.deepStrictEqual(new Set(owners.values()), new Set(["A", "B"]), `owners: ${JSON.stringify([...owners])}`)
    // The same ids from B: the same owners (ownership is a property of the id, not of the sender), counts carried on.
    const fromB = await Promise.all(ids.map((id) => b.increment(id, 1, `spread-b-${id}`, 20_000)))
    for (const [i, reply] of fromB.entries()) {
      assert.isTrue(reply.ok, `B → ${ids[i]}: ${reply.error}`)
      assert.strictEqual(reply.runner, owners.get(ids[i]!), `owner of ${ids[i]}`)
      assert.strictEqual(reply.count, 2, `count of ${ids[i]}`)
      sentTags.push(`spread-b-${ids[i]}`)
    }
    const spread = [...owners.values()].filter((r) => r === "A").length
    console.log(`[fleet] ${ids.length} ids over 2 runners: A owns ${spread}, B owns ${ids.length - spread}`)
  }, 60_000)

  it("the singleton runs on exactly one runner", async () => {
    const holder = await currentHolder()
    const from = Date.now()
    await sleep(2_000)
    assert.deepStrictEqual(beating(from, Date.now()), [holder.name])
    assert.deepStrictEqual(holders(), [holder.name])
    // Since the start, hand-overs included (the first runner up takes every shard, then gives some to the second).
    assert.deepStrictEqual(doubleRuns(0), [], output())
  }, 30_000)

  it("SIGKILL of the singleton's runner: it restarts on the other, and a message sent to a dead runner's id arrives", async () => {
    const victim = await currentHolder()
    const survivor = live().find((r) => r !== victim)!
    const orphanId = [...owners].find(([, owner]) => owner === victim.name)![0]
    const killedAt = Date.now()
    victim.signal("SIGKILL")
    // Persisted: the send is stored before delivery is attempted, so it survives its owner's death.
    const reply = survivor.increment(orphanId, 5, "orphan", leaseBound)
    const started = await survivor.waitFor(
      (e) => e.event === "singleton-start" && e.at > killedAt,
      leaseBound,
      "singleton start after the kill"
    ) as Stamped
    console.log(
      `[fleet] failover after SIGKILL: singleton started on ${survivor.name} ${started.at - killedAt} ms after the kill ` +
        `(lock expiration ${timings.lockExpirationMs} ms)`
    )
    const orphan = await reply
    console.log(
      `[fleet] message to ${orphanId} (owned by the dead ${victim.name}) answered ${Date.now() - killedAt} ms after the ` +
        `kill, count ${orphan.count} (in-memory entity state starts over on the new owner)`
    )
    assert.isTrue(orphan.ok, `${orphan.error}\n${output()}`)
    assert.strictEqual(orphan.runner, survivor.name)
    sentTags.push("orphan")
    assert.deepStrictEqual(holders(), [survivor.name])
    assert.deepStrictEqual(doubleRuns(killedAt - 1_000), [], output())
  }, 60_000)

  it("SIGSTOP past the lock expiration, then SIGCONT: the singleton ends on one runner only", async () => {
    await start("C")
    // Let the ring take C in (some shards, maybe the singleton's, move to it).
    await sleep(timings.assignmentsMs * 4 + timings.lockRefreshMs * 2)
    const frozen = await currentHolder()
    const other = live().find((r) => r !== frozen)!
    const stoppedAt = Date.now()
    frozen.signal("SIGSTOP")
    const started = await other.waitFor(
      (e) => e.event === "singleton-start" && e.at > stoppedAt,
      leaseBound,
      "singleton start while the holder is frozen"
    ) as Stamped
    console.log(`[fleet] failover after SIGSTOP: singleton started on ${other.name} ${started.at - stoppedAt} ms after the stop`)
    // Frozen well past the lease, as a long GC pause or a suspended VM would be.
    await sleep(Math.max(0, stoppedAt + timings.lockExpirationMs + 2_000 - Date.now()))
    const resumedAt = Date.now()
    frozen.signal("SIGCONT")
    // The resumed runner learns it lost its locks at its next refresh; then it may take shards back (rebalance).
    await sleep(timings.lockExpirationMs + 2_000)
    // The frozen runner's old singleton fiber resumes too: it runs until that runner's next lock refresh finds the
    // lock gone. Every beat of it is a beat while the new holder also runs: a lease is not a fence.
    const staleStop = stamped(frozen).find((e) => e.event === "singleton-stop" && e.at >= resumedAt)
    const stale = stamped(frozen).filter((e) =>
      e.event === "beat" && e.at >= resumedAt && (staleStop === undefined || e.at <= staleStop.at)
    )
    const timeline = [frozen, other].flatMap((r) =>
      stamped(r).filter((e) => e.at >= resumedAt && e.event !== "beat").map((e) => `${e.runner} ${e.event} +${e.at - resumedAt}`)
    )
    console.log(
      `[fleet] after SIGCONT: ${frozen.name}'s old singleton beat ${stale.length} more time(s) (while ` +
        `${other.name}'s ran), stopped ${staleStop === undefined ? "never" : `+${staleStop.at - resumedAt} ms`}; ` +
        `then (ms after SIGCONT): ${timeline.join(", ")}; overlapping 200 ms slots since the stop: ` +
        `${overlaps(stoppedAt, Date.now())}`
    )
    assert.isDefined(staleStop, `the resumed runner's old singleton never stopped\n${output()}`)
    // Once the stale run is over, runs never intersect again (hand-backs stop before they start).
    assert.deepStrictEqual(doubleRuns(staleStop!.at + 1), [], output())
    // Whatever moved meanwhile, it has settled on one runner.
    const holder = await currentHolder()
    const from = Date.now()
    await sleep(2_000)
    assert.deepStrictEqual(beating(from, Date.now()), [holder.name], output())
    assert.deepStrictEqual(holders(), [holder.name], output())
  }, 60_000)

  it("SIGTERM of the singleton's runner: a graceful handoff, without waiting for the lease", async () => {
    const leaving = await currentHolder()
    const staying = live().find((r) => r !== leaving)!
    const stoppedAt = Date.now()
    const stopped = leaving.stop(15_000)
    const started = await staying.waitFor(
      (e) => e.event === "singleton-start" && e.at > stoppedAt,
      leaseBound,
      "singleton start after a graceful stop"
    ) as Stamped
    await stopped
    console.log(
      `[fleet] graceful stop: singleton started on ${staying.name} ${started.at - stoppedAt} ms after SIGTERM; ` +
        `${leaving.name} exited ${Date.now() - stoppedAt} ms after it`
    )
    assert.deepStrictEqual(doubleRuns(stoppedAt), [], output())
    assert.deepStrictEqual(holders(), [staying.name])
  }, 60_000)

  it("every message answered was delivered at least once", async () => {
    const rows = await query<{ tag: string; n: number }>(
      "SELECT tag, COUNT(*)::int AS n FROM fleet_deliveries GROUP BY tag"
    )
    const delivered = new Map(rows.map((r) => [r.tag, r.n]))
    for (const tag of sentTags) assert.isAtLeast(delivered.get(tag) ?? 0, 1, `delivery of ${tag}`)
    const tables = await query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'cluster%' ORDER BY table_name"
    )
    assert.deepStrictEqual(tables.map((t) => t.table_name), [
      "cluster_locks",
      "cluster_messages",
      "cluster_migrations",
      "cluster_replies",
      "cluster_runner_migrations",
      "cluster_runners"
    ])
    const duplicated = rows.filter((r) => r.n > 1)
    console.log(`[fleet] ${sentTags.length} messages, ${duplicated.length} delivered more than once: ${JSON.stringify(duplicated)}`)
  }, 30_000)

  describe("start-up failures an operator can fix", () => {
    it("a runner address that is not host:port: a ValidationError naming the setting", () => {
      assert.deepStrictEqual(parseRunnerAddress("10.0.0.5:34431", "R3MES_X"), RunnerAddress.make("10.0.0.5", 34431))
      assert.deepStrictEqual(parseRunnerAddress("[::1]:9000", "R3MES_X"), RunnerAddress.make("::1", 9000))
      for (const bad of ["10.0.0.5", ":80", "host:0", "host:70000", "a b:1"]) {
        const error = parseRunnerAddress(bad, "R3MES_X")
        assert.instanceOf(error, ValidationError, bad)
        assert.include(error instanceof ValidationError ? error.hint ?? "" : "", "R3MES_X")
      }
    })

    /** Builds the runner layer in this process and returns how it failed. */
    const failure = (url: string, port: number) =>
      Effect.runPromise(
        Layer.build(
          clusterRunnerLayer({ runnerAddress: RunnerAddress.make("127.0.0.1", port), shardsPerGroup: timings.shards }).pipe(
            Layer.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 2 }))
          )
        ).pipe(
          Effect.scoped,
          Effect.flip,
          // The pool itself failing (SqlError) is not what these tests are about.
          Effect.flatMap((e) => (e._tag === "SqlError" ? Effect.die(e) : Effect.succeed(e)))
        )
      )

    it("its runner port taken: a ResourceError naming the address", async () => {
      const port = await freePort()
      const holder = createServer().listen(port, "127.0.0.1")
      await new Promise((resolve) => holder.once("listening", resolve))
      try {
        const error = await failure(await running().freshDatabase(), port)
        assert.strictEqual(error._tag, "ResourceError")
        assert.include(error.message, `127.0.0.1:${port}`)
        assert.isDefined(error.hint)
      } finally {
        holder.close()
      }
    }, 30_000)

    it("a database user that may not create its tables: a NetworkError with a hint, no password", async () => {
      await query("CREATE ROLE fleet_ro LOGIN PASSWORD 'ro-secret-pw'")
      const url = (await running().freshDatabase()).replace(`r3mes:${running().password}`, "fleet_ro:ro-secret-pw")
      const error = await failure(url, await freePort())
      assert.strictEqual(error._tag, "NetworkError")
      assert.include(error.hint ?? "", "CREATE TABLE")
      assert.notInclude(JSON.stringify({ ...error, message: error.message }), "ro-secret-pw")
      console.log(`[fleet] without CREATE: ${error.message} (${error.cause})`)
    }, 30_000)
  })
})
