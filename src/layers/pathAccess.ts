import { accessSync, constants, statSync } from "node:fs"
import { dirname, resolve } from "node:path"

/**
 * The real reason a file could not be created or opened under a path, when the error at hand hides it. Measured on
 * Node 24: `mkdirSync(…, { recursive: true })` under a read-only mount fails with ENOENT (not EROFS), under a file
 * with ENOTDIR or EEXIST (naming the file, not the path asked for), and SQLite says only "unable to open database
 * file" or "attempt to write a readonly database", whatever the cause. An operator told "no such file" about a
 * directory that exists fixes the wrong thing.
 */

/** A Node-style system error (`code`, `path`), which `classify` turns into a hint naming the path. */
export class PathProblem extends Error {
  readonly code: string
  readonly path: string
  constructor(code: string, path: string, message: string) {
    super(`${code}: ${message}`)
    this.name = "PathProblem"
    this.code = code
    this.path = path
  }
}

const codeOf = (u: unknown): string | undefined =>
  typeof u === "object" && u !== null && typeof (u as { code?: unknown }).code === "string"
    ? (u as { code: string }).code
    : undefined

const statOrUndefined = (path: string) => {
  try {
    return statSync(path)
  } catch (error) {
    const code = codeOf(error)
    if (code === "ENOENT" || code === "ENOTDIR") return undefined
    throw error
  }
}

const notWritable = (path: string, error: unknown): PathProblem => {
  const code = codeOf(error) ?? "EACCES"
  const why = code === "EROFS" ? "is on a read-only file system" : "is not writable by this user"
  return new PathProblem(code, path, `${path} ${why}`)
}

/**
 * Why `target` (a directory to create or write in, or a file to create or append to) cannot be written, found by looking: the nearest
 * part of it that exists is a file where a directory is needed (ENOTDIR), or is not writable (EROFS, EACCES, EPERM).
 * Undefined when nothing is wrong that way.
 */
export const pathProblem = (target: string, kind: "directory" | "file" = "directory"): PathProblem | undefined => {
  const start = resolve(target)
  let current = start
  for (;;) {
    let stat: ReturnType<typeof statSync>
    try {
      stat = statOrUndefined(current)
    } catch (error) {
      return notWritable(current, error)
    }
    if (stat !== undefined) {
      if ((current !== start || kind === "directory") && !stat.isDirectory()) {
        return new PathProblem("ENOTDIR", current, `${current} is a file, not a directory`)
      }
      try {
        accessSync(current, stat.isDirectory() ? constants.W_OK | constants.X_OK : constants.W_OK)
        return undefined
      } catch (error) {
        return notWritable(current, error)
      }
    }
    const parent = dirname(current)
    if (parent === current) return undefined
    current = parent
  }
}

/** Errors whose code or text may hide a path problem (see above). */
const mayHidePathProblem = (error: unknown): boolean => {
  const code = codeOf(error)
  if (code === "ENOENT" || code === "EEXIST" || code === "ENOTDIR" || code === "EACCES" || code === "EPERM") return true
  const text = error instanceof Error ? error.message : String(error)
  return /unable to open database file|readonly database/i.test(text)
}

/**
 * `error` itself, or the PathProblem of `target` that explains it: pass the result to `classify` with the setting
 * that chose the path.
 */
export const explainPathError = (error: unknown, target: string, kind: "directory" | "file" = "directory"): unknown =>
  mayHidePathProblem(error) ? (pathProblem(target, kind) ?? error) : error

/** The setting that chooses the data dir, as path hints name it. */
export const dataDirSetting = "--data-dir (R3MES_DATA_DIR)"
