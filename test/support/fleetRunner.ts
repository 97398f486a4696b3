/**
 * One cluster runner for test/integration/fleet-cluster.test.ts, as its own process (`node test/support/fleetRunner.ts`
 * with the FLEET_* variables of fleetProcess.ts): `clusterRunnerLayer` on Postgres hosting a Counter entity (persisted
 * messages) and a singleton. It talks to the test over Node's IPC channel only (fleetProcess.ts has the messages):
 * the test asks it to send Increments to any id (so a message leaves this runner for whichever runner owns the id),
 * and it reports the singleton's start, heartbeats and stop with its own clock.
 */
import { NodeRuntime } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted, References, Schedule, Schema } from "effect"
import { ClusterSchema, Entity, RunnerAddress, Singleton } from "effect/cluster"
import { Rpc } from "effect/rpc"
import { SqlClient } from "effect/sql"
import { clusterRunnerLayer } from "../../src/layers/fleet/clusterRunner.ts"
import type { FleetCommand, FleetEvent } from "./fleetProcess.ts"

const env = (name: string): string => {
  const value = process.env[name]
  if (value === undefined || value === "") throw new Error(`fleetRunner: ${name} is not set`)
  return value
}

const name = env("FLEET_RUNNER_NAME")
const report = (event: FleetEvent) => process.send?.(event)

// The test going away (its IPC channel closed) must not leave runners behind.
process.on("disconnect", () => process.exit(0))

export const Increment = Rpc.make("Increment", {
  payload: { amount: Schema.Int, tag: Schema.String },
  success: Schema.Struct({ count: Schema.Int, runner: Schema.String })
}).annotate(ClusterSchema.Persisted, true)

export const Counter = Entity.make("Counter", [Increment])

const CounterLive = Counter.toLayer(Effect.gen(function*() {
  const address = yield* Entity.CurrentAddress
  const sql = yield* SqlClient.SqlClient
  let count = 0
  return Counter.of({
    // Every delivery is recorded, so the test can count them per tag (at-least-once: duplicates are legal).
    Increment: ({ payload }) =>
      sql`INSERT INTO fleet_deliveries (tag, entity_id, runner) VALUES (${payload.tag}, ${address.entityId}, ${name})`
        .pipe(
          Effect.orDie,
          Effect.map(() => {
            count += payload.amount
            return { count, runner: name }
          })
        )
  })
}))

const beat = Effect.sync(() => report({ event: "beat", runner: name, at: Date.now() }))

const SingletonLive = Singleton.make(
  "fleet-test-singleton",
  Effect.sync(() => report({ event: "singleton-start", runner: name, at: Date.now() })).pipe(
    Effect.andThen(beat.pipe(Effect.repeat(Schedule.spaced("100 millis")))),
    Effect.asVoid,
    Effect.onExit(() => Effect.sync(() => report({ event: "singleton-stop", runner: name, at: Date.now() })))
  )
)

const Control = Layer.effectDiscard(Effect.gen(function*() {
  const clientFor = yield* Counter.client
  const run = Effect.runForkWith(yield* Effect.context<never>())
  const onMessage = (message: FleetCommand) => {
    run(
      clientFor(message.id).Increment({ amount: message.amount, tag: message.tag }).pipe(
        Effect.match({
          onSuccess: (value) => report({ event: "reply", requestId: message.requestId, ok: true, ...value }),
          onFailure: (error) => report({ event: "reply", requestId: message.requestId, ok: false, error: String(error) })
        })
      )
    )
  }
  process.on("message", onMessage)
  yield* Effect.addFinalizer(() => Effect.sync(() => process.off("message", onMessage)))
  report({ event: "ready", runner: name, at: Date.now() })
}))

const ms = (variable: string) => `${Number(env(variable))} millis` as const

const Cluster = clusterRunnerLayer({
  runnerAddress: RunnerAddress.make("127.0.0.1", Number(env("FLEET_RUNNER_PORT"))),
  shardsPerGroup: Number(env("FLEET_SHARDS")),
  shardLockExpiration: ms("FLEET_LOCK_EXPIRATION_MS"),
  shardLockRefreshInterval: ms("FLEET_LOCK_REFRESH_MS"),
  refreshAssignmentsInterval: ms("FLEET_ASSIGNMENTS_MS"),
  entityMessagePollInterval: ms("FLEET_MESSAGE_POLL_MS"),
  runnerHealthCheckInterval: ms("FLEET_HEALTH_CHECK_MS")
})

const Database = PgClient.layer({
  url: Redacted.make(env("FLEET_DATABASE_URL")),
  maxConnections: 6,
  applicationName: `fleet-runner ${name}`
})

Layer.mergeAll(CounterLive, SingletonLive, Control).pipe(
  Layer.provide(Cluster),
  Layer.provide(Database),
  Layer.provide(Layer.succeed(References.MinimumLogLevel, process.env.FLEET_LOG_LEVEL === "debug" ? "Debug" : "Info")),
  Layer.launch,
  NodeRuntime.runMain
)
