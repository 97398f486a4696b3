import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { devnetRoundPlan } from "../../src/app/devnetRoundPlan.ts"
import { startDevnet } from "../../src/layers/chain/devnet/Devnet.ts"
import { PgNonceLedger } from "../../src/layers/chain/PgNonceLedger.ts"
import { PgJournal } from "../../src/layers/journal/PgJournal.ts"
import { Journal } from "../../src/services/Journal.ts"
import { NonceLedger } from "../../src/services/NonceLedger.ts"
import { audit, committedInLog, logLines, readChain, readKuboPins, readMinedCalls, spawnCli, waitFor } from "../support/audit.ts"
import { startJsIpfs } from "../support/jsipfs.ts"
import { findPostgres, type PostgresServer, serverForTests } from "../support/postgres.ts"

/**
 * Issue 18, first step of the fleet: two runner processes of one account (the real CLI, `mine` with
 * R3MES_FLEET_DATABASE_URL) on one anvil devnet, one Kubo-RPC store (js-ipfs) and one Postgres, at once. Audited from
 * the chain, the store and the fleet's journal: every chunk submitted at most once (events and mined calls), every
 * submission pinned and journaled committed once, nothing left unfinished, the account's mined transactions on
 * contiguous nonces with none used twice, and each runner's work journaled as its own. Then the same with one runner
 * SIGKILLed mid-run and started again under its name: it recovers its own transactions, the other goes on.
 */

const postgres = findPostgres()
if ("skip" in postgres) console.warn(`fleet tests skipped: ${postgres.skip}`)

const perRunner = 12
const runTimeoutMs = 180_000


/** A devnet, a Kubo-RPC store and a fresh fleet database, for one test; `runner` spawns `mine` as a fleet runner. */
const fleetFixture = (server: () => PostgresServer) => Effect.gen(function*() {
  const dir = mkdtempSync(join(tmpdir(), "r3mes-fleet-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
  const databaseUrl = yield* Effect.promise(() => server().freshDatabase())
  const devnet = yield* startDevnet({ dataDir: join(dir, "devnet"), difficulty: 16, roundPlan: devnetRoundPlan(16) })
  const ipfs = yield* startJsIpfs
  const account = devnet.accounts[1]!
  const runner = (name: string, iterations: number) => {
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
        env: { R3MES_PRIVATE_KEY: account.privateKey, R3MES_FLEET_DATABASE_URL: databaseUrl, R3MES_FLEET_RUNNER: name },
        timeoutMs: runTimeoutMs
      }
    )
    return { ...spawned, logFile }
  }

  /** The chain, the store, the journal and the ledger after the runners stopped: issue 11's audit and the fleet's. */
  const audited = Effect.gen(function*() {
    const { claims, submissions } = yield* readChain(devnet.rpcUrl, devnet.registry, account.address)
    const calls = yield* readMinedCalls(devnet.rpcUrl, devnet.registry, account.address)
    const records = yield* Effect.gen(function*() {
      return yield* (yield* Journal).list({ limit: 1_000_000 })
    }).pipe(Effect.provide(PgJournal.layer({ url: databaseUrl })), Effect.scoped)
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
    const minedAt = new Map(calls.map((c) => [c.nonce, c.txHash.toLowerCase()]))
    assert.strictEqual(minedAt.size, ledger.length, "every reserved nonce mined")
    for (const e of ledger) assert.strictEqual(minedAt.get(e.nonce), e.transactionHash, `nonce ${e.nonce}`)
    assert.deepStrictEqual(records.filter((r) => r.owner !== "runner-1" && r.owner !== "runner-2"), [])
    return { verdict, records, ledger }
  })
  return { runner, audited }
})

const logLinesOf = (file: string): Array<string> => logLines(file).map((l) => String(l["message"]))

const summaryOf = (exited: { readonly code: number | null; readonly stdout: string; readonly stderr: string }, who: string) => {
  assert.strictEqual(exited.code, 0, `${who}: ${exited.stderr.slice(-3000)}`)
  return JSON.parse(exited.stdout) as { committed: number; transactions: number; recovery: { recovered: number } }
}

describe.skipIf("skip" in postgres)("a fleet of two runners on one account", () => {
  const server = serverForTests(postgres)
  it.live("both mine at once: no chunk twice, no nonce twice or skipped, every submission pinned and committed once", () =>
    Effect.gen(function*() {
      const fleet = yield* fleetFixture(server)
      const runners = ["runner-1", "runner-2"].map((name) => fleet.runner(name, perRunner))
      const exits = yield* Effect.promise(() => Promise.all(runners.map((r) => r.exited)))
      for (const [i, exited] of exits.entries()) assert.strictEqual(summaryOf(exited, `runner-${i + 1}`).committed, perRunner)
      const { ledger, records, verdict } = yield* fleet.audited
      assert.strictEqual(verdict.figures.committedOnChain, 2 * perRunner)
      const committedBy = (runner: string) => records.filter((r) => r.state === "committed" && r.owner === runner).length
      assert.strictEqual(committedBy("runner-1"), perRunner)
      assert.strictEqual(committedBy("runner-2"), perRunner)
      assert.sameMembers([...new Set(ledger.map((e) => e.holder.split("/")[0]))], ["runner-1", "runner-2"])
    }).pipe(Effect.scoped), runTimeoutMs + 60_000)

  it.live("a runner SIGKILLed mid-run and started again under its name recovers its own; the other goes on", () =>
    Effect.gen(function*() {
      const fleet = yield* fleetFixture(server)
      const first = fleet.runner("runner-1", 1_000)
      const other = fleet.runner("runner-2", perRunner)
      yield* Effect.promise(() => waitFor(() => committedInLog(first.logFile) >= 3, 120_000, "runner-1's third commit"))
      first.signal("SIGKILL")
      assert.strictEqual((yield* Effect.promise(() => first.exited)).signal, "SIGKILL")
      const again = fleet.runner("runner-1", 3)
      const [otherExit, againExit] = yield* Effect.promise(() => Promise.all([other.exited, again.exited]))
      assert.strictEqual(summaryOf(otherExit, "runner-2").committed, perRunner)
      const restarted = summaryOf(againExit, "runner-1, restarted")
      assert.strictEqual(restarted.committed, 3)
      const { verdict } = yield* fleet.audited
      console.log(`runner-1's restart recovered ${restarted.recovery.recovered} transaction(s)`)
      assert.strictEqual(verdict.figures.nonTerminal, 0)
      assert.isAtLeast(verdict.figures.committedOnChain, perRunner + 3 + 3)
    }).pipe(Effect.scoped), runTimeoutMs + 60_000)

  it.live("a runner SIGKILLed for good: the other takes its unfinished work over and finishes it", () =>
    Effect.gen(function*() {
      const fleet = yield* fleetFixture(server)
      const gone = fleet.runner("runner-1", 1_000)
      // Long enough to pass its own-claims look (every 30 s): a claim the dead runner never journaled is found too.
      const other = fleet.runner("runner-2", 40)
      yield* Effect.promise(() => waitFor(() => committedInLog(gone.logFile) >= 3, 120_000, "runner-1's third commit"))
      gone.signal("SIGKILL")
      yield* Effect.promise(() => gone.exited)
      const otherExit = yield* Effect.promise(() => other.exited)
      assert.strictEqual(summaryOf(otherExit, "runner-2").committed, 40)
      const took = logLinesOf(other.logFile).filter((m) => /fleet runner runner-1 is gone/.test(m))
      const { records, verdict } = yield* fleet.audited
      console.log(`runner-2: ${took.join(" | ") || "took nothing over"}`)
      // Killed with up to ten transactions in flight: there was work to take.
      assert.strictEqual(took.length, 1, "runner-2 took runner-1's work over once")
      assert.strictEqual(verdict.figures.nonTerminal, 0)
      // Whatever runner-1 left unfinished is runner-2's now, and finished.
      assert.deepStrictEqual(records.filter((r) => r.owner === "runner-1" && !["committed", "failed", "rolled_back"].includes(r.state)), [])
    }).pipe(Effect.scoped), runTimeoutMs + 60_000)
})
