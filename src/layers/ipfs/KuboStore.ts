import { Duration, Effect, Layer } from "effect"
import type { KuboRPCClient } from "kubo-rpc-client"
import { classify } from "../../domain/classify.ts"
import { type MiningError, NetworkError, TimeoutError, ValidationError } from "../../domain/errors.ts"
import { GradientStore } from "../../services/GradientStore.ts"
import { oversize, parseCid, readLimited, showCid } from "./content.ts"
import { computeCid, kuboAddOptions } from "./importOptions.ts"

export interface KuboStoreOptions {
  /** The daemon's RPC API, e.g. http://127.0.0.1:5001 (credentials in the URL become a Basic auth header). */
  readonly url: string
  /** Deadline of every RPC call (default 60 s): a daemon that hangs fails the call with a TimeoutError. */
  readonly timeout?: Duration.Input
}

/** The URL without its credentials, and those credentials as a header: fetch refuses URLs that carry them. */
const endpoint = Effect.fnUntraced(function*(
  url: string
): Effect.fn.Return<{ readonly url: URL; readonly headers: Record<string, string> }, ValidationError> {
  const parsed = yield* Effect.try({
    try: () => new URL(url),
    catch: () => new ValidationError({ message: `${JSON.stringify(url)} is not a URL`, field: "ipfs" })
  })
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    return yield* new ValidationError({
      message: `the Kubo RPC API URL must be http(s), got ${parsed.protocol}`,
      field: "ipfs",
      hint: "e.g. --ipfs http://127.0.0.1:5001"
    })
  }
  const headers: Record<string, string> = {}
  if (parsed.username !== "" || parsed.password !== "") {
    const user = decodeURIComponent(parsed.username)
    const password = decodeURIComponent(parsed.password)
    headers.authorization = `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`
    parsed.username = ""
    parsed.password = ""
  }
  return { url: parsed, headers }
})

/** The URL as an operator may show it: no credentials. */
const redacted = (url: URL): string => `${url.protocol}//${url.host}${url.pathname === "/" ? "" : url.pathname}`

const innermostMessage = (error: unknown): string => {
  let message = error instanceof Error ? error.message : String(error)
  let current: unknown = error
  for (let depth = 0; depth < 8 && current instanceof Error && current.cause !== undefined; depth++) {
    current = current.cause
    if (current instanceof Error && current.message !== "") message = current.message
  }
  return message
}

/**
 * Kubo answers most failures with HTTP 500 and a message. Those that mean "your request is wrong" are not network
 * failures and must not be retried; everything else goes to `classify` (refused/reset/5xx → NetworkError,
 * 401/403 → AuthenticationError, other 4xx → ValidationError).
 */
const kuboError = (what: string, where: string) => (error: unknown): MiningError => {
  const context = `Kubo RPC ${where}: ${what}`
  const message = error instanceof Error ? error.message : String(error)
  if (/invalid (path|cid|ipfs ref|argument)|invalid request|failed to (parse|decode)|unsupported (cid|codec|version)|not a file|is a directory|this dag node is a directory/i.test(message)) {
    return new ValidationError({ message: `${context}: ${message}`, cause: message })
  }
  if (/merkledag: not found|block not found|not found locally/i.test(message)) {
    return new ValidationError({
      message: `${context}: the content is not available`,
      cause: message,
      field: "cid",
      hint: "the daemon does not hold this CID and cannot fetch it (offline?)"
    })
  }
  const classified = classify(error, context)
  return classified._tag === "NetworkError" && classified.service === undefined
    ? new NetworkError({
      // fetch says only "fetch failed"; the operator needs what is under it (ECONNREFUSED, other side closed…).
      message: `${context}: ${innermostMessage(error)}`,
      service: "ipfs",
      hint: classified.hint ?? `is the Kubo daemon at ${where} running?`,
      ...(classified.cause === undefined ? {} : { cause: classified.cause })
    })
    : classified
}

/** 256 KiB, a Kubo chunk. */
const UPLOAD_PIECE_BYTES = 262_144

/**
 * The bytes as views of 256 KiB. Handed the whole buffer as one chunk, Node's fetch copies it whole on its way to
 * the socket (a 100 MB gradient cost 3.0× its size at the peak); in pieces, each is copied and dropped in turn.
 */
function* inPieces(bytes: Uint8Array): Generator<Uint8Array> {
  for (let offset = 0; offset < bytes.length; offset += UPLOAD_PIECE_BYTES) {
    yield bytes.subarray(offset, offset + UPLOAD_PIECE_BYTES)
  }
}

export const make = Effect.fnUntraced(function*(options: KuboStoreOptions) {
  const { headers, url } = yield* endpoint(options.url)
  const timeout = Duration.fromInputUnsafe(options.timeout ?? "60 seconds")
  const where = redacted(url)
  // Loaded on first use (~0.3 s): commands that never talk to a daemon do not pay for it.
  const { create } = yield* Effect.promise(() => import("kubo-rpc-client"))
  const client: KuboRPCClient = create({ url, headers })

  /**
   * One RPC call under our own deadline: the client's `timeout` option does not abort the request (it never reaches
   * fetch), so the call gets our AbortSignal and the effect a timeout that interrupts, which aborts it.
   */
  const call = <A>(what: string, run: (signal: AbortSignal) => Promise<A>): Effect.Effect<A, MiningError> =>
    Effect.tryPromise({ try: run, catch: kuboError(what, where) }).pipe(
      Effect.timeoutOrElse({
        duration: timeout,
        orElse: () =>
          Effect.fail(
            new TimeoutError({
              message: `Kubo RPC ${where}: ${what} took more than ${Duration.format(timeout)}`,
              timeoutMs: Duration.toMillis(timeout),
              hint: "the daemon is overloaded, or cannot find the content"
            })
          )
      })
    )

  // Fail at start, with the URL in the message, rather than at the first upload.
  yield* call("version", (signal) => client.version({ signal })).pipe(
    Effect.mapError((error) =>
      error._tag === "NetworkError" || error._tag === "TimeoutError"
        ? new NetworkError({
          message: `no Kubo RPC API answers at ${where} (${error.message.replace(`Kubo RPC ${where}: version: `, "")})`,
          service: "ipfs",
          hint: "start the daemon (ipfs daemon) or fix --ipfs / R3MES_IPFS_API; `--ipfs embedded` needs no daemon",
          ...(error.cause === undefined ? {} : { cause: error.cause })
        })
        : error
    )
  )

  const add = Effect.fn("KuboStore.add")(function*(bytes: Uint8Array) {
    const result = yield* call("add", (signal) => client.add({ content: inPieces(bytes) }, { ...kuboAddOptions, pin: true, signal }))
    return showCid(result.cid)
  })

  const get = Effect.fn("KuboStore.get")(function*(cidText: string, maxBytes: number) {
    const cid = yield* parseCid(cidText)
    // Asking for one byte more than allowed tells "exactly at the limit" from "over it" without reading further.
    const read = yield* call(`cat ${cidText}`, (signal) => readLimited(client.cat(cid, { length: Math.floor(maxBytes) + 1, signal }), maxBytes))
    if ("over" in read) return yield* oversize(cidText, read.over, maxBytes, false)
    return read.bytes
  })

  const unpin = Effect.fn("KuboStore.unpin")(function*(cidText: string) {
    const cid = yield* parseCid(cidText)
    yield* call(`unpin ${cidText}`, async (signal) => {
      try {
        await client.pin.rm(cid, { recursive: true, signal })
      } catch (error) {
        // Kubo: "not pinned or pinned indirectly"; js-ipfs: "… is not pinned". Nothing to release: idempotent.
        if (error instanceof Error && /not pinned/i.test(error.message)) return
        throw error
      }
    })
  })

  const pins = call("pin ls", async (signal) => {
    const out: Array<string> = []
    for await (const pin of client.pin.ls({ type: "recursive", signal })) out.push(showCid(pin.cid))
    return out as ReadonlyArray<string>
  }).pipe(Effect.withSpan("KuboStore.pins"))

  const gc = call("repo gc", async (signal) => {
    let removed = 0
    for await (const entry of client.repo.gc({ signal })) {
      // The client reports success as `err: null` (not undefined).
      if (entry.err != null) throw entry.err
      removed++
    }
    return removed
  }).pipe(Effect.withSpan("KuboStore.gc"))

  return GradientStore.of({ add, computeCid, get, unpin, pins, gc })
})

export const KuboStore = {
  /**
   * The GradientStore port on a Kubo daemon's RPC API (or anything speaking it, like js-ipfs), with Kubo's default
   * import settings made explicit. Fails to build when no RPC API answers at `url`.
   */
  layer: (options: KuboStoreOptions): Layer.Layer<GradientStore, MiningError> => Layer.effect(GradientStore, make(options))
} as const
