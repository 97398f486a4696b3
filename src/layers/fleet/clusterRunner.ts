import { NodeClusterSocket, NodeCrypto } from "@effect/platform-node"
import { Cause, Duration, Effect, Exit, Fiber, Layer, Option, Scope } from "effect"
import {
  type MessageStorage,
  RunnerAddress,
  RunnerHealth,
  Runners,
  type Sharding,
  ShardingConfig,
  SocketRunner,
  SqlMessageStorage,
  SqlRunnerStorage
} from "effect/cluster"
import { RpcSerialization } from "effect/rpc"
import type { SqlClient } from "effect/sql"
import { NetworkError, ResourceError, ValidationError } from "../../domain/errors.ts"

/**
 * This process as a runner of Effect's cluster on Postgres: shard locks and runner registry in SQL
 * (`SqlRunnerStorage`, Postgres advisory locks), persisted messages in SQL (`SqlMessageStorage`), runners talking
 * to each other over TCP (the socket transport of `@effect/platform-node`'s NodeClusterSocket, assembled here from
 * its pieces). Every runner of a fleet builds it on the same database with the same `shardsPerGroup`.
 *
 * Why not `NodeClusterSocket.layer({ storage: "sql" })` itself: it reads ShardingConfig from the environment
 * (`ShardingConfig.layerFromEnv`, constant case) under the explicit options. Checked: `SHARDS_PER_GROUP=7` in an
 * operator's shell silently changes an unset field (runners then disagree on shards), and `PORT=abc` fails the layer
 * with a ConfigError even when the address is given. Here every value is a parameter (the miner's R3MES_* settings
 * feed them) and nothing is read from the environment.
 */

export interface ClusterRunnerOptions {
  /** Where the other runners reach this one (host:port); also where it listens unless `listenAddress` says. */
  readonly runnerAddress: RunnerAddress.RunnerAddress
  /** Listen somewhere else than `runnerAddress` (e.g. 0.0.0.0 behind a NAT'd address). */
  readonly listenAddress?: RunnerAddress.RunnerAddress | undefined
  /**
   * Shards per group; must be equal on every runner (entity ids hash onto it). Default 300 (the library's): enough
   * for a few dozen runners to get an even share, and one advisory lock each costs nothing.
   */
  readonly shardsPerGroup?: number | undefined
  /**
   * How long a silent runner keeps its shards (and so its singletons): the failover time after a crash, and the
   * bound on a frozen runner (Postgres ends its lock session after this idle time, `idle_session_timeout`, 14+).
   * Default 35 s (the library's): a GC pause or a slow database never moves shards; a dead machine's work resumes
   * elsewhere within a minute.
   */
  readonly shardLockExpiration?: Duration.Input | undefined
  /**
   * Lock refresh period; the library uses at most a third of the expiration anyway, so two refreshes can fail before
   * the lock lapses. Default 10 s.
   */
  readonly shardLockRefreshInterval?: Duration.Input | undefined
  /**
   * How often the runner list is read and shards reassigned. Default 3 s: failover is expiration + this, and one
   * small query per runner per period is nothing for Postgres.
   */
  readonly refreshAssignmentsInterval?: Duration.Input | undefined
  /**
   * Safety-net poll of the message tables (a shard's messages are also read as soon as it is acquired, and a send
   * notifies its target directly). Default 10 s.
   */
  readonly entityMessagePollInterval?: Duration.Input | undefined
  /**
   * How often one runner pings the others and marks silent ones unhealthy (which moves their shards before their
   * heartbeat expires). Default 1 min (the library's): the heartbeat expiration is the primary detector.
   */
  readonly runnerHealthCheckInterval?: Duration.Input | undefined
  /** Table prefix (`<prefix>_runners`, `<prefix>_locks`, `<prefix>_messages`…). Default `cluster`. */
  readonly tablePrefix?: string | undefined
  /**
   * Every shard group of the fleet (the same on every runner), and those whose shards this runner takes. Default:
   * `["default"]` both.
   */
  readonly shardGroups?: { readonly available: ReadonlyArray<string>; readonly assigned: ReadonlyArray<string> } | undefined
}

/** `host:port` (an IPv6 host in brackets) as a RunnerAddress, or why not, naming `setting`. */
export const parseRunnerAddress = (text: string, setting: string): RunnerAddress.RunnerAddress | ValidationError => {
  const match = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text.trim())
  const port = match === null ? Number.NaN : Number(match[3])
  if (match === null || !(port > 0 && port < 65536)) {
    return new ValidationError({
      message: `${setting}: "${text}" is not host:port`,
      hint: `set ${setting} to this runner's address as the other runners reach it, e.g. 10.0.0.5:34431`,
      field: setting
    })
  }
  return RunnerAddress.make(match[1] ?? match[2]!, port)
}

const shardingConfig = (options: ClusterRunnerOptions) =>
  ShardingConfig.layer({
    runnerAddress: Option.some(options.runnerAddress),
    runnerListenAddress: Option.fromUndefinedOr(options.listenAddress),
    ...defined({
      shardsPerGroup: options.shardsPerGroup,
      shardLockExpiration: options.shardLockExpiration,
      shardLockRefreshInterval: options.shardLockRefreshInterval,
      refreshAssignmentsInterval: options.refreshAssignmentsInterval,
      entityMessagePollInterval: options.entityMessagePollInterval,
      runnerHealthCheckInterval: options.runnerHealthCheckInterval,
      availableShardGroups: options.shardGroups?.available,
      assignedShardGroups: options.shardGroups?.assigned
    })
  })

const defined = <T extends Record<string, unknown>>(record: T): Partial<{ [K in keyof T]: Exclude<T[K], undefined> }> =>
  Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined)) as never

/**
 * Sharding (plus Runners and MessageStorage, for tests and tools) for this runner, on the SqlClient it is given (a
 * PgClient: one pool may be shared with the Postgres journal). Building it creates the cluster's tables if needed,
 * listens on the runner address, registers the runner and starts taking shards; closing its scope hands the shards
 * off and unregisters.
 */
export const clusterRunnerLayer = (
  options: ClusterRunnerOptions
): Layer.Layer<Provided, NetworkError | ResourceError, SqlClient.SqlClient> => {
  const prefix = { prefix: options.tablePrefix }
  const transport = Layer.provide(SocketRunner.layer, [
    NodeClusterSocket.layerSocketServer,
    NodeClusterSocket.layerClientProtocol
  ])
  // Liveness by pinging the runner's own socket: no orchestrator (k8s) is assumed.
  const health = RunnerHealth.layerPing.pipe(
    Layer.provide(Runners.layerRpc),
    Layer.provide(NodeClusterSocket.layerClientProtocol)
  )
  const runner = transport.pipe(
    Layer.provide(health),
    Layer.provideMerge(SqlMessageStorage.layerWith(prefix).pipe(Layer.provide(NodeCrypto.layerDigest))),
    Layer.provide(SqlRunnerStorage.layerWith(prefix)),
    Layer.provide(shardingConfig(options)),
    // The library's binary encoding of the RPC schemas: what NodeClusterSocket uses by default.
    Layer.provide(RpcSerialization.layerSchemaBinary()),
    Layer.catchCause(explain(options))
  )
  return runner
}

/**
 * A runner's shutdown, bounded; for `clusterRunnerLayer` with the pool it runs on (`Layer.provide` inside), since the
 * runner's loops keep their connections while its close is stuck and the pool's close would wait for them. Seen in the
 * fleet's tests: a runner frozen past its lease, then done, never finished closing, so its process never exited.
 * Located with a finalizer probe: the close of the cluster's RPC server (the runner-to-runner socket) waited on the
 * fibers of requests it was serving for the other runner, which interrupting did not end; meanwhile its loops went on
 * logging "No healthy runners available". What a shutdown cut short leaves is what a crash leaves: the runner has
 * already unregistered (the entity's close does that first), Postgres frees its shard locks when the process exits,
 * and the signer entity starts on another runner.
 */
export const boundedShutdown = <A, E, R>(layer: Layer.Layer<A, E, R>, timeout: Duration.Duration): Layer.Layer<A, E, R> =>
  Layer.effectContext(Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(layer, scope).pipe(
      Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
    )
    // The close runs on a fiber of its own: a finalizer is uninterruptible, so a timeout around it would wait for it.
    yield* Effect.addFinalizer((exit) =>
      Effect.forkDetach(Scope.close(scope, exit)).pipe(
        Effect.flatMap(Fiber.await),
        Effect.asVoid,
        Effect.timeoutOrElse({
          duration: timeout,
          orElse: () =>
            Effect.logWarning(
              `cluster: this runner's shutdown did not end within ${Duration.format(timeout)}; leaving it to Postgres ` +
                "(its shard locks end with the process)"
            )
        })
      )
    )
    return context
  }))

type Provided = Sharding.Sharding | Runners.Runners | MessageStorage.MessageStorage

const tagOf = (u: unknown): unknown => (typeof u === "object" && u !== null && "_tag" in u ? u._tag : undefined)

/**
 * The start-up failures an operator can fix, as the miner's errors. The cluster's migrations die on a SqlError
 * (`Effect.orDie` inside the library), so defects are looked at too.
 */
const explain = (options: ClusterRunnerOptions) => (cause: Cause.Cause<unknown>): Layer.Layer<Provided, NetworkError | ResourceError> => {
  const error = Cause.squash(cause)
  const message = messageChain(error)
  if (tagOf(error) === "SocketServerError") {
    return failWith(
      new ResourceError({
        message: `cluster: cannot listen on ${formatAddress(options.listenAddress ?? options.runnerAddress)}`,
        hint: "another process holds that port, or the host is not this machine's: pick a free runner address",
        cause: message,
        resource: "runner address"
      })
    )
  }
  if (tagOf(error) === "SqlError") {
    return failWith(
      new NetworkError({
        message: "cluster: could not create or open its tables (cluster_*) in the fleet database",
        hint: "check that the fleet database is reachable and that its user may CREATE TABLE in the public schema",
        cause: message,
        service: "postgres"
      })
    )
  }
  return Layer.effectContext(Cause.hasInterruptsOnly(cause) ? Effect.interrupt : Effect.die(error))
}

/** An error's message and its causes' (a SqlError's says "Query failed"; its cause says why). */
const messageChain = (error: unknown): string => {
  const parts: Array<string> = []
  for (let e = error, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if (!parts.includes(e.message)) parts.push(e.message)
  }
  return parts.length === 0 ? String(error) : parts.join(": ")
}

/** A layer that fails with `error`, typed as the layer it stands for (`Layer.catchCause` keeps what both provide). */
const failWith = (error: NetworkError | ResourceError): Layer.Layer<Provided, NetworkError | ResourceError> =>
  Layer.effectContext(Effect.fail(error))

const formatAddress = (address: RunnerAddress.RunnerAddress): string =>
  address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`
