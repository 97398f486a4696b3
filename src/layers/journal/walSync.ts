import { type FileHandle, open } from "node:fs/promises"

/**
 * Makes commits durable without blocking the event loop: `synchronous = FULL` would fsync inside every COMMIT, on
 * the main thread (2.4 ms a commit on this machine's disk, ~20 ms of each mining transaction's nine saves, when the
 * whole transaction has ~100 ms of main-thread work). Instead the WAL file is fdatasync'ed on libuv's thread pool
 * after the commit, and the save completes only once a sync that started after its commit has finished: what FULL
 * guarantees, with the commits of concurrent transactions sharing one sync (group commit).
 */
export const makeWalSync = (walPath: string) => {
  // Opened at the first save, once the commit has created the WAL. SQLite reuses the file in place after a
  // checkpoint and deletes it only when the last connection closes, which ours is not while the journal is open: the
  // file opened here is the one SQLite writes to for as long as this journal lives.
  let wal: Promise<FileHandle> | undefined
  let running: Promise<void> | undefined
  let queued: Promise<void> | undefined

  const syncOnce = async (): Promise<void> => {
    wal ??= open(walPath, "r")
    const handle = await wal.catch((error) => {
      wal = undefined
      throw error
    })
    await handle.datasync()
  }

  /** Resolves once a sync that started after this call has finished. */
  const durable = (): Promise<void> => {
    if (running === undefined) {
      const started: Promise<void> = syncOnce().finally(() => {
        if (running === started) running = undefined
      })
      running = started
      return started
    }
    // A sync is under way but may have started before our commit: wait for the next one, shared by every commit
    // made meanwhile.
    queued ??= running.then(() => undefined, () => undefined).then(() => {
      queued = undefined
      return durable()
    })
    return queued
  }

  const close = async (): Promise<void> => {
    await Promise.allSettled([running, queued])
    const handle = await wal?.catch(() => undefined)
    wal = undefined
    await handle?.close().catch(() => undefined)
  }

  return { durable, close }
}
