import { linkSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { resolve } from "node:path"
import { Effect, type Scope } from "effect"
import { classify } from "../../domain/classify.ts"
import { type MiningError, ResourceError } from "../../domain/errors.ts"
import { isAlive } from "./liveness.ts"

/**
 * A pid file as a lock, for directories that one process at a time may use (the embedded IPFS repository, the
 * devnet's data dir). One rule set:
 * - the file is created with its content in one step (written aside, then hard-linked), so a reader never sees an
 *   empty lock and mistakes it for a stale one;
 * - a lock naming a process that is gone, or no pid at all, is stale and taken over;
 * - a lock naming our own pid is taken over only when this process does not hold it (a container restarted with
 *   the same pid left it); when this process holds it, a second user here is refused;
 * - a lock naming another live process is refused, with a hint naming that process and the fix.
 *
 * Unlike the journal's OS lock (journal/dataDirLock.ts) a pid file survives a SIGKILL, hence the takeover rules;
 * the file is kept because its content is what tests and operators read. A stale lock is moved aside before it is
 * dropped, and put back when it turns out to be a fresh one that a racing start wrote meanwhile.
 */

export interface PidLockOptions {
  /** The lock file. */
  readonly path: string
  /** What is locked, as a message names it, e.g. "the embedded IPFS repository /data/ipfs". */
  readonly what: string
  /** The ResourceError's `resource`. */
  readonly resource: string
  /** The fix when another process holds the lock, e.g. "stop that r3mes-miner first, or give this another --data-dir". */
  readonly hint: string
  /** The fix when this very process holds it already. */
  readonly sameProcessHint: string
}

/** Locks this process holds, by absolute path: the only way to tell our own lock from a previous incarnation's. */
const heldHere = new Set<string>()

const readHolder = (path: string): number | undefined => {
  let text: string
  try {
    text = readFileSync(path, "utf8")
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined
    throw error
  }
  const pid = Number.parseInt(text.trim(), 10)
  return Number.isSafeInteger(pid) && pid > 0 ? pid : Number.NaN
}

/** Creates the lock with our pid in it, atomically: false when a lock file exists. */
const create = (path: string): boolean => {
  const partial = `${path}.${process.pid}.tmp`
  writeFileSync(partial, `${process.pid}\n`)
  try {
    linkSync(partial, path)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false
    throw error
  } finally {
    rmSync(partial, { force: true })
  }
}

/**
 * Drops the stale lock naming `stale` (NaN: no pid), unless another start replaced it since it was read: then that
 * one is put back where it was (link fails if yet another start created one meanwhile, which then wins).
 */
const dropStale = (path: string, stale: number): void => {
  const aside = `${path}.${process.pid}.stale`
  try {
    renameSync(path, aside)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return
    throw error
  }
  // Object.is: NaN (no pid) equals NaN.
  if (!Object.is(readHolder(aside), stale)) {
    try {
      linkSync(aside, path)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error
    }
  }
  rmSync(aside, { force: true })
}

const take = (options: PidLockOptions, path: string): void => {
  if (heldHere.has(path)) {
    throw new ResourceError({
      message: `${options.what} is already open in this process (in use by process ${process.pid})`,
      resource: options.resource,
      hint: options.sameProcessHint
    })
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    if (create(path)) {
      heldHere.add(path)
      return
    }
    const holder = readHolder(path)
    if (holder === undefined) continue
    if (!Number.isNaN(holder) && holder !== process.pid && isAlive(holder)) {
      throw new ResourceError({
        message: `${options.what} is in use by process ${holder}`,
        resource: options.resource,
        hint: options.hint
      })
    }
    dropStale(path, holder)
  }
  throw new ResourceError({
    message: `could not lock ${options.what}: its lock file ${path} keeps changing`,
    resource: options.resource,
    hint: `another process is starting on it at the same time; try again, or give this one another data dir`
  })
}

/** Removes the lock if it is still ours (a lock someone else took over after a mistaken takeover stays theirs). */
const release = (path: string): void => {
  heldHere.delete(path)
  try {
    if (readHolder(path) === process.pid) rmSync(path, { force: true })
  } catch {
    // Unreadable now: nothing of ours left to remove.
  }
}

/** Holds the pid lock until the scope closes. The lock file's directory must exist. */
export const acquirePidLock = Effect.fn("acquirePidLock")(function*(
  options: PidLockOptions
): Effect.fn.Return<void, MiningError, Scope.Scope> {
  const path = resolve(options.path)
  yield* Effect.acquireRelease(
    Effect.try({
      try: () => take(options, path),
      catch: (error) => (error instanceof ResourceError ? error : classify(error, `locking ${path}`))
    }),
    () => Effect.sync(() => release(path))
  )
})
