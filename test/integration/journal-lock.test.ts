import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import { holderFile, lockState } from "../../src/layers/journal/dataDirLock.ts"
import { SqliteJournal } from "../../src/layers/journal/SqliteJournal.ts"
import { acquirePidLock } from "../../src/layers/process/pidLock.ts"
import { Journal } from "../../src/services/Journal.ts"
import { killHard, spawnHolder } from "../support/journalHolderProcess.ts"

/**
 * Issue 11, defect 3: two miners on one data dir both ran, "recovered" each other's live transactions and clashed
 * on nonces. The journal opened for mining now holds an OS lock that the kernel releases when its process dies.
 */

const freshPath = () => join(mkdtempSync(join(tmpdir(), "r3mes-lock-")), "journal.sqlite")

const openForMining = (path: string) => Effect.flip(Effect.scoped(Layer.build(SqliteJournal.layer({ path }))))

describe("one miner per data dir (issue 11, defect 3)", () => {
  it.live("another process holds it: refused with its pid; readers read meanwhile; free at once after SIGKILL", () =>
    Effect.gen(function*() {
      const path = freshPath()
      const holder = yield* spawnHolder(path)
      assert.isTrue(holder.answer.held, JSON.stringify(holder.answer))
      const pid = holder.child.pid!

      const refused = yield* openForMining(path)
      assert.strictEqual(refused._tag, "ResourceError")
      assert.strictEqual(refused.message, `the data dir ${dirname(path)} is in use by another miner (pid ${pid})`)
      assert.include(refused.hint, "stop it first")
      assert.include(refused.hint, "--data-dir")

      // A reader (status, stats) beside the running miner: read-only, no lock, its record visible.
      const read = yield* Journal.use((journal) => journal.get(holder.answer.transaction_id!)).pipe(
        Effect.provide(SqliteJournal.layer({ path, readOnly: true }))
      )
      assert.strictEqual(read?.transaction_id, holder.answer.transaction_id)
      const state = yield* lockState(path)
      assert.isTrue(state.held)
      assert.strictEqual(state.held && state.pid, pid)

      // No finalizer runs on SIGKILL: the pid file stays behind, stale. The kernel released the lock all the same.
      yield* killHard(holder)
      assert.isTrue(existsSync(holderFile(path)))
      assert.deepStrictEqual(yield* lockState(path), { held: false })
      yield* Effect.scoped(Effect.gen(function*() {
        const journal = yield* Journal
        assert.strictEqual((yield* journal.get(holder.answer.transaction_id!))?.state, "pending")
        const now = yield* lockState(path)
        assert.isTrue(now.held && now.pid === process.pid, "the new holder's pid replaces the stale one")
      }).pipe(Effect.provide(SqliteJournal.layer({ path }))))
    }).pipe(Effect.scoped), 30_000)

  it.live("this process holds it: a second process is refused, naming us; free again once we close it", () =>
    Effect.gen(function*() {
      const path = freshPath()
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Journal
        const second = yield* spawnHolder(path)
        assert.isFalse(second.answer.held)
        assert.strictEqual(second.answer.error?.tag, "ResourceError")
        assert.strictEqual(
          second.answer.error?.message,
          `the data dir ${dirname(path)} is in use by another miner (pid ${process.pid})`
        )
        assert.strictEqual(yield* Effect.promise(() => second.exited), 3)
      }).pipe(Effect.provide(SqliteJournal.layer({ path }))))
      assert.isFalse(existsSync(holderFile(path)), "a clean close removes the pid file")
      const third = yield* spawnHolder(path)
      assert.isTrue(third.answer.held)
    }).pipe(Effect.scoped), 30_000)

  it.effect("the same process twice: the second opener is refused at once, naming this very process", () =>
    Effect.gen(function*() {
      const path = freshPath()
      yield* Layer.build(SqliteJournal.layer({ path }))
      const refused = yield* openForMining(path)
      assert.strictEqual(refused._tag, "ResourceError")
      assert.include(refused.message, `(pid ${process.pid}, this very process)`)
      assert.deepStrictEqual(JSON.parse(readFileSync(holderFile(path), "utf8")).pid, process.pid)
    }).pipe(Effect.scoped))

  it.live("two miners starting at once: exactly one gets the data dir", () =>
    Effect.gen(function*() {
      const path = freshPath()
      const [a, b] = yield* Effect.all([spawnHolder(path), spawnHolder(path)], { concurrency: 2 })
      const winners = [a, b].filter((h) => h.answer.held)
      assert.strictEqual(winners.length, 1, JSON.stringify([a.answer, b.answer]))
      const loser = [a, b].find((h) => !h.answer.held)!
      // The pid file is written right after the lock is taken: a loser in between cannot name the winner yet.
      assert.match(
        loser.answer.error?.message ?? "",
        new RegExp(`is in use by another miner \\((pid ${winners[0]!.child.pid}|pid unknown)\\)$`)
      )
    }).pipe(Effect.scoped), 30_000)
})

/**
 * The pid lock of the embedded IPFS repository and the devnet's data dir (src/layers/process/pidLock.ts): unlike the
 * journal's OS lock it survives its holder's death, so its takeover rules are what keeps a crashed run from blocking
 * the next one, and two live ones apart.
 */
describe("pid lock (embedded IPFS repository, devnet data dir)", () => {
  const lockIn = (dir: string) => ({
    path: join(dir, "x.lock"),
    what: `the test directory ${dir}`,
    resource: "test",
    hint: "stop the other one",
    sameProcessHint: "share the first one"
  })
  const freshDir = () => mkdtempSync(join(tmpdir(), "r3mes-pidlock-"))

  it.effect("held: the file names this process; released: the file is gone, nothing else left behind", () =>
    Effect.gen(function*() {
      const dir = freshDir()
      const scope = yield* Scope.make()
      yield* acquirePidLock(lockIn(dir)).pipe(Scope.provide(scope))
      assert.strictEqual(readFileSync(join(dir, "x.lock"), "utf8").trim(), String(process.pid))
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(readdirSync(dir), [])
    }))

  it.effect("a second holder in this process is refused, naming this process and the fix", () =>
    Effect.gen(function*() {
      const dir = freshDir()
      yield* acquirePidLock(lockIn(dir))
      const refused = yield* Effect.flip(Effect.scoped(acquirePidLock(lockIn(dir))))
      assert.strictEqual(refused._tag, "ResourceError")
      assert.include(refused.message, `already open in this process (in use by process ${process.pid})`)
      assert.strictEqual(refused.hint, "share the first one")
      // The refused attempt did not take the first holder's lock away.
      assert.strictEqual(readFileSync(join(dir, "x.lock"), "utf8").trim(), String(process.pid))
    }).pipe(Effect.scoped))

  it.effect("another live process holds it: refused, naming that process and the fix", () =>
    Effect.gen(function*() {
      const dir = freshDir()
      // The test runner's parent is alive.
      writeFileSync(join(dir, "x.lock"), `${process.ppid}\n`)
      const refused = yield* Effect.flip(Effect.scoped(acquirePidLock(lockIn(dir))))
      assert.strictEqual(refused._tag, "ResourceError")
      assert.strictEqual(refused.message, `the test directory ${dir} is in use by process ${process.ppid}`)
      assert.strictEqual(refused.hint, "stop the other one")
      assert.strictEqual(readFileSync(join(dir, "x.lock"), "utf8").trim(), String(process.ppid))
    }))

  for (
    const [stale, content] of [
      ["a process that is gone", "4194305"],
      ["no pid at all", "garbage"],
      ["an empty file", ""],
      // A container restarted with the same pid: this process does not hold it.
      ["our own pid, not held by this process", String(process.pid)]
    ] as const
  ) {
    it.effect(`a lock naming ${stale} is taken over`, () =>
      Effect.gen(function*() {
        const dir = freshDir()
        writeFileSync(join(dir, "x.lock"), content)
        yield* acquirePidLock(lockIn(dir))
        assert.strictEqual(readFileSync(join(dir, "x.lock"), "utf8").trim(), String(process.pid))
        assert.deepStrictEqual(readdirSync(dir), ["x.lock"])
      }).pipe(Effect.scoped))
  }
})
