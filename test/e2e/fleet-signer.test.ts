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
/** The runner hosting the signer, once every runner committed three and none has finished. */
const hostOnceMining = (runners: ReadonlyMap<string, { readonly logFile: string; readonly running: () => boolean }>) =>
  Effect.promise(() =>
    waitFor(
      () =>
        [...runners.values()].every((r) => committedInLog(r.logFile) >= 3 && r.running()) &&
        [...runners.values()].filter((r) => hostsSignerNow(r.logFile)).length === 1,
      120_000,
      "every runner's third commit, a signer"
    )
  ).pipe(Effect.map(() => [...runners.entries()].find(([, r]) => hostsSignerNow(r.logFile))![0]))
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
      const runners = new Map(["runner-1", "runner-2"].map((name) => [name, fleet.runner(name, 3 * perRunner)]))
      const host = yield* hostOnceMining(runners)
      const other = [...runners.keys()].find((n) => n !== host)!
      const hostedBefore = signerMoves(runners.get(other)!.logFile).filter((m) => m === "runs on").length
      runners.get(host)!.signal("SIGKILL")
      const exited = yield* Effect.promise(() => runners.get(other)!.exited)
      // Its writes waited for the signer's new home: a breaker may have opened, and a transaction failed there.
      assert.isAtLeast(summaryOf(exited, other).committed, 2 * perRunner)
      const hostedAfter = signerMoves(runners.get(other)!.logFile).filter((m) => m === "runs on").length
      assert.isAbove(hostedAfter, hostedBefore, `${other} took the signer over`)
      // The killed runner started again under its name recovers what it had in flight; then the audit.
      const again = yield* Effect.promise(() => fleet.runner(host, 1).exited)
      summaryOf(again, `${host} restarted`)
      const { verdict } = yield* fleet.audited
      assert.strictEqual(verdict.figures.nonTerminal, 0)
      assert.isAtLeast(verdict.figures.committedOnChain, 2 * perRunner + 3)
    }).pipe(Effect.scoped), runTimeoutMs + 120_000)

  it.live("the signer's runner frozen past the lease: the signer moves, the frozen one resumes; no nonce twice or skipped", () =>
    Effect.gen(function*() {
      const fleet = yield* fleetFixture(server, { cluster: { lease } })
      // Enough work that neither is done when the host freezes (one may commit twenty while the other trains one).
      const runners = new Map(["runner-1", "runner-2"].map((name) => [name, fleet.runner(name, 4 * perRunner)]))
      const host = yield* hostOnceMining(runners)
      const other = [...runners.keys()].find((n) => n !== host)!
      // Frozen with lends and reservations under way: its entity, its sessions and its shard locks stay, silent.
      runners.get(host)!.signal("SIGSTOP")
      yield* Effect.promise(() => waitFor(() => hostsSignerNow(runners.get(other)!.logFile), 60_000, `${other} to host the signer`))
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
