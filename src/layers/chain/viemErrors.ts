import { Schema } from "effect"
import { BaseError, ContractFunctionRevertedError, decodeErrorResult, type Hex, type HttpRequestError } from "viem"
import { classify } from "../../domain/classify.ts"
import {
  AuthenticationError,
  ChainRevertError,
  MiningError,
  NetworkError,
  RetryableError,
  TimeoutError,
  ValidationError
} from "../../domain/errors.ts"
import { redactUrl, redactUrlsIn } from "../../domain/redaction.ts"
import { miningRegistryAbi } from "./MiningRegistryArtifact.ts"

const stringify = (value: unknown): string => (typeof value === "bigint" ? value.toString() : String(value))

/** The revert of a MiningRegistry call, decoded from viem's error chain; undefined when the error is not a revert. */
export const decodeRevert = (error: unknown): ChainRevertError | undefined => {
  if (!(error instanceof BaseError)) return undefined
  const reverted = error.walk((e) => e instanceof ContractFunctionRevertedError)
  if (!(reverted instanceof ContractFunctionRevertedError)) return decodeRawRevert(error)
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
 * A revert met outside a contract call viem knows the ABI of — a gas estimate while preparing a transaction (the
 * chain moved since the simulation: another runner of the fleet took the last free chunk) — carries only the raw
 * error data: decoded with the registry's ABI, so "NoFreeChunk" reads as such rather than as an unknown failure.
 */
const decodeRawRevert = (error: BaseError): ChainRevertError | undefined => {
  let data: Hex | undefined
  error.walk((e) => {
    const candidate = (e as { readonly data?: unknown }).data
    if (typeof candidate === "string" && /^0x[0-9a-fA-F]{8,}$/.test(candidate)) data = candidate as Hex
    return data !== undefined
  })
  if (data === undefined) return undefined
  try {
    const decoded = decodeErrorResult({ abi: miningRegistryAbi, data })
    const args = (decoded.args ?? []).map(stringify)
    return new ChainRevertError({
      message: `MiningRegistry reverted with ${decoded.errorName}(${args.join(", ")})`,
      errorName: decoded.errorName,
      args,
      cause: `selector ${data.slice(0, 10)}`
    })
  } catch {
    return undefined
  }
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
export const fromViemError = (error: unknown, context: string, options: FromViemErrorOptions = {}): MiningError =>
  withoutUrls(translate(error, context, options))

export interface FromViemErrorOptions {
  /** The address the miner sends from, for hints that ask to fund it (viem names it only for some calls). */
  readonly account?: string | undefined
}

const addressPattern = /\b(?:from|sender):\s*(0x[0-9a-fA-F]{40})\b/

/** The sending account as viem's error names it (`from:` of a transaction or estimate, `sender:` of a call). */
export const accountOf = (error: unknown): string | undefined => {
  if (!(error instanceof BaseError)) return undefined
  let found: string | undefined
  error.walk((e) => {
    for (const line of (e as { metaMessages?: ReadonlyArray<string> }).metaMessages ?? []) {
      found ??= addressPattern.exec(line)?.[1]
    }
    return found !== undefined
  })
  return found
}

/** Longest excerpt of a web page a one-line error quotes. */
const pageExcerptLength = 80

/**
 * A web page's title, else its text, on one line and at most 80 characters; undefined when `body` is no HTML. A
 * proxy's error page or a web server at the RPC URL answers HTML, and quoting it whole buries the error.
 */
export const htmlPageExcerpt = (body: string): string | undefined => {
  if (!/^\s*(<!doctype html|<html|<head|<body|<title)/i.test(body)) return undefined
  const title = /<title[^>]*>([\s\S]*?)<\/title>/i.exec(body)?.[1]
  const text = (title !== undefined && title.trim() !== "" ? title : body.replace(/<(script|style)[\s\S]*?<\/\1>/gi, " "))
    .replace(/<[^>]*>/g, " ")
    .replace(/&nbsp;/g, " ")
    .replace(/&amp;/g, "&")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/\s+/g, " ")
    .trim()
  return text.length <= pageExcerptLength ? text : `${text.slice(0, pageExcerptLength - 1)}…`
}

const unquote = (text: string): string => {
  if (!text.startsWith("\"")) return text
  try {
    const parsed: unknown = JSON.parse(text)
    return typeof parsed === "string" ? parsed : text
  } catch {
    return text
  }
}

/** The HttpRequestError of viem's chain whose body is a web page, as a one-line NetworkError or ValidationError. */
const htmlAnswer = (error: BaseError, context: string): MiningError | undefined => {
  // By name: viem's http transport and this module may load different copies of viem's error classes.
  const found = error.walk((e) => e instanceof Error && e.name === "HttpRequestError")
  if (!(found instanceof Error)) return undefined
  const http = found as HttpRequestError
  // viem quotes a non-JSON error body as a JSON string; a 2xx body that is not JSON is only a SyntaxError (`'<'`).
  const body = unquote(http.details ?? "")
  const excerpt = htmlPageExcerpt(body) ??
    (http.status === undefined && /unexpected token '<'/i.test(String((http.cause as Error | undefined)?.message))
      ? "not JSON but markup"
      : undefined)
  if (excerpt === undefined) return undefined
  const status = http.status === undefined ? "" : `HTTP ${http.status} `
  const message = `${context}: ${redactUrl(http.url)} answered ${status}with an HTML page (${excerpt})`
  const hint = `--rpc-url (R3MES_RPC_URL) must be the chain's JSON-RPC endpoint, not a web page${
    http.status !== undefined && http.status >= 500 ? "; a 5xx page is often a proxy whose node behind it is down" : ""
  }`
  // A proxy's 5xx page may pass (the node behind it restarts); a 2xx-4xx page is the wrong URL and stays wrong.
  return http.status !== undefined && http.status >= 500
    ? new NetworkError({ message, service: "chain", hint })
    : new ValidationError({ message, hint, field: "R3MES_RPC_URL" })
}

const translate = (error: unknown, context: string, options: FromViemErrorOptions): MiningError => {
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
    if (names.has("InsufficientFundsError") || /insufficient funds/i.test(`${error.shortMessage} ${error.details}`)) {
      const account = options.account ?? accountOf(error)
      return new AuthenticationError({
        ...base,
        hint: account === undefined
          ? "fund the miner account (R3MES_PRIVATE_KEY's address) with the chain's native token for gas"
          : `fund the miner account ${account} (R3MES_PRIVATE_KEY's address) with the chain's native token for gas`
      })
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
    const page = htmlAnswer(error, context)
    if (page !== undefined) return page
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
