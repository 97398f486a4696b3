import { hostname } from "node:os"
import { Context, Duration, Effect, Layer, Option, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import type { Hex } from "viem"
import { privateKeyToAccount } from "viem/accounts"
import { type MiningError, ValidationError } from "../domain/errors.ts"
import type { MinerConfig } from "../domain/MinerConfig.ts"
import { resolveFleetRunner } from "../domain/minerSettings.ts"
import { PgNonceLedger } from "../layers/chain/PgNonceLedger.ts"
import { make as makeViemChain, makeWithSigner } from "../layers/chain/ViemChain.ts"
import {
  accountSignerEntityLayer,
  accountSignerId,
  LocalAccountSigner,
  remoteAccountSigner,
  signerShardGroup
} from "../layers/fleet/accountSigner.ts"
import { boundedShutdown, clusterRunnerLayer, parseRunnerAddress } from "../layers/fleet/clusterRunner.ts"
import { PgFleetRoster } from "../layers/fleet/PgFleetRoster.ts"
import { holdRunnerName } from "../layers/fleet/runnerName.ts"
import { openPgPool } from "../layers/postgres/pgPool.ts"
import { acquireDataDirLock } from "../layers/journal/dataDirLock.ts"
import { PgJournal } from "../layers/journal/PgJournal.ts"
import { Chain } from "../services/Chain.ts"
import type { FleetRoster } from "../services/FleetRoster.ts"
import { Journal } from "../services/Journal.ts"
import { NonceLedger } from "../services/NonceLedger.ts"
import { journalPath } from "./adapters.ts"
import type { ChainEndpoint } from "./chainEndpoint.ts"

/**
 * Fleet mode (DESIGN.md "Fleet"): runner processes on many machines mine for one account with one Postgres. Each
 * runner journals into the fleet's shared journal as the owner of what it starts, and signs through the account's
 * nonce ledger there, so no two runners ever use one nonce. Single-machine mode (no R3MES_FLEET_DATABASE_URL) is
 * untouched by any of this.
 */
export interface Fleet {
  readonly databaseUrl: Redacted.Redacted<string>
  /** This runner's name: the owner of its transactions, the same after a restart. */
  readonly runner: string
  /**
   * The runners as Effect's cluster (R3MES_FLEET_ADDRESS), the account's signer an entity on one of them; none: each
   * runner signs for itself through the nonce ledger.
   */
  readonly cluster?: FleetCluster | undefined
}

export interface FleetCluster {
  /** host:port where the other runners reach this one. */
  readonly address: string
  /** Whether this runner may host the account's signer (R3MES_FLEET_SIGNERS). */
  readonly maySign: boolean
  /** How long a silent runner keeps the signer (R3MES_FLEET_LEASE). */
  readonly lease: Duration.Duration
}

/** The fleet this runner belongs to, when R3MES_FLEET_DATABASE_URL is set. */
export const fleetOf = (
  config: Pick<MinerConfig, "fleetDatabaseUrl" | "fleetRunner" | "fleetAddress" | "fleetSigners" | "fleetLease">
): Fleet | undefined =>
  Option.match(config.fleetDatabaseUrl, {
    onNone: () => undefined,
    onSome: (databaseUrl) => {
      const runner = resolveFleetRunner(config.fleetRunner, hostname())
      const cluster = Option.match(config.fleetAddress, {
        onNone: () => undefined,
        onSome: (address): FleetCluster => ({
          address,
          maySign: config.fleetSigners.length === 0 || config.fleetSigners.includes(runner),
          lease: config.fleetLease
        })
      })
      return { databaseUrl, runner, cluster }
    }
  })

/**
 * A fleet shares its chain and its content: every runner talks to the same node and the same IPFS store, so neither
 * may be the data dir's embedded one.
 */
export const checkFleetConfig = (config: Pick<MinerConfig, "rpcUrl" | "ipfsApi">): Effect.Effect<void, ValidationError> =>
  Option.isNone(config.rpcUrl)
    ? Effect.fail(
      new ValidationError({
        message: "a fleet mines on a shared chain, but R3MES_RPC_URL is not set (the embedded devnet is this machine's alone)",
        field: "rpcUrl",
        hint: "set R3MES_RPC_URL, R3MES_REGISTRY_ADDRESS and R3MES_PRIVATE_KEY on every runner, or unset R3MES_FLEET_DATABASE_URL"
      })
    )
    : config.ipfsApi === "embedded"
    ? Effect.fail(
      new ValidationError({
        message: "a fleet pins to a shared store, but R3MES_IPFS_API is the embedded node (this machine's alone)",
        field: "ipfsApi",
        hint: "set R3MES_IPFS_API to the fleet's Kubo RPC URL (e.g. http://10.0.0.5:5001) on every runner"
      })
    )
    : Effect.void

/**
 * The fleet's journal for this runner: the shared tables in Postgres, written as `runner`, whose name this process
 * holds while it runs (a second process under it is refused). The data dir is still locked (one runner per data
 * dir: its logs and caches are its own).
 */
export const fleetJournalLayer = (config: Pick<MinerConfig, "dataDir">, fleet: Fleet): Layer.Layer<Journal, MiningError> =>
  Layer.unwrap(
    acquireDataDirLock(journalPath(config.dataDir)).pipe(
      Effect.andThen(holdRunnerName({ url: fleet.databaseUrl, runner: fleet.runner })),
      Effect.as(PgJournal.layer({ url: fleet.databaseUrl, owner: fleet.runner }))
    )
  )

/**
 * The chain as this runner signs on it: every nonce reserved in the account's ledger before its transaction is
 * journaled or sent. The holder is the runner and this boot: nonces a previous boot reserved and never sent are
 * another holder's, sent with their bytes (their intent may be journaled), never signed over.
 */
export const fleetChainLayer = (endpoint: ChainEndpoint, fleet: Fleet): Layer.Layer<Chain, MiningError> =>
  (fleet.cluster === undefined
    ? Layer.effect(
      Chain,
      Effect.gen(function*() {
        const ledger = yield* NonceLedger
        return yield* makeViemChain({
          rpcUrl: endpoint.rpcUrl,
          registry: endpoint.registry,
          privateKey: endpoint.privateKey,
          nonces: { ledger, holder: ledgerHolder(fleet) }
        })
      })
    )
    : clusterChainLayer(endpoint, fleet, fleet.cluster)).pipe(
      Layer.provide(PgNonceLedger.layer({ url: fleet.databaseUrl, maxConnections: 4 }))
    )

const ledgerHolder = (fleet: Fleet) => `${fleet.runner}/${crypto.randomUUID().slice(0, 8)}`

/** How long a runner's cluster part may take to close before the process goes on without it (`boundedShutdown`). */
const clusterShutdownTimeout = Duration.seconds(15)

/**
 * The chain of a runner of the fleet's cluster: this runner joins Effect's cluster on the fleet's Postgres (listening
 * on its R3MES_FLEET_ADDRESS), hosts the account's signer entity when the cluster gives it the signer's shard (and
 * R3MES_FLEET_SIGNERS allows it), and has every write signed by that entity, wherever it lives. The entity signs with
 * the writer of the runner it lives on, through the nonce ledger, which stays the fence.
 */
const clusterChainLayer = (
  endpoint: ChainEndpoint,
  fleet: Fleet,
  cluster: FleetCluster
): Layer.Layer<Chain, MiningError, NonceLedger> =>
  Layer.unwrap(Effect.gen(function*() {
    const runnerAddress = parseRunnerAddress(cluster.address, "R3MES_FLEET_ADDRESS")
    if (runnerAddress instanceof ValidationError) return yield* runnerAddress
    const id = accountSignerId(privateKeyToAccount(Redacted.value(endpoint.privateKey) as Hex).address, endpoint.registry)
    const chainAndSigner = Layer.effectContext(Effect.gen(function*() {
      const ledger = yield* NonceLedger
      const remote = yield* remoteAccountSigner(id)
      const { port, signer } = yield* makeWithSigner({
        rpcUrl: endpoint.rpcUrl,
        registry: endpoint.registry,
        privateKey: endpoint.privateKey,
        nonces: { ledger, holder: ledgerHolder(fleet) },
        remote
      })
      return Context.make(Chain, port).pipe(Context.add(LocalAccountSigner, { id, signer }))
    }))
    // The cluster's own pool: one connection stays reserved for its shard locks, the rest carry its runner registry.
    const clusterPool = Layer.effectContext(
      openPgPool({ url: fleet.databaseUrl, maxConnections: 6 }, `cluster ${fleet.runner}`).pipe(
        Effect.map(({ sql }) => Context.make(SqlClient.SqlClient, sql))
      )
    )
    const runner = boundedShutdown(
      clusterRunnerLayer({
        runnerAddress,
        shardLockExpiration: cluster.lease,
        shardGroups: {
          available: ["default", signerShardGroup],
          assigned: cluster.maySign ? ["default", signerShardGroup] : ["default"]
        }
      }).pipe(Layer.provide(clusterPool)),
      clusterShutdownTimeout
    )
    return accountSignerEntityLayer.pipe(Layer.provideMerge(chainAndSigner), Layer.provide(runner))
  }))

/** Who runs in the fleet, and the takeover of a gone runner's work (services/FleetRecovery.ts). */
export const fleetRosterLayer = (fleet: Fleet): Layer.Layer<FleetRoster, MiningError> =>
  PgFleetRoster.layer({ url: fleet.databaseUrl, self: fleet.runner })

/**
 * /stats's `fleet` section, from any runner: this runner's name, and every runner of the fleet's journal — whether a
 * process runs it, its transactions by state — with the fleet's totals by state.
 */
export const fleetSection = (roster: FleetRoster["Service"]): Effect.Effect<object> =>
  roster.census.pipe(
    Effect.map((runners) => {
      const totals: Record<string, number> = {}
      for (const r of runners) for (const [state, n] of Object.entries(r.transactions)) totals[state] = (totals[state] ?? 0) + n
      return { runner: roster.self, runners, totals }
    }),
    // The fleet's database unreachable: /stats still answers, saying so.
    Effect.catch((error) => Effect.succeed({ runner: roster.self, error: error.message }))
  )
