import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { committedInLog, waitFor } from "../support/audit.ts"
import { fleetFixture, logMessagesOf, runTimeoutMs, summaryOf } from "../support/fleet.ts"
import { findPostgres, serverForTests } from "../support/postgres.ts"

/**
 * Issue 18, the fleet on Effect's cluster (R3MES_FLEET_ADDRESS): runner processes of one account (the real CLI) form
 * a cluster on the fleet's Postgres, and the account's signer is an entity on one of them that signs every runner's
 * transactions through the nonce ledger. Audited like fleet-mine.test.ts (chain, store, journal, ledger).
 */

const postgres = findPostgres()
if ("skip" in postgres) console.warn(`fleet signer tests skipped: ${postgres.skip}`)

const perRunner = 10
/** Seconds a silent runner keeps the signer: short, since the second test kills its runner. */
const lease = 6

const signerMessage = /^the account's signer \S+ (runs on|left) this runner$/
const signerMoves = (logFile: string) => logMessagesOf(logFile).flatMap((m) => signerMessage.exec(m)?.[1] ?? [])
/** Whether the runner hosted the signer at some time. */
const hostsSigner = (logFile: string) => signerMoves(logFile).includes("runs on")
/** Whether the runner hosts the signer now (it may have started on a runner and moved when another joined). */
const hostsSignerNow = (logFile: string) => signerMoves(logFile).at(-1) === "runs on"
type Fleet = Effect.Success<ReturnType<typeof fleetFixture>>
type Runners = Map<string, ReturnType<Fleet["runner"]>>
/**
 * The runner hosting the signer while it runs, once every runner committed three. The other may have finished all its
 * chunks by then: one runner was seen committing thirty before the other's first (`stillMining`).
 */
const hostOnceMining = (runners: Runners) => {
  let host: string | undefined
  return Effect.promise(() =>
    waitFor(
      () => {
        host = [...runners.entries()].find(([, r]) => r.running() && hostsSignerNow(r.logFile))?.[0]
        return host !== undefined && [...runners.values()].every((r) => committedInLog(r.logFile) >= 3)
      },
      120_000,
      "every runner's third commit, a signer"
    )
  ).pipe(Effect.map(() => host!))
}
/**
 * `name`'s process, mining: if it has finished its chunks (exit 0), it starts again under its name with `perRunner`
 * more, work that needs the signer.
 */
const stillMining = (fleet: Fleet, runners: Runners, name: string) =>
  Effect.gen(function*() {
    const current = runners.get(name)!
    if (current.running()) return current
    summaryOf(yield* Effect.promise(() => current.exited), `${name}, done before the signer moved`)
    const again = fleet.runner(name, perRunner)
    runners.set(name, again)
    return again
  })
const holdersOf = (ledger: ReadonlyArray<{ readonly holder: string }>) => [...new Set(ledger.map((e) => e.holder.split("/")[0]))]

describe.skipIf("skip" in postgres)("a fleet on Effect's cluster: one signer entity for the account", () => {
  const server = serverForTests(postgres)

  it.live("two runners mine at once, every transaction signed by the one runner that hosts the signer", () =>
    Effect.gen(function*() {
      const fleet = yield* fleetFixture(server, { cluster: { lease } })
      const runners = ["runner-1", "runner-2"].map((name) => fleet.runner(name, perRunner))
      const exits = yield* Effect.promise(() => Promise.all(runners.map((r) => r.exited)))
      for (const [i, exited] of exits.entries()) assert.strictEqual(summaryOf(exited, `runner-${i + 1}`).committed, perRunner)
      const { ledger, records, verdict } = yield* fleet.audited
      assert.strictEqual(verdict.figures.committedOnChain, 2 * perRunner)
      assert.strictEqual(records.filter((r) => r.state === "committed" && r.owner === "runner-2").length, perRunner)
      const hosts = runners.filter((r) => hostsSigner(r.logFile))
      assert.isAtLeast(hosts.length, 1, "a runner logged that it hosts the signer")
      // Both runners' transactions, one signer: the ledger's rows are all the hosting runner's (the signer may move
      // once, when its runner stops first and the other still writes).
      const holders = holdersOf(ledger)
      const first = ledger[0]!.holder.split("/")[0]!
      assert.isTrue(hostsSigner(runners[Number(first.slice(-1)) - 1]!.logFile), `${first} signed and hosted the signer`)
      assert.isAtMost(holders.length, 2, `ledger holders ${holders.join(", ")}`)
      const moves = ledger.filter((e, i) => i > 0 && e.holder !== ledger[i - 1]!.holder).length
      assert.isAtMost(moves, 1, "the signer stays where it is while its runner runs")
    }).pipe(Effect.scoped), runTimeoutMs + 60_000)

  it.live("the signer's runner SIGKILLed mid-run: the signer moves to the other runner, which goes on; nothing lost", () =>
    Effect.gen(function*() {
      const fleet = yield* fleetFixture(server, { cluster: { lease } })
      // Enough work that the one left must sign after the kill (the entity starts where its first message lands).
      const runners: Runners = new Map(["runner-1", "runner-2"].map((name) => [name, fleet.runner(name, 3 * perRunner)]))
      const host = yield* hostOnceMining(runners)
      const other = [...runners.keys()].find((n) => n !== host)!
      const first = runners.get(other)!
      const timesHosted = () => signerMoves(first.logFile).filter((m) => m === "runs on").length
      const hostedBefore = timesHosted()
      runners.get(host)!.signal("SIGKILL")
      // The other takes the signer over at its next write, unless every write of its chunks was done before the kill.
      yield* Effect.promise(() => waitFor(() => timesHosted() > hostedBefore || !first.running(), 60_000, `${other} to write`))
      const survivor = yield* stillMining(fleet, runners, other)
      const exited = yield* Effect.promise(() => survivor.exited)
      // Its writes waited for the signer's new home: a breaker may have opened, and a transaction failed there.
      assert.isAtLeast(summaryOf(exited, other).committed, ((survivor === first ? 3 : 1) * perRunner * 2) / 3)
      assert.isAbove(timesHosted(), hostedBefore, `${other} took the signer over`)
      // The killed runner started again under its name recovers what it had in flight; then the audit.
      const again = yield* Effect.promise(() => fleet.runner(host, 1).exited)
      summaryOf(again, `${host} restarted`)
      const { verdict } = yield* fleet.audited
      assert.strictEqual(verdict.figures.nonTerminal, 0)
      assert.isAtLeast(verdict.figures.committedOnChain, perRunner + 3)
    }).pipe(Effect.scoped), runTimeoutMs + 120_000)

  it.live("the signer's runner frozen past the lease: the signer moves, the frozen one resumes; no nonce twice or skipped", () =>
    Effect.gen(function*() {
      const fleet = yield* fleetFixture(server, { cluster: { lease } })
      const runners: Runners = new Map(["runner-1", "runner-2"].map((name) => [name, fleet.runner(name, 2 * perRunner)]))
      const host = yield* hostOnceMining(runners)
      const other = [...runners.keys()].find((n) => n !== host)!
      // Frozen with lends and reservations under way: its entity, its sessions and its shard locks stay, silent.
      runners.get(host)!.signal("SIGSTOP")
      // Without a signer the other waits for it to move, unless every write of its chunks was done before the freeze.
      const log = runners.get(other)!.logFile
      yield* Effect.promise(() => waitFor(() => hostsSignerNow(log) || !runners.get(other)!.running(), 60_000, `${other} to wait`))
      yield* stillMining(fleet, runners, other)
      yield* Effect.promise(() => waitFor(() => hostsSignerNow(log), 60_000, `${other} to host the signer`))
      yield* Effect.sleep("2 seconds")
      runners.get(host)!.signal("SIGCONT")
      const exits = yield* Effect.promise(() => Promise.all([...runners.values()].map((r) => r.exited)))
      // A write waiting for the signer's new home may open a breaker, and a transaction fail there (rolled back).
      for (const [i, exited] of exits.entries()) summaryOf(exited, `runner-${i + 1}`)
      const { ledger, verdict } = yield* fleet.audited
      assert.strictEqual(verdict.figures.nonTerminal, 0)
      assert.isAtLeast(verdict.figures.committedOnChain, 3 * perRunner)
      assert.sameMembers(holdersOf(ledger), ["runner-1", "runner-2"], "both signed: before and after the move")
    }).pipe(Effect.scoped), runTimeoutMs + 120_000)
})
