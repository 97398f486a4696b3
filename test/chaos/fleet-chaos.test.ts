import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { mulberry32 } from "../support/faultProxy.ts"
import { fleetFixture, logMessagesOf, summaryOf } from "../support/fleet.ts"
import { findPostgres, serverForTests } from "../support/postgres.ts"

/**
 * Issue 18's fleet chaos test: three runner processes of one account (the real CLI) on one anvil, one Kubo-RPC store
 * and one Postgres, for about 35 s and at least 60 of the account's submissions, while the test strikes at moments
 * drawn from a seed: one runner SIGKILLed and started again under its name, one SIGSTOPped for 8 s (alive: it keeps
 * its name and its work) then continued, one SIGKILLed for good (the others take its work over). Then every runner
 * still running is stopped (SIGTERM), and each name runs once more briefly, so that what a stop left for recovery
 * is finished. Audited from the chain, the store, the fleet's journal and the account's nonce ledger: every chunk
 * submitted at most once, every submission pinned and committed once, no record unfinished, the ledger's nonces
 * 0..n-1 each the mined transaction.
 *
 * FLEET_SEED=n replaces the default seed; KEEP_DIR=1 keeps the data dirs.
 */

const postgres = findPostgres()
if ("skip" in postgres) console.warn(`fleet chaos test skipped: ${postgres.skip}`)

const target = 60
const seed = Number.parseInt(process.env["FLEET_SEED"] ?? "18", 10)

/** The same seed strikes at the same moments. */
const random = mulberry32(seed)

/** The running runner whose log says the account's signer lives there now (cluster mode). */
const signerHost = (running: ReadonlyMap<string, { readonly logFile: string; readonly running: () => boolean }>) =>
  [...running.entries()].find(([, r]) => {
    if (!r.running()) return false
    const said = logMessagesOf(r.logFile).filter((m) => /^the account's signer \S+ (runs on|left) this runner$/.test(m))
    return said.at(-1)?.includes("runs on") === true
  })?.[0]

const names = ["runner-1", "runner-2", "runner-3"]

describe.skipIf("skip" in postgres)("fleet chaos: three runners of one account, killed, stopped and restarted", () => {
  const server = serverForTests(postgres)

  /**
   * `cluster`: the runners form Effect's cluster and sign through the account's signer entity (lease 6 s), and the
   * strikes follow the signer: the runner hosting it is SIGKILLed (and started again), then the runner hosting it
   * next is SIGSTOPped for 8 s (past the lease: the signer moves, and the frozen runner's entity may still run a
   * moment when it resumes), then the remaining one is SIGKILLed for good. Without: every runner signs through the
   * ledger, and the strikes hit runner-1, runner-3 and runner-2.
   */
  const chaos = (cluster: boolean) =>
    Effect.gen(function*() {
      const fleet = yield* fleetFixture(server, cluster ? { cluster: { lease: 6 } } : {})
      const started = Date.now()
      const events: Array<string> = []
      const say = (what: string) => events.push(`${((Date.now() - started) / 1000).toFixed(1)} s: ${what}`)
      const running = new Map<string, ReturnType<typeof fleet.runner>>()
      const start = (name: string) => running.set(name, fleet.runner(name, 100_000, 300_000))
      for (const name of names) start(name)

      const submitted = () => Effect.runPromise(fleet.submittedOnChain)
      // The strikes' clock starts with the fleet's first submission: all three runners up and mining.
      yield* Effect.promise(async () => {
        while ((await submitted()) === 0) await new Promise((r) => setTimeout(r, 250))
      })
      const mining = Date.now()
      say("first submission")
      /** Sleeps until `seconds` (plus up to 3 s drawn from the seed) after the first submission. */
      const at = (seconds: number) =>
        Effect.suspend(() => Effect.sleep(Math.max(0, mining + (seconds + random() * 3) * 1_000 - Date.now())))
      const host = (fallback: string, except: ReadonlyArray<string>) => {
        const now = cluster ? signerHost(running) : undefined
        return now !== undefined && !except.includes(now) ? now : fallback
      }
      const hosting = (name: string) => (cluster && signerHost(running) === name ? " (hosting the signer)" : "")

      // 1. A runner killed outright, started again under its name after a moment.
      yield* at(2)
      const killed = host("runner-1", [])
      const killedNote = hosting(killed)
      running.get(killed)!.signal("SIGKILL")
      yield* Effect.promise(() => running.get(killed)!.exited)
      say(`${killed}${killedNote} SIGKILLed at ${yield* Effect.promise(submitted)} submissions`)
      yield* Effect.sleep(`${Math.floor(500 + random() * 2_000)} millis`)
      start(killed)
      say(`${killed} started again`)

      // 2. A runner stopped for 8 s (its session and name stay), then continued.
      yield* at(9)
      const stopped = host(killed === "runner-3" ? "runner-2" : "runner-3", [killed])
      const stoppedNote = hosting(stopped)
      running.get(stopped)!.signal("SIGSTOP")
      say(`${stopped}${stoppedNote} SIGSTOPped at ${yield* Effect.promise(submitted)} submissions`)
      yield* Effect.sleep("8 seconds")
      running.get(stopped)!.signal("SIGCONT")
      say(`${stopped} continued`)

      // 3. A runner killed for good: the others take its unfinished work over.
      yield* at(21)
      const gone = names.find((n) => n !== killed && n !== stopped)!
      const goneNote = hosting(gone)
      running.get(gone)!.signal("SIGKILL")
      yield* Effect.promise(() => running.get(gone)!.exited)
      running.delete(gone)
      say(`${gone}${goneNote} SIGKILLed for good at ${yield* Effect.promise(submitted)} submissions`)

      // Long enough for the takeover (every 5 s), and at least the target.
      yield* at(32)
      yield* Effect.promise(async () => {
        const deadline = Date.now() + 180_000
        while ((await submitted()) < target) {
          if (Date.now() > deadline) throw new Error(`fewer than ${target} submissions after 180 s (${events.join("; ")})`)
          await new Promise((r) => setTimeout(r, 500))
        }
      })
      // Stopped as an operator would (Ctrl-C): in-flight transactions finish, or are left for recovery.
      for (const runner of running.values()) runner.signal("SIGTERM")
      for (const [name, runner] of running) {
        const exited = yield* Effect.promise(() => runner.exited)
        assert.strictEqual(exited.code, 0, `${name} stopped: ${exited.stderr.slice(-2000)}\n  ${events.join("\n  ")}`)
      }
      say(`stopped at ${yield* Effect.promise(submitted)} submissions`)
      const goneAt = new RegExp(`fleet runner ${gone} is gone`)
      const tookOver = [killed, stopped].flatMap((name) => logMessagesOf(running.get(name)!.logFile).filter((m) => goneAt.test(m)))
      // Whatever the runner killed for good had unfinished (nothing, if it was waiting for a round) is the others'
      // now: none of it is left for its name's last run.
      const leftToGone = (yield* fleet.journalRecords).filter((r) =>
        r.owner === gone && !["committed", "failed", "rolled_back"].includes(r.state)
      )
      assert.deepStrictEqual(leftToGone.map((r) => `${r.transaction_id} ${r.state}`), [], "taken over while the others ran")
      assert.isAtMost(tookOver.length, 1, "taken over once")

      // Each name once more, briefly: its recovery finishes what a stop left (the gone one's was taken over already).
      for (const name of names) {
        summaryOf(yield* Effect.promise(() => fleet.runner(name, 1).exited), `${name}'s last run`)
      }
      const { verdict } = yield* fleet.audited
      console.log(
        [`fleet chaos${cluster ? " (cluster)" : ""}, seed ${seed}:`, ...events, `taken over: ${tookOver.join(" | ") || "nothing"}`]
          .join("\n  ")
      )
      assert.isAtLeast(verdict.figures.committedOnChain, target)
      assert.strictEqual(verdict.figures.nonTerminal, 0)
    }).pipe(Effect.scoped)

  it.live(
    `seed ${seed}: ${target} submissions; every chunk once, every submission pinned and committed once, nonces contiguous`,
    () => chaos(false),
    600_000
  )

  it.live(
    `on Effect's cluster, seed ${seed}: the signer's runner killed, the next one frozen past the lease, another killed; the same audit`,
    () => chaos(true),
    600_000
  )
})
