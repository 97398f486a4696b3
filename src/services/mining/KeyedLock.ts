import { Effect, Semaphore } from "effect"

/**
 * Mutual exclusion per key (a CID, a transaction key): effects under one key run one at a time, under different keys
 * at once. A key's lock lives only while someone holds or waits for it, so memory stays bounded however many keys a
 * miner sees in days of running.
 */
export const makeKeyedLock = () => {
  const locks = new Map<string, { readonly semaphore: Semaphore.Semaphore; users: number }>()

  const withLock = <A, E, R>(key: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.suspend(() => {
      let lock = locks.get(key)
      if (lock === undefined) {
        lock = { semaphore: Semaphore.makeUnsafe(1), users: 0 }
        locks.set(key, lock)
      }
      lock.users++
      const held = lock
      return Semaphore.withPermit(held.semaphore, effect).pipe(
        Effect.ensuring(Effect.sync(() => {
          if (--held.users === 0) locks.delete(key)
        }))
      )
    })

  return { withLock, size: () => locks.size }
}

export type KeyedLock = ReturnType<typeof makeKeyedLock>
