import { Duration, Effect, type Scope } from "effect"
import { BaseError, custom, http, RpcRequestError, TimeoutError, type Transport, WebSocketRequestError } from "viem"
import { getWebSocketRpcClient } from "viem/utils"
import { ValidationError } from "../../domain/errors.ts"
import { redactUrl, redactUrlsIn } from "../../domain/redaction.ts"

/**
 * The viem transport of the chain's JSON-RPC URL: `http` for http(s)://, a WebSocket for ws(s)://. Neither retries
 * by itself (`retryCount: 0`): retries, back-off and the circuit breaker belong to the miner, which sees every
 * failure. Errors of the WebSocket transport name the URL only in its `redactUrl` form.
 */

export interface RpcTransportOptions {
  /** Time limit of one request, and of opening a WebSocket (default 10 s). */
  readonly timeout?: Duration.Input
  /**
   * Interval of the WebSocket's keep-alive ping (default 20 s): a third of the 60 s idle timeout of AWS load
   * balancers and nginx's proxy_read_timeout, in front of many RPC providers.
   */
  readonly keepAlive?: Duration.Input
}

export type RpcTransportKind = "http" | "webSocket"

const schemes = "an http://, https://, ws:// or wss:// URL"

/** The kind of transport an RPC URL takes, or a ValidationError naming R3MES_RPC_URL (the URL shown redacted). */
export const rpcTransportKind = (url: string): Effect.Effect<RpcTransportKind, ValidationError> => {
  const invalid = (message: string, hint: string) =>
    Effect.fail(new ValidationError({ message: `R3MES_RPC_URL ${redactUrl(url)} ${message}`, hint, field: "R3MES_RPC_URL" }))
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return invalid("is not an URL", `give ${schemes} of the chain's JSON-RPC endpoint`)
  }
  if (parsed.protocol === "http:" || parsed.protocol === "https:") return Effect.succeed("http")
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    return invalid(`has the unsupported scheme ${parsed.protocol}`, `give ${schemes} of the chain's JSON-RPC endpoint`)
  }
  // viem's http transport turns user:password@ into Basic auth; Node's WebSocket silently drops it (checked).
  if (parsed.username !== "" || parsed.password !== "") {
    return invalid(
      "carries user:password@, which the WebSocket client does not send",
      "put the key where the provider documents it (usually the path), or use its https:// URL, where user:password@ works"
    )
  }
  return Effect.succeed("webSocket")
}

/**
 * The transport for `url`, open for the enclosing scope (a WebSocket is closed when the scope closes; nothing else
 * would stop its keep-alive timer, which keeps the process alive).
 */
export const rpcTransport = Effect.fnUntraced(function*(
  url: string,
  options: RpcTransportOptions = {}
): Effect.fn.Return<Transport, ValidationError, Scope.Scope> {
  const timeout = Duration.toMillis(Duration.fromInputUnsafe(options.timeout ?? "10 seconds"))
  const kind = yield* rpcTransportKind(url)
  if (kind === "http") return http(url, { timeout, retryCount: 0 })
  const keepAlive = Duration.toMillis(Duration.fromInputUnsafe(options.keepAlive ?? "20 seconds"))
  const socket = reconnectingSocket(url, timeout, keepAlive)
  yield* Effect.addFinalizer(() => Effect.sync(() => socket.close()))
  return custom({ request: (args: { method: string; params?: unknown }) => socket.request(args) }, {
    key: "webSocket",
    name: "WebSocket JSON-RPC",
    retryCount: 0
  })
})

type Client = Awaited<ReturnType<typeof getWebSocketRpcClient>>
type Body = { readonly method: string; readonly params?: unknown }

const OPEN = 1
/** Requests in a row that an open socket left unanswered: a half-open connection (the peer gone without a FIN). */
const silentLimit = 2
let sockets = 0

/**
 * One WebSocket, opened on demand and replaced when it dies. viem's own reconnection does not fit a miner that runs
 * for days: checked with viem 2.57 against anvil killed and restarted, its client gave up after one failed attempt
 * (printing the ErrorEvent with console.error) and then failed every request for the rest of the process. Here the
 * socket is never reconnected in the background: a request that finds it closed opens a new one (one at a time),
 * so reconnection follows the miner's own retries and circuit breaker.
 *
 * The transport is `custom` rather than `webSocket` so that viem polls for receipts and blocks, as over HTTP,
 * instead of subscribing with eth_subscribe: a replaced socket then loses no subscription.
 */
const reconnectingSocket = (url: string, timeout: number, keepAliveInterval: number) => {
  const shownUrl = redactUrl(url)
  // viem caches one client per URL and options; an `owner` in the options makes this socket this transport's own,
  // so closing it never closes another transport's (viem reads only `interval` from keepAlive).
  const keepAlive = { interval: keepAliveInterval, owner: ++sockets }
  const clientOptions = { keepAlive, reconnect: false }
  let current: Client | undefined
  let connecting: Promise<Client> | undefined
  let silent = 0
  let closed = false

  const drop = (client: Client) => {
    if (client !== current) return
    current = undefined
    silent = 0
    client.close()
  }

  /** Any failure as a viem error that names the URL only redacted, keeping a timeout a TimeoutError. */
  const failure = (body: Body, cause: unknown): Error => {
    if (cause instanceof TimeoutError) return new TimeoutError({ body, url: shownUrl })
    // The innermost cause says most (SocketClosedError inside WebSocketRequestError); an ErrorEvent says nothing.
    const inner: unknown = cause instanceof BaseError ? cause.walk() : cause
    const details = inner instanceof BaseError
      ? redactUrlsIn(inner.details || inner.shortMessage)
      : inner instanceof Error
      ? redactUrlsIn(inner.message)
      : "the connection failed or was closed"
    return new WebSocketRequestError({ body, url: shownUrl, details })
  }

  const open = (): Promise<Client> => {
    let late = false
    let timer: ReturnType<typeof setTimeout> | undefined
    const pending = getWebSocketRpcClient(url, clientOptions)
    // A socket that opens after its deadline, or after close(), is nobody's: closed at once.
    pending.then((client) => (late || closed ? client.close() : undefined), () => {})
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        late = true
        reject(new TimeoutError({ body: { method: "(connect)" }, url: shownUrl }))
      }, timeout)
    })
    return Promise.race([pending, deadline]).then((client) => {
      if (closed) throw new WebSocketRequestError({ body: { method: "(connect)" }, url: shownUrl, details: "the transport is closed" })
      current = client
      return client
    }).finally(() => {
      clearTimeout(timer)
      connecting = undefined
    })
  }

  const connect = (): Promise<Client> => {
    if (current !== undefined && current.socket.readyState !== OPEN) drop(current)
    if (current !== undefined) return Promise.resolve(current)
    connecting ??= open()
    return connecting
  }

  const request = async (body: Body): Promise<unknown> => {
    if (closed) throw new WebSocketRequestError({ body, url: shownUrl, details: "the transport is closed" })
    const client = await connect().catch((cause: unknown) => {
      throw failure(body, cause)
    })
    let response: Awaited<ReturnType<Client["requestAsync"]>>
    try {
      response = await client.requestAsync({ body: { method: body.method, params: body.params }, timeout })
    } catch (cause) {
      if (client.socket.readyState !== OPEN || ++silent >= silentLimit) drop(client)
      throw failure(body, cause)
    }
    // Answered, even with an error: the connection works.
    if (client === current) silent = 0
    if (response.error) throw new RpcRequestError({ body, error: response.error, url: shownUrl })
    return response.result
  }

  const close = () => {
    closed = true
    if (current !== undefined) drop(current)
  }

  return { request, close }
}
