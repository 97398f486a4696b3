import { Schema } from "effect"
import { BaseError, ContractFunctionRevertedError } from "viem"
import { classify } from "../../domain/classify.ts"
import {
  AuthenticationError,
  ChainRevertError,
  MiningError,
  NetworkError,
  RetryableError,
  TimeoutError
} from "../../domain/errors.ts"
import { redactUrlsIn } from "../../domain/redaction.ts"

const stringify = (value: unknown): string => (typeof value === "bigint" ? value.toString() : String(value))

/** The revert of a MiningRegistry call, decoded from viem's error chain; undefined when the error is not a revert. */
export const decodeRevert = (error: unknown): ChainRevertError | undefined => {
  if (!(error instanceof BaseError)) return undefined
  const reverted = error.walk((e) => e instanceof ContractFunctionRevertedError)
  if (!(reverted instanceof ContractFunctionRevertedError)) return undefined
  const errorName = reverted.data?.errorName ?? (reverted.reason !== undefined ? "Error" : "UnknownRevert")
  const args = (reverted.data?.args ?? (reverted.reason !== undefined ? [reverted.reason] : [])).map(stringify)
  return new ChainRevertError({
    message: `MiningRegistry reverted with ${errorName}(${args.join(", ")})`,
    errorName,
    args,
    ...(reverted.signature !== undefined ? { cause: `selector ${reverted.signature}` } : {})
  })
}

/**
 * A socket event in a cause chain: Node's WebSocket reports a failed or lost connection as an `ErrorEvent`, which
 * is no Error and carries no message, and viem's raw `webSocket` transport wraps it in an `UnknownRpcError`.
 */
const isSocketEvent = (u: unknown): boolean =>
  (typeof Event !== "undefined" && u instanceof Event) ||
  (typeof u === "object" && u !== null && /^(Error|Close)Event$/.test(u.constructor?.name ?? ""))

/** The names of the errors along viem's cause chain; `SocketEvent` for a WebSocket's error or close event. */
const namesOf = (error: BaseError): ReadonlySet<string> => {
  const names = new Set<string>()
  error.walk((e) => {
    if (e instanceof Error) names.add(e.name)
    else if (isSocketEvent(e)) names.add("SocketEvent")
    return false
  })
  return names
}

/** A WebSocket that could not connect, closed or failed under a request: the network, never the request's fault. */
const isSocketFailure = (error: unknown): boolean => {
  if (isSocketEvent(error)) return true
  if (!(error instanceof BaseError)) return false
  const names = namesOf(error)
  return names.has("SocketClosedError") || names.has("WebSocketRequestError") || names.has("SocketEvent")
}

/**
 * Every URL in the error's texts in its `redactUrl` form: viem puts the RPC URL (path and query included, where
 * providers keep the API key) in messages, and callers put it in `context`. A revert's decoded arguments are data
 * and stay as they are.
 */
const withoutUrls = (error: MiningError): MiningError => {
  const texts = new Set(["message", "hint", "cause"])
  const fields = Object.entries(Schema.encodeSync(MiningError)(error)).map(([key, value]) =>
    [key, texts.has(key) && typeof value === "string" ? redactUrlsIn(value) : value]
  )
  return Schema.decodeUnknownSync(MiningError)(Object.fromEntries(fields))
}

/**
 * viem's errors → the miner's. viem names its errors precisely, so they are matched by name along the cause chain
 * before falling back to the generic classifier. The private key never appears: viem does not put it in messages;
 * URLs appear only without their secret parts.
 */
export const fromViemError = (error: unknown, context: string): MiningError => withoutUrls(translate(error, context))

const translate = (error: unknown, context: string): MiningError => {
  const revert = decodeRevert(error)
  if (revert !== undefined) return revert
  if (isSocketEvent(error)) {
    return new NetworkError({ message: `${context}: WebSocket connection failed`, service: "chain", hint: rpcHint })
  }
  if (error instanceof BaseError) {
    const names = namesOf(error)
    const message = `${context}: ${error.shortMessage}`
    const cause = error.details || undefined
    const base = cause === undefined ? { message } : { message, cause }
    if (names.has("InsufficientFundsError")) {
      return new AuthenticationError({ ...base, hint: "fund the miner account (R3MES_PRIVATE_KEY's address)" })
    }
    if (names.has("NonceTooLowError") || names.has("NonceTooHighError") || names.has("FeeCapTooLowError")) {
      return new RetryableError(base)
    }
    if (names.has("WaitForTransactionReceiptTimeoutError")) {
      return new TimeoutError({ ...base, hint: "the transaction may still be mined; its hash is journaled" })
    }
    if (names.has("TimeoutError")) return new TimeoutError({ ...base, hint: "the RPC node did not answer in time" })
    // Before the HTTP check: a WebSocket has no status to blame the request with, and its events carry no code.
    if (isSocketFailure(error)) return new NetworkError({ ...base, service: "chain", hint: rpcHint })
    if (names.has("HttpRequestError")) {
      const classified = classify(error, context)
      // A 4xx from the node is the request's fault, not the network's.
      if (classified._tag !== "ValidationError" && classified._tag !== "AuthenticationError") {
        return new NetworkError({ ...base, service: "chain", hint: rpcHint })
      }
      return classified
    }
  }
  return classify(error, context)
}

const rpcHint = "is the RPC node (R3MES_RPC_URL) running and reachable?"
