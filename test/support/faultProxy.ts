import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo, Socket } from "node:net"
import { keccak256 } from "viem"

/**
 * A hostile network between a JSON-RPC client and its node (issue 11, item 11): a plain node:http proxy in front of
 * an upstream URL (a real anvil) that, per request and driven by a seeded PRNG,
 *
 * - `reset`: destroys the client's socket before forwarding (the node never sees the request);
 * - `lost`: forwards it, waits for the upstream's complete response (the node acted), then destroys the client's
 *   socket without answering (the answer is lost);
 * - otherwise: waits uniformly 0..`maxDelayMs` and forwards faithfully.
 *
 * A JSON-RPC batch (an array) is one request: one decision for the whole batch, counted under each of its methods.
 * Every request draws the same two numbers from the PRNG whatever happens to it (paused, exempt, non-JSON), so the
 * n-th request's fate depends on the seed and n only: a run is reproducible as far as its request order is.
 */

export interface FaultRates {
  /** Probability of a reset before forwarding, 0..1. */
  readonly reset: number
  /** Probability of a lost answer after the node acted, 0..1. */
  readonly lost: number
  /** Delay of a faithfully forwarded request: uniform in 0..maxDelayMs. */
  readonly maxDelayMs: number
}

export interface FaultSettings extends FaultRates {
  /** No faults at all (requests are still forwarded, without delay). */
  readonly paused: boolean
  /** Methods never faulted (nor delayed); a batch holding one of them is exempt as a whole. */
  readonly exempt: ReadonlyArray<string>
}

export interface FaultProxyOptions extends Partial<FaultSettings> {
  /** Where requests go, e.g. anvil's http://127.0.0.1:PORT. */
  readonly upstream: string
  /** PRNG seed (uint32); absent = a random one. Printed at start unless `quiet`. */
  readonly seed?: number
  /** Keep the decisions of every request (for reproducibility checks); default true. */
  readonly trace?: boolean
  readonly quiet?: boolean
}

export type Fault = "reset" | "lost" | "ok" | "exempt" | "paused"

export interface MethodCounters {
  /** Requests carrying this method (a batch counts once per method in it). */
  requests: number
  reset: number
  lost: number
  /** Forwarded and answered (delayed, exempt or paused). */
  ok: number
  /** Upstream failures (connection refused, …): answered with 502. */
  upstreamErrors: number
}

export interface Decision {
  /** 0-based arrival index. */
  readonly index: number
  readonly methods: ReadonlyArray<string>
  readonly fault: Fault
  /** The delay drawn (applied only when `fault` is "ok"). */
  readonly delayMs: number
}

export interface ProxyStats {
  readonly seed: number
  readonly requests: number
  readonly byMethod: Readonly<Record<string, MethodCounters>>
  readonly totals: { readonly reset: number; readonly lost: number; readonly ok: number; readonly upstreamErrors: number }
  /**
   * Hashes (keccak256 of the raw bytes) of the eth_sendRawTransaction(/Sync) requests whose answer was lost after
   * the node received them, and of those reset before the node saw them.
   */
  readonly lostRawTransactions: ReadonlyArray<string>
  readonly resetRawTransactions: ReadonlyArray<string>
}

export interface FaultProxy {
  readonly url: string
  readonly seed: number
  readonly stats: () => ProxyStats
  /** The decision of every request so far, in arrival order (empty when `trace` is false). */
  readonly decisions: () => ReadonlyArray<Decision>
  readonly setFaults: (settings: Partial<FaultSettings>) => void
  readonly close: () => Promise<void>
}

/** mulberry32: a small, well-known 32-bit PRNG; uniform in [0, 1). */
export const mulberry32 = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export const randomSeed = (): number => Math.floor(Math.random() * 0xffffffff) >>> 0

/** A one-line rendering of per-method fault counters: "eth_call 3r/2l/40, eth_sendRawTransaction 1r/1l/9". */
export const formatFaults = (stats: ProxyStats): string =>
  Object.entries(stats.byMethod)
    .filter(([, c]) => c.reset + c.lost > 0)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([m, c]) => `${m} ${c.reset} reset/${c.lost} lost of ${c.requests}`)
    .join(", ") || "none"

const readBody = (req: IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.once("end", () => resolve(Buffer.concat(chunks)))
    req.once("error", reject)
  })

interface ParsedRequest {
  readonly methods: ReadonlyArray<string>
  readonly rawTransactions: ReadonlyArray<string>
}

const parse = (body: Buffer): ParsedRequest => {
  try {
    const json = JSON.parse(body.toString("utf8")) as unknown
    const calls = (Array.isArray(json) ? json : [json]) as Array<{ method?: unknown; params?: unknown }>
    const methods = calls.map((c) => (typeof c?.method === "string" ? c.method : "(no method)"))
    const rawTransactions = calls.flatMap((c) =>
      (c?.method === "eth_sendRawTransaction" || c?.method === "eth_sendRawTransactionSync") &&
        Array.isArray(c.params) && typeof c.params[0] === "string"
        ? [c.params[0]]
        : []
    )
    return { methods: Array.isArray(json) ? methods : methods.slice(0, 1), rawTransactions }
  } catch {
    return { methods: ["(not json)"], rawTransactions: [] }
  }
}

const hashOf = (raw: string): string => {
  try {
    return keccak256(raw as `0x${string}`)
  } catch {
    return `(unhashable ${raw.slice(0, 20)}…)`
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Starts the proxy on 127.0.0.1 (a free port). */
export const startFaultProxy = async (options: FaultProxyOptions): Promise<FaultProxy> => {
  const seed = (options.seed ?? randomSeed()) >>> 0
  const random = mulberry32(seed)
  let settings: FaultSettings = {
    reset: options.reset ?? 0.1,
    lost: options.lost ?? 0.1,
    maxDelayMs: options.maxDelayMs ?? 50,
    paused: options.paused ?? false,
    exempt: options.exempt ?? []
  }
  const keepTrace = options.trace ?? true
  const upstream = options.upstream
  const byMethod: Record<string, MethodCounters> = {}
  const decisions: Array<Decision> = []
  const lostRawTransactions: Array<string> = []
  const resetRawTransactions: Array<string> = []
  const totals = { reset: 0, lost: 0, ok: 0, upstreamErrors: 0 }
  let requests = 0
  const sockets = new Set<Socket>()

  const count = (methods: ReadonlyArray<string>, field: Exclude<keyof MethodCounters, "requests"> | "requests") => {
    for (const m of methods) {
      const c = (byMethod[m] ??= { requests: 0, reset: 0, lost: 0, ok: 0, upstreamErrors: 0 })
      c[field]++
    }
  }

  const forward = async (req: IncomingMessage, body: Buffer) => {
    const response = await fetch(upstream, {
      method: req.method ?? "POST",
      headers: { "content-type": req.headers["content-type"] ?? "application/json" },
      ...(req.method === "GET" || req.method === "HEAD" ? {} : { body })
    })
    return { status: response.status, type: response.headers.get("content-type"), body: Buffer.from(await response.arrayBuffer()) }
  }

  const kill = (res: ServerResponse) => {
    // No answer at all: the client sees its connection reset / "socket hang up".
    res.socket?.resetAndDestroy?.()
    res.socket?.destroy()
  }

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const body = await readBody(req)
    const index = requests++
    // Always two draws per request, whatever its fate: the sequence depends on the seed and the index only.
    const roll = random()
    const delayMs = Math.floor(random() * (settings.maxDelayMs + 1))
    const { methods, rawTransactions } = parse(body)
    const fault: Fault = settings.paused
      ? "paused"
      : methods.some((m) => settings.exempt.includes(m))
      ? "exempt"
      : roll < settings.reset
      ? "reset"
      : roll < settings.reset + settings.lost
      ? "lost"
      : "ok"
    if (keepTrace) decisions.push({ index, methods, fault, delayMs })
    count(methods, "requests")

    if (fault === "reset") {
      count(methods, "reset")
      totals.reset++
      for (const raw of rawTransactions) resetRawTransactions.push(hashOf(raw))
      kill(res)
      return
    }
    if (fault === "ok") await sleep(delayMs)
    let answer: Awaited<ReturnType<typeof forward>>
    try {
      answer = await forward(req, body)
    } catch (e) {
      count(methods, "upstreamErrors")
      totals.upstreamErrors++
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(502, { "content-type": "application/json" })
        res.end(JSON.stringify({ error: `fault proxy: upstream ${upstream} failed: ${String(e)}` }))
      }
      return
    }
    if (fault === "lost") {
      count(methods, "lost")
      totals.lost++
      for (const raw of rawTransactions) lostRawTransactions.push(hashOf(raw))
      kill(res)
      return
    }
    count(methods, "ok")
    totals.ok++
    if (res.destroyed) return
    res.writeHead(answer.status, answer.type === null ? {} : { "content-type": answer.type })
    res.end(answer.body)
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(500, { "content-type": "application/json" })
        res.end(JSON.stringify({ error: `fault proxy: ${String(e)}` }))
      }
    })
  })
  server.on("connection", (socket) => {
    sockets.add(socket)
    socket.once("close", () => sockets.delete(socket))
  })
  // A reset client may leave half-written requests behind: never let them crash the proxy.
  server.on("clientError", (_e, socket) => socket.destroy())
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => resolve())
  })
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  if (options.quiet !== true) {
    console.log(
      `fault proxy ${url} → ${upstream}: seed ${seed}, reset ${settings.reset}, lost ${settings.lost}, delay 0..${settings.maxDelayMs} ms`
    )
  }

  return {
    url,
    seed,
    stats: () => ({
      seed,
      requests,
      byMethod: structuredClone(byMethod),
      totals: { ...totals },
      lostRawTransactions: [...lostRawTransactions],
      resetRawTransactions: [...resetRawTransactions]
    }),
    decisions: () => [...decisions],
    setFaults: (next) => {
      settings = { ...settings, ...next }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      })
  }
}
