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
  | "unknown"

export const errorCategories: ReadonlyArray<ErrorCategory> = [
  "network",
  "retryable",
  "timeout",
  "authentication",
  "resource",
  "validation",
  "chain_revert",
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
