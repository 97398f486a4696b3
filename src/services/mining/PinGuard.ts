import { Effect } from "effect"
import { makeKeyedLock } from "./KeyedLock.ts"

/**
 * Keeps a release of pins from undoing a pin taken meanwhile. Training is deterministic, so a chunk worked again (its
 * first submission lost with a devnet's last seconds) pins the very CID whose release is under way: the release
 * decided "unreferenced" from the journal, then asked the chain, then unpinned — and took the new transaction's pin
 * with it (CI's chaos run: two committed submissions left unpinned).
 *
 * A release watches its candidates from before it reads what references them; a transaction pins under the CID's
 * lock and marks a watched CID as taken; the release unpins under the same lock, only what nobody took since.
 */
export const makePinGuard = () => {
  const lock = makeKeyedLock()
  const watched = new Map<string, { taken: boolean; watchers: number }>()

  /** Runs a transaction's pin of `cid` (its intent journaled inside `pin`, before the store is asked). */
  const pinning = <A, E, R>(cid: string, pin: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    lock.withLock(
      cid,
      Effect.suspend(() => {
        const watch = watched.get(cid)
        if (watch !== undefined) watch.taken = true
        return pin
      })
    )

  const watch = (cids: ReadonlyArray<string>) =>
    Effect.sync(() => {
      for (const cid of cids) {
        const entry = watched.get(cid)
        if (entry === undefined) watched.set(cid, { taken: false, watchers: 1 })
        else entry.watchers++
      }
    })

  const unwatch = (cids: ReadonlyArray<string>) =>
    Effect.sync(() => {
      for (const cid of cids) {
        const entry = watched.get(cid)
        if (entry !== undefined && --entry.watchers === 0) watched.delete(cid)
      }
    })

  /**
   * Releases `candidates`: `decide` (run after the watch began) says which of them nothing references; each of those
   * is unpinned by `unpin` unless a transaction pinned it since the watch began. Returns the CIDs unpinned.
   */
  const releasing = <E, R, E2, R2>(
    candidates: ReadonlyArray<string>,
    decide: Effect.Effect<ReadonlyArray<string>, E, R>,
    unpin: (cid: string) => Effect.Effect<boolean, E2, R2>
  ): Effect.Effect<ReadonlyArray<string>, E | E2, R | R2> =>
    Effect.acquireUseRelease(
      watch(candidates),
      () =>
        Effect.gen(function*() {
          const released: Array<string> = []
          for (const cid of yield* decide) {
            const done = yield* lock.withLock(
              cid,
              Effect.suspend(() => (watched.get(cid)?.taken === true ? Effect.succeed(false) : unpin(cid)))
            )
            if (done) released.push(cid)
          }
          return released
        }),
      () => unwatch(candidates)
    )

  return { pinning, releasing, watching: () => watched.size, locked: lock.size }
}

export type PinGuard = ReturnType<typeof makePinGuard>
