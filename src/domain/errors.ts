import { Schema } from "effect"

/**
 * The miner's typed error hierarchy. Every failure that crosses a port is one of these; `classify` turns anything
 * foreign into one, so the coordinator can decide retry / rollback from the tag alone.
 *
 * Retryable: NetworkError, RetryableError, TimeoutError.
 * Not retryable: AuthenticationError, ResourceError, ValidationError, ChainRevertError.
 */

const common = {
  message: Schema.String,
  /** What the operator can do about it, one line. */
  hint: Schema.optional(Schema.String),
  /** The foreign error's own message, when there was one. */
  cause: Schema.optional(Schema.String)
}

/** Connection refused or reset, DNS failure, HTTP 5xx, RPC timeout of the transport. */
export class NetworkError extends Schema.TaggedError<NetworkError>()("NetworkError", {
  ...common,
  service: Schema.optional(Schema.String)
}) {}

/** Other transient failures: nonce too low, replacement underpriced, IPFS busy. */
export class RetryableError extends Schema.TaggedError<RetryableError>()("RetryableError", common) {}

/** An operation or the whole transaction ran out of time. */
export class TimeoutError extends Schema.TaggedError<TimeoutError>()("TimeoutError", {
  ...common,
  timeoutMs: Schema.optional(Schema.Number)
}) {}

/** Bad key or signature, HTTP 401/403, insufficient funds. */
export class AuthenticationError extends Schema.TaggedError<AuthenticationError>()("AuthenticationError", common) {}

/** Over a size limit, ENOSPC, ENOMEM, too many active transactions, ONNX out of memory. */
export class ResourceError extends Schema.TaggedError<ResourceError>()("ResourceError", {
  ...common,
  resource: Schema.optional(Schema.String)
}) {}

/** Bad input or config, malformed content, hash mismatch. */
export class ValidationError extends Schema.TaggedError<ValidationError>()("ValidationError", {
  ...common,
  field: Schema.optional(Schema.String)
}) {}

/** A decoded custom error of the MiningRegistry contract (name + args). */
export class ChainRevertError extends Schema.TaggedError<ChainRevertError>()("ChainRevertError", {
  ...common,
  errorName: Schema.String,
  args: Schema.Array(Schema.String)
}) {}

export type MiningError =
  | NetworkError
  | RetryableError
  | TimeoutError
  | AuthenticationError
  | ResourceError
  | ValidationError
  | ChainRevertError

export const MiningError = Schema.Union([
  NetworkError,
  RetryableError,
  TimeoutError,
  AuthenticationError,
  ResourceError,
  ValidationError,
  ChainRevertError
])

const miningErrorTags: ReadonlySet<string> = new Set([
  "NetworkError",
  "RetryableError",
  "TimeoutError",
  "AuthenticationError",
  "ResourceError",
  "ValidationError",
  "ChainRevertError"
])

export const isMiningError = (u: unknown): u is MiningError =>
  typeof u === "object" && u !== null && "_tag" in u && miningErrorTags.has((u as { _tag: string })._tag)

export const isRetryable = (error: MiningError): boolean =>
  error._tag === "NetworkError" || error._tag === "RetryableError" || error._tag === "TimeoutError"

/** The category names used in statistics, logs and the journal (snake_case, like the replaced engine). */
export type ErrorCategory =
  | "network"
  | "retryable"
  | "timeout"
  | "authentication"
  | "resource"
  | "validation"
  | "chain_revert"
  /** Stopped from outside (shutdown, operator) before it could finish. */
  | "interrupted"
  /** Committed, then the chain lost it (reset, reorg). */
  | "chain_lost"
  /** A defect (a bug), not a failure of the outside world. */
  | "unknown"

export const errorCategories: ReadonlyArray<ErrorCategory> = [
  "network",
  "retryable",
  "timeout",
  "authentication",
  "resource",
  "validation",
  "chain_revert",
  "interrupted",
  "chain_lost",
  "unknown"
]

export const errorCategory = (error: MiningError): ErrorCategory => {
  switch (error._tag) {
    case "NetworkError":
      return "network"
    case "RetryableError":
      return "retryable"
    case "TimeoutError":
      return "timeout"
    case "AuthenticationError":
      return "authentication"
    case "ResourceError":
      return "resource"
    case "ValidationError":
      return "validation"
    case "ChainRevertError":
      return "chain_revert"
  }
}

/** Categories a retry may cure: a streak of failures in them does not stop the miner. */
const transientCategories: ReadonlySet<string> = new Set([
  "network",
  "retryable",
  "timeout",
  "interrupted",
  "chain_lost"
])

export const isTransientCategory = (category: string | null): boolean =>
  category === null || transientCategories.has(category)

/** A typed error of the class behind a recorded category (a record keeps the category, not the error). */
export const errorOfCategory = (
  category: string | null,
  fields: { readonly message: string; readonly hint?: string }
): MiningError => {
  switch (category) {
    case "network":
      return new NetworkError(fields)
    case "retryable":
    case "interrupted":
    case "chain_lost":
      return new RetryableError(fields)
    case "timeout":
      return new TimeoutError(fields)
    case "authentication":
      return new AuthenticationError(fields)
    case "resource":
      return new ResourceError(fields)
    case "chain_revert":
      return new ChainRevertError({ ...fields, errorName: "Unknown", args: [] })
    default:
      return new ValidationError(fields)
  }
}
