import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { committedInLog, logLines, spawnCli, waitFor } from "../support/audit.ts"
import { fleetFixture, logMessagesOf, runTimeoutMs, summaryOf } from "../support/fleet.ts"
import type { FleetJournalCheck } from "../../src/layers/journal/checkPgJournal.ts"
import { findPostgres, serverForTests, withSql } from "../support/postgres.ts"
import { startTcpProxy } from "../support/tcpProxy.ts"

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

      // `status` where no runner answers reads the fleet's journal: every runner's records, the password nowhere.
      const status = yield* Effect.promise(() =>
        spawnCli(["status", "--json", "--limit", "100", "--stats-port", "9"], {
          env: { R3MES_FLEET_DATABASE_URL: fleet.databaseUrl },
          timeoutMs: 30_000
        }).exited
      )
      assert.strictEqual(status.code, 0, status.stderr)
      const listed = (JSON.parse(status.stdout) as { transactions: Array<{ owner: string }> }).transactions
      assert.strictEqual(listed.length, 2 * perRunner)
      assert.sameMembers([...new Set(listed.map((t) => t.owner))], ["runner-1", "runner-2"])
      assert.match(status.stderr, /read the journal of the fleet at postgres:\/\/127\.0\.0\.1:\d+\/<redacted>/)
      assert.notInclude(status.stderr + status.stdout, new URL(fleet.databaseUrl).password)

      // `journal check` of the fleet's journal: every record reads back, both runners gone now, the ledger whole.
      const check = (...extra: Array<string>) =>
        Effect.promise(() =>
          spawnCli(["journal", "check", ...extra], { env: { R3MES_FLEET_DATABASE_URL: fleet.databaseUrl }, timeoutMs: 30_000 }).exited
        )
      const checked = yield* check("--json")
      assert.strictEqual(checked.code, 0, checked.stderr)
      const report = JSON.parse(checked.stdout) as FleetJournalCheck
      assert.strictEqual(report.status, "ok")
      assert.strictEqual(report.records.by_state["committed"], 2 * perRunner)
      assert.deepStrictEqual(
        report.runners.map((r) => [r.runner, r.running, r.transactions["committed"]]),
        [["runner-1", false, perRunner], ["runner-2", false, perRunner]]
      )
      assert.deepStrictEqual(report.nonces.map((n) => [n.reserved, n.first, n.next, n.missing]), [[ledger.length, 0, ledger.length, []]])
      assert.deepStrictEqual(report.notes, [])
      assert.match(report.database, /^postgres:\/\/r3mes@127\.0\.0\.1:\d+\/\S+$/)
      // A record damaged in the database: reported by id, exit 1 with a hint; nothing written by the check.
      const damaged = records[0]!.transaction_id
      yield* withSql(fleet.databaseUrl, (sql) => sql`UPDATE r3mes_transactions SET state = 'training' WHERE transaction_id = ${damaged}`)
      const corrupted = yield* check()
      assert.strictEqual(corrupted.code, 1)
      assert.include(corrupted.stdout, `${damaged}: its columns (state training, owner ${records[0]!.owner}) disagree with its record (state committed)`)
      assert.match(corrupted.stderr, /^r3mes-miner: the fleet's journal at postgres:\/\/r3mes@.* has records that do not read back\nhint: /m)
      assert.notInclude(corrupted.stdout + corrupted.stderr, new URL(fleet.databaseUrl).password)
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
      // runner-2 may have finished before its next look (every 5 s): a runner starting takes gone runners' work over
      // before its own.
      const third = fleet.runner("runner-3", 1)
      summaryOf(yield* Effect.promise(() => third.exited), "runner-3")
      const took = [other, third].flatMap((r) => logMessagesOf(r.logFile)).filter((m) => /fleet runner runner-1 is gone/.test(m))
      const { records, verdict } = yield* fleet.audited
      console.log(`taken over: ${took.join(" | ") || "nothing"}`)
      // Killed with up to ten transactions in flight: there was work to take.
      assert.strictEqual(took.length, 1, "runner-1's work was taken over once")
      assert.strictEqual(verdict.figures.nonTerminal, 0)
      // Whatever runner-1 left unfinished is runner-2's now, and finished.
      assert.deepStrictEqual(records.filter((r) => r.owner === "runner-1" && !["committed", "failed", "rolled_back"].includes(r.state)), [])
    }).pipe(Effect.scoped), runTimeoutMs + 60_000)

  /**
   * Two runners mining 40 transactions each; `outage` strikes the fleet's Postgres once both committed thrice. Both
   * must finish with a clean audit, and nobody's work be taken while its runner ran (a runner that exits with a
   * transaction whose end it could not journal during the outage leaves it to the other: taken once it is gone).
   */
  const underOutage = (outage: Effect.Effect<void>) =>
    Effect.gen(function*() {
      const fleet = yield* fleetFixture(server)
      const names = ["runner-1", "runner-2"]
      const runners = names.map((name) => fleet.runner(name, 40))
      const exitedAt = new Map<string, number>()
      runners.forEach((r, i) => void r.exited.then(() => exitedAt.set(names[i]!, Date.now())))
      yield* Effect.promise(() =>
        waitFor(() => runners.every((r) => committedInLog(r.logFile) >= 3), 120_000, "both runners' third commit")
      )
      assert.isTrue(runners.every((r) => r.running()), "both still mining")
      yield* outage
      const exits = yield* Effect.promise(() => Promise.all(runners.map((r) => r.exited)))
      for (const [i, exited] of exits.entries()) summaryOf(exited, `runner-${i + 1}`)
      const { verdict } = yield* fleet.audited
      assert.strictEqual(verdict.figures.nonTerminal, 0)
      const takeovers = runners.flatMap((r) => logLines(r.logFile)).flatMap((l) => {
        const gone = /^fleet runner (\S+) is gone/.exec(String(l["message"]))
        return gone === null ? [] : [{ runner: gone[1]!, at: Date.parse(String(l["timestamp"])) }]
      })
      console.log(`taken over: ${JSON.stringify(takeovers)}`)
      for (const t of takeovers) assert.isAtLeast(t.at, exitedAt.get(t.runner)! - 1_000, `${t.runner} taken over while it ran`)
      return runners
    })

  it.live("the fleet's Postgres restarted mid-run: both runners wait for it, take their names again and finish; nobody's work taken", () =>
    Effect.gen(function*() {
      const runners = yield* underOutage(Effect.gen(function*() {
        yield* Effect.promise(() => server().stop())
        yield* Effect.sleep("4 seconds")
        yield* Effect.promise(() => server().start())
      }))
      // Each lost its name's session with the server and took the name again.
      assert.deepStrictEqual(
        runners.map((r) => logMessagesOf(r.logFile).some((line) => /holds its name again/.test(line))),
        [true, true]
      )
    }).pipe(Effect.scoped, Effect.ensuring(Effect.promise(() => server().start()))), runTimeoutMs + 60_000)

  it.live("the fleet's Postgres frozen mid-run (SIGSTOP, 15 s): both runners wait, go on when it thaws and finish; nobody's work taken", () =>
    // Hung, not gone: every open connection stays open and nothing answers.
    underOutage(Effect.sync(() => server().freeze()).pipe(
      Effect.andThen(Effect.sleep("15 seconds")),
      Effect.ensuring(Effect.sync(() => server().thaw()))
    )).pipe(Effect.scoped, Effect.ensuring(Effect.sync(() => server().thaw()))), runTimeoutMs + 60_000)

  it.live("Ctrl-C while the fleet's Postgres is frozen: the runner exits as a crash would, saying why; restarted once it thaws, it recovers", () =>
    Effect.gen(function*() {
      const fleet = yield* fleetFixture(server)
      const first = fleet.runner("runner-1", 1_000)
      yield* Effect.promise(() => waitFor(() => committedInLog(first.logFile) >= 3, 120_000, "runner-1's third commit"))
      server().freeze()
      yield* Effect.sleep("2 seconds")
      const signalled = Date.now()
      first.signal("SIGINT")
      const stopped = yield* Effect.promise(() => first.exited).pipe(Effect.ensuring(Effect.sync(() => server().thaw())))
      const took = Date.now() - signalled
      console.log(`stopped ${took} ms after SIGINT, code ${stopped.code}; stderr tail: ${stopped.stderr.slice(-600)}`)
      // Its transactions wait for the journal, which never answers: past twice the stop grace (30 s) and 30 s more,
      // the runner gives up on a clean stop (without this it waited until the database came back, forever).
      assert.strictEqual(stopped.code, 1)
      assert.match(stopped.stderr, /did not stop within 90 s of the stop signal: .*exiting as a crash would\nhint: the next start recovers/)
      assert.isTrue(logMessagesOf(first.logFile).some((m) => m.startsWith("did not stop within 90 s")))
      assert.isBelow(took, 100_000)
      const again = fleet.runner("runner-1", 2)
      summaryOf(yield* Effect.promise(() => again.exited), "runner-1, restarted")
      const { verdict } = yield* fleet.audited
      assert.strictEqual(verdict.figures.nonTerminal, 0)
    }).pipe(Effect.scoped, Effect.ensuring(Effect.sync(() => server().thaw()))), runTimeoutMs + 60_000)
  it.live("a runner's machine gone without a word (power lost: its connections silent, never closed): the other takes its work over", () =>
    Effect.gen(function*() {
      const fleet = yield* fleetFixture(server)
      const proxy = yield* Effect.acquireRelease(Effect.promise(() => startTcpProxy(server().port)), (p) => Effect.promise(() => p.close()))
      const lost = fleet.runner("runner-1", 1_000, runTimeoutMs, { databaseUrl: proxy.via(fleet.databaseUrl) })
      const other = fleet.runner("runner-2", 1_000)
      yield* Effect.promise(() => waitFor(() => committedInLog(lost.logFile) >= 3, 120_000, "runner-1's third commit"))
      // The server sees nothing: no FIN, no RST, on any of runner-1's sessions.
      proxy.vanish()
      lost.signal("SIGKILL")
      yield* Effect.promise(() => lost.exited)
      const vanishedAt = Date.now()
      // Its name's session ends after 15 s of silence; two looks 5 s apart later, runner-2 takes its work over.
      yield* Effect.promise(() =>
        waitFor(() => logMessagesOf(other.logFile).some((m) => /fleet runner runner-1 is gone/.test(m)), 90_000, "runner-2 taking runner-1's work over")
      )
      console.log(`runner-1's work taken over ${Date.now() - vanishedAt} ms after its machine vanished`)
      other.signal("SIGTERM")
      summaryOf(yield* Effect.promise(() => other.exited), "runner-2")
      // A claim runner-1 sent as its database went away has no record: nobody's to take over. The account's claims
      // nobody works on are looked for every 30 s, and at a runner's first claim: the next runner to start takes up
      // what runner-2 stopped before its next look.
      summaryOf(yield* Effect.promise(() => fleet.runner("runner-3", 3).exited), "runner-3")
      const { records, verdict } = yield* fleet.audited
      assert.strictEqual(verdict.figures.nonTerminal, 0)
      assert.deepStrictEqual(records.filter((r) => r.owner === "runner-1" && !["committed", "failed", "rolled_back"].includes(r.state)), [])
    }).pipe(Effect.scoped), runTimeoutMs + 60_000)
})
