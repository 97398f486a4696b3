import { spawnSync } from "node:child_process"
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { classify } from "../../src/domain/classify.ts"
import type { MiningError } from "../../src/domain/errors.ts"
import { HeliaStore } from "../../src/layers/ipfs/HeliaStore.ts"
import { SqliteJournal } from "../../src/layers/journal/SqliteJournal.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { Journal } from "../../src/services/Journal.ts"
import { MiningCoordinator } from "../../src/services/MiningCoordinator.ts"
import { MiningStats } from "../../src/services/MiningStats.ts"
import { Trainer } from "../../src/services/Trainer.ts"
import { TestChain } from "../../src/testing/TestChain.ts"
import { testSettingsLayer } from "../../src/testing/testConfig.ts"
import { TestGradientStore } from "../../src/testing/TestGradientStore.ts"
import { TestPowSolver } from "../../src/testing/TestPowSolver.ts"
import { TestTaskSource, testTask } from "../../src/testing/TestTaskSource.ts"
import { TestTrainer } from "../../src/testing/TestTrainer.ts"

/**
 * Issue 6, item 6: a full disk while journaling or pinning is a ResourceError, the transaction is compensated (it
 * never pins without its journaled intent; what it pinned is released), and the journal stays readable — through
 * the open handle, after reopening, and for the recovery that closes whatever the full disk left open. With the real
 * SqliteJournal throughout: ENOSPC injected around it (always), and a real full disk on a tiny tmpfs (when this
 * process may mount one: root on Linux; skipped elsewhere).
 */

/** What Node's fs throws on a full disk. */
const enospc = (syscall = "write"): NodeJS.ErrnoException =>
  Object.assign(new Error(`ENOSPC: no space left on device, ${syscall}`), { code: "ENOSPC", errno: -28, syscall })

/**
 * The real SqliteJournal on `path`, on a disk that is full whenever `isFull(event)` says so: `save` then fails as a
 * full disk makes it fail (ENOSPC, classified as the journal classifies it); reads always work.
 */
const journalOnFillingDisk = (path: string, isFull: (event: string) => boolean) =>
  Layer.effect(
    Journal,
    Effect.gen(function*() {
      const journal = yield* Journal
      return Journal.of({
        ...journal,
        save: (record, event) =>
          Effect.suspend(() =>
            isFull(event.event)
              ? Effect.fail(classify(enospc(), `journal: saving ${record.transaction_id}`))
              : journal.save(record, event)
          )
      })
    })
  ).pipe(Layer.provide(SqliteJournal.layer({ path })))

/** The coordinator on the given journal, store and trainer, everything else in memory. */
const coordinatorOn = <S>(
  journal: Layer.Layer<Journal, MiningError>,
  store: Layer.Layer<GradientStore | S, MiningError>,
  trainer: Layer.Layer<Trainer, MiningError> = TestTrainer.layer()
) =>
  MiningCoordinator.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(
      trainer,
      store,
      TestChain.layer(),
      TestTaskSource.layer(),
      journal,
      TestPowSolver.layer(),
      MiningStats.layer,
      testSettingsLayer()
    ))
  )

const journalPath = () => join(mkdtempSync(join(tmpdir(), "r3mes-disk-")), "journal.sqlite")

/** The journal file opened afresh: the record and its history as a restarted miner would read them. */
const reopen = (path: string, transactionId: string) =>
  Effect.gen(function*() {
    const journal = yield* Journal
    return { record: yield* journal.get(transactionId), events: yield* journal.events(transactionId) }
  }).pipe(Effect.provide(SqliteJournal.layer({ path })), Effect.scoped)

describe("disk faults (ENOSPC injected around the real SqliteJournal and store)", () => {
  it.effect("journal full at the pin intent: ResourceError, rolled back, nothing pinned; recovery closes it", () =>
    Effect.gen(function*() {
      const path = journalPath()
      // Full from the pin intent on.
      let full = false
      const { record, listed, adds, pins } = yield* Effect.gen(function*() {
        const record = yield* (yield* MiningCoordinator).mine(testTask(0))
        const store = yield* TestGradientStore
        // The open journal still answers while the disk is full.
        const listed = yield* (yield* Journal).list({})
        return { record, listed, adds: yield* store.calls("add"), pins: yield* store.pinned }
      }).pipe(
        Effect.provide(coordinatorOn(
          journalOnFillingDisk(path, (event) => (full ||= event === "pin_intent")),
          TestGradientStore.layer()
        )),
        Effect.scoped
      )
      assert.strictEqual(record.state, "rolled_back")
      assert.strictEqual(record.failed_step, "ipfs_upload")
      assert.strictEqual(record.error_category, "resource")
      assert.include(record.error_message ?? "", "no space left on device")
      // Intent before side effect: the intent could not be written, so nothing was pinned.
      assert.strictEqual(adds, 0)
      assert.deepStrictEqual(pins, [])
      // The final state could not be written either (the disk is still full): the journal keeps the last state
      // that made it to disk, a non-terminal one, for the next start's recovery.
      assert.deepStrictEqual(listed.map((r) => r.state), ["ipfs_upload"])

      const before = yield* reopen(path, record.transaction_id)
      assert.strictEqual(before.record?.state, "ipfs_upload")
      assert.deepStrictEqual(before.events.map((e) => e.event), ["created", "state_changed", "state_changed"])

      // Space freed, the miner restarts: recovery closes the record (nothing was uploaded: rolled back).
      const summary = yield* Effect.gen(function*() {
        return yield* (yield* MiningCoordinator).recoverTransactions()
      }).pipe(Effect.provide(coordinatorOn(SqliteJournal.layer({ path }), TestGradientStore.layer())), Effect.scoped)
      assert.strictEqual(summary.rolled_back, 1)
      const after = yield* reopen(path, record.transaction_id)
      assert.strictEqual(after.record?.state, "rolled_back")
      assert.strictEqual(after.events.at(-1)?.detail, "ipfs_upload → rolled_back")
    }))

  it.effect("journal full for one write: rolled back (resource), journaled once space is back", () =>
    Effect.gen(function*() {
      const path = journalPath()
      let intents = 0
      const record = yield* Effect.gen(function*() {
        return yield* (yield* MiningCoordinator).mine(testTask(1))
      }).pipe(
        // Full for the pin intent only: the next write finds space again.
        Effect.provide(coordinatorOn(
          journalOnFillingDisk(path, (event) => event === "pin_intent" && ++intents === 1),
          TestGradientStore.layer()
        )),
        Effect.scoped
      )
      assert.strictEqual(record.state, "rolled_back")
      assert.strictEqual(record.error_category, "resource")
      const reopened = yield* reopen(path, record.transaction_id)
      assert.strictEqual(reopened.record?.state, "rolled_back")
      assert.strictEqual(reopened.record?.error_category, "resource")
      assert.strictEqual(reopened.record?.failed_step, "ipfs_upload")
      assert.notInclude(reopened.events.map((e) => e.event), "pin_intent")
    }))

  it.effect("pinning fails with ENOSPC: ResourceError, not retried, rolled back with its unpin; all journaled", () =>
    Effect.gen(function*() {
      const path = journalPath()
      const { record, pins } = yield* Effect.gen(function*() {
        const record = yield* (yield* MiningCoordinator).mine(testTask(2))
        return { record, pins: yield* (yield* TestGradientStore).pinned }
      }).pipe(
        Effect.provide(coordinatorOn(
          SqliteJournal.layer({ path }),
          TestGradientStore.layer({ faults: { add: { alwaysFail: classify(enospc(), "embedded IPFS: add") } } })
        )),
        Effect.scoped
      )
      assert.strictEqual(record.state, "rolled_back")
      assert.strictEqual(record.failed_step, "ipfs_upload")
      assert.strictEqual(record.error_category, "resource")
      assert.strictEqual(record.attempts.ipfs_upload, 1, "a full disk is not retried")
      assert.deepStrictEqual(record.rollback_actions.map((a) => [a.action, a.status]), [["unpin", "done"]])
      assert.deepStrictEqual(pins, [])
      const reopened = yield* reopen(path, record.transaction_id)
      assert.strictEqual(reopened.record?.state, "rolled_back")
      assert.strictEqual(reopened.record?.error_category, "resource")
      assert.deepStrictEqual(reopened.events.map((e) => e.event), [
        "created",
        "state_changed",
        "state_changed",
        "pin_intent",
        "state_changed"
      ])
    }))

  it.effect("pinning fails with ENOSPC after storing: the compensation releases the pin", () =>
    Effect.gen(function*() {
      const path = journalPath()
      const { record, pins, ops } = yield* Effect.gen(function*() {
        const record = yield* (yield* MiningCoordinator).mine(testTask(3))
        const store = yield* TestGradientStore
        return { record, pins: yield* store.pinned, ops: (yield* store.operations).map((o) => o.op) }
      }).pipe(
        Effect.provide(coordinatorOn(
          SqliteJournal.layer({ path }),
          TestGradientStore.layer({
            faults: { add: { failAfter: { times: 1, error: classify(enospc(), "embedded IPFS: add") } } }
          })
        )),
        Effect.scoped
      )
      assert.strictEqual(record.state, "rolled_back")
      assert.strictEqual(record.error_category, "resource")
      assert.deepStrictEqual(ops, ["add", "unpin"])
      assert.deepStrictEqual(pins, [])
      assert.strictEqual((yield* reopen(path, record.transaction_id)).record?.state, "rolled_back")
    }))
})

// -------------------------------------------------------------------------------------------------------------
// A real full disk

/** Mounts a tmpfs of `size` on a fresh directory; undefined when this process may not (not root, not Linux). */
const mountTmpfs = (size: string): string | undefined => {
  if (process.platform !== "linux" || process.getuid?.() !== 0) return undefined
  const dir = mkdtempSync(join(tmpdir(), "r3mes-tmpfs-"))
  const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { encoding: "utf8" })
  if (mounted.status !== 0) {
    rmSync(dir, { recursive: true, force: true })
    return undefined
  }
  return dir
}

const unmount = (dir: string): void => {
  spawnSync("umount", [dir])
  rmSync(dir, { recursive: true, force: true })
}

const canMountTmpfs = (() => {
  const probe = mountTmpfs("64k")
  if (probe === undefined) return false
  unmount(probe)
  return true
})()

/** Writes a filler file until the file system has no page left. */
const fillUp = (dir: string): void => {
  const fd = openSync(join(dir, "filler"), "w")
  try {
    for (const size of [1 << 20, 1 << 12, 1]) {
      const chunk = Buffer.alloc(size, 0xff)
      try {
        for (;;) writeSync(fd, chunk)
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error
      }
    }
  } finally {
    closeSync(fd)
  }
}

/** The test trainer, and the disk fills up while it trains. */
const trainerFillingUp = (dir: string, envelopeBytes?: number) =>
  Layer.effect(
    Trainer,
    Effect.gen(function*() {
      const trainer = yield* Trainer
      return Trainer.of({
        profile: trainer.profile,
        train: (task, miner) => trainer.train(task, miner).pipe(Effect.tap(() => Effect.sync(() => fillUp(dir))))
      })
    })
  ).pipe(Layer.provide(TestTrainer.layer(envelopeBytes === undefined ? {} : { envelopeBytes })))

describe.skipIf(!canMountTmpfs)("disk faults on a real full disk (tmpfs)", () => {
  it.live("the journal's disk fills up: SQLITE_FULL is a ResourceError; readable while full; recovery closes it", () =>
    Effect.gen(function*() {
      const dir = mountTmpfs("4m")!
      try {
        const path = join(dir, "journal.sqlite")
        const { record, listed, pins } = yield* Effect.gen(function*() {
          const record = yield* (yield* MiningCoordinator).mine(testTask(0))
          return {
            record,
            listed: yield* (yield* Journal).list({}),
            pins: yield* (yield* TestGradientStore).pinned
          }
        }).pipe(
          Effect.provide(
            coordinatorOn(SqliteJournal.layer({ path }), TestGradientStore.layer(), trainerFillingUp(dir))
          ),
          Effect.scoped
        )
        assert.strictEqual(record.state, "rolled_back")
        assert.strictEqual(record.error_category, "resource")
        assert.include(record.error_message ?? "", "database or disk is full")
        assert.deepStrictEqual(pins, [])
        assert.deepStrictEqual(listed.map((r) => r.state), ["training"])
        // Reopened with the disk still full: everything written before is there.
        const whileFull = yield* reopen(path, record.transaction_id)
        assert.strictEqual(whileFull.record?.state, "training")
        assert.deepStrictEqual(whileFull.events.map((e) => e.event), ["created", "state_changed"])
        // Space freed, restart: recovery closes it (interrupted before anything was uploaded: failed).
        rmSync(join(dir, "filler"))
        const summary = yield* Effect.gen(function*() {
          return yield* (yield* MiningCoordinator).recoverTransactions()
        }).pipe(Effect.provide(coordinatorOn(SqliteJournal.layer({ path }), TestGradientStore.layer())), Effect.scoped)
        assert.strictEqual(summary.recovered, 1)
        assert.strictEqual((yield* reopen(path, record.transaction_id)).record?.state, "failed")
      } finally {
        unmount(dir)
      }
    }), 30_000)

  it.live("the IPFS repository's disk fills up: the pin fails (ResourceError), rolled back, nothing pinned", () =>
    Effect.gen(function*() {
      const dir = mountTmpfs("4m")!
      try {
        const path = journalPath()
        const { record, pins } = yield* Effect.gen(function*() {
          const record = yield* (yield* MiningCoordinator).mine(testTask(0))
          return { record, pins: yield* (yield* GradientStore).pins }
        }).pipe(
          Effect.provide(coordinatorOn(
            SqliteJournal.layer({ path }),
            HeliaStore.layer({ dataDir: dir }),
            trainerFillingUp(dir, 600_000)
          )),
          Effect.scoped
        )
        assert.strictEqual(record.state, "rolled_back")
        assert.strictEqual(record.failed_step, "ipfs_upload")
        assert.strictEqual(record.error_category, "resource")
        assert.include(record.error_message ?? "", "ENOSPC")
        assert.deepStrictEqual(record.rollback_actions.map((a) => [a.action, a.status]), [["unpin", "done"]])
        assert.deepStrictEqual(pins, [])
        const reopened = yield* reopen(path, record.transaction_id)
        assert.strictEqual(reopened.record?.state, "rolled_back")
        assert.strictEqual(reopened.record?.error_category, "resource")
      } finally {
        unmount(dir)
      }
    }), 30_000)
})
