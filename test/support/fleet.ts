import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert } from "@effect/vitest"
import { Effect } from "effect"
import { createPublicClient, http } from "viem"
import { devnetRoundPlan } from "../../src/app/devnetRoundPlan.ts"
import { startDevnet } from "../../src/layers/chain/devnet/Devnet.ts"
import { PgNonceLedger } from "../../src/layers/chain/PgNonceLedger.ts"
import { PgJournal } from "../../src/layers/journal/PgJournal.ts"
import { Journal } from "../../src/services/Journal.ts"
import { NonceLedger } from "../../src/services/NonceLedger.ts"
import { audit, logLines, readChain, readKuboPins, readMinedCalls, spawnCli } from "./audit.ts"
import { freePort } from "./children.ts"
import { startJsIpfs } from "./jsipfs.ts"
import type { PostgresServer } from "./postgres.ts"

/**
 * A fleet for end-to-end tests (issue 18): one anvil devnet, one Kubo-RPC store (js-ipfs) and a fresh database on
 * the test's Postgres; runner processes of one account (the real CLI, `mine` with R3MES_FLEET_DATABASE_URL); and the
 * audit of what they left, from the chain, the store, the fleet's journal and the account's nonce ledger.
 */

export const runTimeoutMs = 180_000

/** A devnet, a Kubo-RPC store and a fresh fleet database, for one test; `runner` spawns `mine` as a fleet runner. */
/**
 * `cluster`: the runners form Effect's cluster (R3MES_FLEET_ADDRESS, a port of their own each, kept across restarts)
 * and sign through the account's signer entity, with a lease of `lease` seconds (short: tests kill its runner).
 */
export interface FleetFixtureOptions {
  readonly cluster?: { readonly lease: number } | undefined
}

export const fleetFixture = (server: () => PostgresServer, fixture: FleetFixtureOptions = {}) => Effect.gen(function*() {
  const dir = mkdtempSync(join(tmpdir(), "r3mes-fleet-"))
  // KEEP_DIR=1 keeps the runners' data dirs (logs) and the devnet for inspection.
  if (process.env["KEEP_DIR"] === undefined) {
    yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
  } else {
    console.log(`keeping ${dir}`)
  }
  const databaseUrl = yield* Effect.promise(() => server().freshDatabase())
  const devnet = yield* startDevnet({ dataDir: join(dir, "devnet"), difficulty: 16, roundPlan: devnetRoundPlan(16) })
  const ipfs = yield* startJsIpfs
  const account = devnet.accounts[1]!
  const runners = new Set<string>()
  // A port per runner name, kept across its restarts, from a few free ones found now.
  const freePorts: Array<number> = []
  for (let i = 0; fixture.cluster !== undefined && i < 6; i++) freePorts.push(yield* Effect.promise(freePort))
  const ports = new Map<string, number>()
  const clusterEnv = (name: string): Record<string, string> => {
    if (fixture.cluster === undefined) return {}
    const port = ports.get(name) ?? freePorts.shift()
    if (port === undefined) throw new Error("fleetFixture: more cluster runners than ports found")
    ports.set(name, port)
    return { R3MES_FLEET_ADDRESS: `127.0.0.1:${port}`, R3MES_FLEET_LEASE: String(fixture.cluster.lease) }
  }
  /** `databaseUrl`: where this runner reaches the fleet's database (a proxy in front of it), default the database. */
  const runner = (name: string, iterations: number, timeoutMs = runTimeoutMs, options: { readonly databaseUrl?: string } = {}) => {
    runners.add(name)
    const cluster = clusterEnv(name)
    const dataDir = join(dir, name)
    mkdirSync(dataDir, { recursive: true })
    const logFile = join(dataDir, "miner.log")
    const spawned = spawnCli(
      [
        "mine", "--rpc-url", devnet.rpcUrl, "--registry", devnet.registry, "--ipfs", ipfs.url,
        "--iterations", String(iterations), "--json", "--data-dir", dataDir, "--stats-port", "0",
        "--log-file", logFile, "--difficulty", "16"
      ],
      {
        env: {
          R3MES_PRIVATE_KEY: account.privateKey,
          R3MES_FLEET_DATABASE_URL: options.databaseUrl ?? databaseUrl,
          R3MES_FLEET_RUNNER: name,
          ...cluster
        },
        timeoutMs
      }
    )
    return { ...spawned, logFile }
  }

  /** Every record of the fleet's journal, now. */
  const journalRecords = Effect.gen(function*() {
    return yield* (yield* Journal).list({ limit: 1_000_000 })
  }).pipe(Effect.provide(PgJournal.layer({ url: databaseUrl })), Effect.scoped)

  /** The chain, the store, the journal and the ledger after the runners stopped: issue 11's audit and the fleet's. */
  const audited = Effect.gen(function*() {
    const { claims, submissions } = yield* readChain(devnet.rpcUrl, devnet.registry, account.address)
    const calls = yield* readMinedCalls(devnet.rpcUrl, devnet.registry, account.address)
    const records = yield* journalRecords
    const pins = yield* readKuboPins(ipfs.url)
    const verdict = audit({ miner: account.address, claims, submissions, records, pins, calls })
    console.log(`fleet: ${JSON.stringify(verdict.figures)}${verdict.notes.map((n) => `\n  note: ${n}`).join("")}`)
    assert.deepStrictEqual(verdict.problems, [])

    // One account, two signers, one ledger: the nonces reserved are 0..n-1 with no gap, and what each holds is what
    // the chain mined there (no reservation lost, none held by two transactions).
    const ledger = yield* Effect.gen(function*() {
      return yield* (yield* NonceLedger).list(account.address, 31337, { limit: 100_000 })
    }).pipe(Effect.provide(PgNonceLedger.layer({ url: databaseUrl })), Effect.scoped)
    assert.deepStrictEqual(ledger.map((e) => e.nonce), ledger.map((_, i) => i), "reserved nonces 0..n-1")
    // The registry calls and the fillers (empty transfers to itself a gap nobody would send got) alike.
    const client = createPublicClient({ transport: http(devnet.rpcUrl) })
    const mined = yield* Effect.promise(() => client.getTransactionCount({ address: account.address, blockTag: "latest" }))
    assert.strictEqual(mined, ledger.length, "every reserved nonce mined, none mined unreserved")
    const callAt = new Map(calls.map((c) => [c.nonce, c]))
    for (const e of ledger) {
      const there = yield* Effect.promise(() =>
        client.getTransaction({ hash: e.transactionHash as `0x${string}` }).then((t) => t.nonce, () => undefined)
      )
      const call = callAt.get(e.nonce)
      assert.strictEqual(
        there,
        e.nonce,
        `nonce ${e.nonce}: the ledger holds ${e.transactionHash} of ${e.holder} (revision ${e.revision}, replaced ` +
          `${e.replacedHashes.join(", ") || "none"}), not mined there; the chain mined ${call?.functionName ?? "a transfer"}` +
          `(${call?.roundId}, ${call?.chunkId}) ${call?.txHash ?? ""}`
      )
    }
    assert.deepStrictEqual(records.filter((r) => r.owner === null || !runners.has(r.owner)), [], "every record a runner's")
    return { verdict, records, ledger }
  })
  /** How many submissions of the account the chain holds now. */
  const submittedOnChain = readChain(devnet.rpcUrl, devnet.registry, account.address).pipe(
    Effect.map(({ submissions }) => submissions.filter((x) => x.miner.toLowerCase() === account.address.toLowerCase()).length)
  )
  return { runner, audited, submittedOnChain, journalRecords, databaseUrl }
})

/** The messages of a runner's JSON log. */
export const logMessagesOf = (file: string): Array<string> => logLines(file).map((l) => String(l["message"]))

/** A runner's JSON summary on stdout, once it exited 0. */
export const summaryOf = (exited: { readonly code: number | null; readonly stdout: string; readonly stderr: string }, who: string) => {
  assert.strictEqual(exited.code, 0, `${who}: ${exited.stderr.slice(-3000)}`)
  return JSON.parse(exited.stdout) as { committed: number; transactions: number; recovery: { recovered: number } }
}
