import { Predicate } from "effect"
import {
  AuthenticationError,
  isMiningError,
  type MiningError,
  NetworkError,
  ResourceError,
  RetryableError,
  TimeoutError,
  ValidationError
} from "./errors.ts"

/**
 * Turns a foreign exception (Node system error, HTTP error, RPC error, library error) into the miner's error
 * hierarchy. It never invents success: whatever it cannot recognise becomes a non-retryable ValidationError carrying
 * the original message, so an unknown failure stops the transaction and is rolled back instead of being retried
 * blindly.
 */
export const classify = (u: unknown, context?: string, options: ClassifyOptions = {}): MiningError => {
  if (isMiningError(u)) return u
  const facts = collect(u)
  const message = context ? `${context}: ${facts.message}` : facts.message
  const cause = facts.message
  const elsewhere = options.setting === undefined ? "choose another path" : `set ${options.setting} to another path`

  if (facts.codes.some((c) => networkCodes.has(c))) return new NetworkError({ message, cause })
  if (facts.codes.some((c) => timeoutCodes.has(c))) return new TimeoutError({ message, cause })
  if (facts.codes.includes("ENOSPC") || facts.codes.includes("EDQUOT")) {
    return new ResourceError({ message, cause, resource: "disk", hint: "free disk space in the data dir" })
  }
  if (facts.codes.includes("ENOMEM")) return new ResourceError({ message, cause, resource: "memory" })
  if (facts.codes.includes("EMFILE") || facts.codes.includes("ENFILE")) {
    return new ResourceError({ message, cause, resource: "file descriptors" })
  }
  if (facts.codes.includes("ENOTDIR")) {
    const where = facts.path === undefined ? "a parent of the path" : facts.path
    return new ValidationError({
      message,
      cause,
      hint: `${where} is a file where a directory is needed: move that file away, or ${elsewhere}`
    })
  }
  if (facts.codes.includes("EROFS")) {
    const where = facts.path === undefined ? "the path" : facts.path
    return new ResourceError({
      message,
      cause,
      resource: "disk",
      hint: `${where} is on a read-only file system: remount it read-write, or ${elsewhere}`
    })
  }
  if (facts.codes.includes("EACCES") || facts.codes.includes("EPERM")) {
    const hint = facts.path === undefined
      ? `check file permissions, or ${elsewhere}`
      : `this user may not access ${facts.path} as needed: fix its owner or mode (chown/chmod), or ${elsewhere}`
    return new AuthenticationError({ message, cause, hint })
  }

  if (facts.status !== undefined) {
    if (facts.status === 401 || facts.status === 403) return new AuthenticationError({ message, cause })
    if (facts.status === 408 || facts.status === 504) return new TimeoutError({ message, cause })
    if (facts.status === 429) return new RetryableError({ message, cause, hint: "rate limited; backing off" })
    if (facts.status === 413) return new ResourceError({ message, cause, resource: "payload size" })
    if (facts.status >= 500) return new NetworkError({ message, cause })
    if (facts.status >= 400) return new ValidationError({ message, cause })
  }

  const text = facts.text
  if (/insufficient funds/.test(text)) {
    // No address here: the chain adapter (viemErrors.ts) names it where viem or its caller knows it.
    return new AuthenticationError({
      message,
      cause,
      hint: "fund the miner account (R3MES_PRIVATE_KEY's address) with the chain's native token for gas"
    })
  }
  if (/invalid signature|bad signature|signature mismatch|invalid private key|unauthori[sz]ed|forbidden/.test(text)) {
    return new AuthenticationError({ message, cause })
  }
  if (/nonce too low|nonce has already been used|replacement (transaction )?underpriced|already known|busy|try again/.test(text)) {
    return new RetryableError({ message, cause })
  }
  if (/timed? ?out|timeout/.test(text)) return new TimeoutError({ message, cause })
  if (/econnrefused|econnreset|socket hang up|fetch failed|network error|getaddrinfo|connection (refused|reset|closed)/.test(text)) {
    return new NetworkError({ message, cause })
  }
  if (/out of memory|allocation failed|failed to allocate|bad_alloc/.test(text)) {
    return new ResourceError({ message, cause, resource: "memory" })
  }
  // SQLite says neither which file nor why; the journal layer probes the path first (pathAccess.ts) when it can.
  if (/unable to open database file|attempt to write a readonly database/.test(text)) {
    return new ResourceError({
      message,
      cause,
      resource: "disk",
      hint: "the journal's directory must be writable by this user (SQLite creates files next to the journal): " +
        `fix its owner or mode, or ${elsewhere}`
    })
  }
  if (/no space left|disk full|database or disk is full|sqlite_full/.test(text)) return new ResourceError({ message, cause, resource: "disk" })
  if (/too large|exceeds (the )?(size )?limit|over the size limit/.test(text)) {
    return new ResourceError({ message, cause, resource: "size" })
  }
  return new ValidationError({ message, cause })
}

const networkCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "ENOTFOUND",
  "EAI_AGAIN",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  // A TCP-level timeout is the network failing, not our own deadline.
  "ETIMEDOUT",
  "ESOCKETTIMEDOUT",
  "UND_ERR_CONNECT_TIMEOUT"
])
const timeoutCodes = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT", "ABORT_ERR", "TIMEOUT_ERR"])

export interface ClassifyOptions {
  /**
   * The setting that chose the path a file-system error is about (`--data-dir (R3MES_DATA_DIR)`), so the hint
   * names what to change.
   */
  readonly setting?: string | undefined
}

interface Facts {
  readonly message: string
  /** The file-system path of a Node system error (`error.path`), the outermost one. */
  readonly path: string | undefined
  readonly text: string
  readonly codes: ReadonlyArray<string>
  readonly status: number | undefined
}

/** Walks the error and its `cause` chain (fetch and viem wrap the system error several levels deep). */
const collect = (u: unknown): Facts => {
  const codes: Array<string> = []
  const texts: Array<string> = []
  let status: number | undefined
  let message: string | undefined
  let path: string | undefined
  let current: unknown = u
  for (let depth = 0; depth < 8 && current !== undefined && current !== null; depth++) {
    if (Predicate.isString(current)) {
      texts.push(current)
      message ??= current
      break
    }
    if (!Predicate.isObject(current)) {
      texts.push(String(current))
      message ??= String(current)
      break
    }
    const o = current as Record<string, unknown>
    if (Predicate.isString(o.code)) codes.push(o.code.toUpperCase())
    if (Predicate.isString(o.errno)) codes.push(o.errno.toUpperCase())
    if (path === undefined && Predicate.isString(o.path)) path = o.path
    for (const key of ["status", "statusCode"] as const) {
      const v = o[key]
      if (status === undefined && Predicate.isNumber(v) && v >= 100 && v < 600) status = v
    }
    const response = o.response
    if (status === undefined && Predicate.isObject(response)) {
      const v = (response as Record<string, unknown>).status
      if (Predicate.isNumber(v)) status = v
    }
    for (const key of ["message", "shortMessage", "details"] as const) {
      const v = o[key]
      if (Predicate.isString(v)) texts.push(v)
    }
    if (Predicate.isString(o.name) && o.name === "AbortError") codes.push("ABORT_ERR")
    if (Predicate.isString(o.name) && o.name === "TimeoutError") codes.push("TIMEOUT_ERR")
    message ??= Predicate.isString(o.shortMessage) ? o.shortMessage : Predicate.isString(o.message) ? o.message : undefined
    current = o.cause
  }
  return {
    message: message ?? "unknown error",
    path,
    text: texts.join(" | ").toLowerCase(),
    codes,
    status
  }
}
