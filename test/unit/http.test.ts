import { testTask } from "../../src/testing/TestTaskSource.ts"
import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Exit, Layer, Logger, Metric, Option, Redacted } from "effect"
import { fleetSection } from "../../src/app/fleet.ts"
import { FleetRoster } from "../../src/services/FleetRoster.ts"
import { InMemoryJournal } from "../../src/testing/InMemoryJournal.ts"
import { TestFleetRoster } from "../../src/testing/TestFleetRoster.ts"
import { NetworkError } from "../../src/domain/errors.ts"
import type { MinerConfig } from "../../src/domain/MinerConfig.ts"
import { MonitoringApi, type MonitoringApiOptions, prometheusContentType } from "../../src/layers/http/MonitoringApi.ts"
import { Readiness } from "../../src/layers/http/Readiness.ts"
import { MiningCoordinator } from "../../src/services/MiningCoordinator.ts"
import { NodeHttpClient } from "@effect/platform-node"
import { HttpApiClient } from "effect/http-api"
import { TransactionNotFound } from "../../src/api/MonitoringApiErrors.ts"
import { MonitoringApiSpec } from "../../src/api/MonitoringApiSpec.ts"
import { harness, type HarnessOptions } from "../support/harness.ts"

const adminToken = "admin-token-7f3c9e1d"
const privateKeyHex = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
const privateKey = `0x${privateKeyHex}`

const task = (chunkId: number, roundId = 1n) => testTask(chunkId, { roundId })

const secretConfig: Partial<MinerConfig> = {
  adminToken: Option.some(Redacted.make(adminToken)),
  privateKey: Option.some(Redacted.make(privateKey))
}

/**
 * The coordinator on the in-memory ports, the monitoring API on a free port, a metric registry of its own (the
 * default one is global to the test process), and no log output.
 */
const api = (options: { harness?: HarnessOptions; api?: MonitoringApiOptions } = {}) =>
  MonitoringApi.layer(options.api).pipe(
    Layer.provideMerge(harness({ ...options.harness, config: { ...secretConfig, ...options.harness?.config } })),
    Layer.provideMerge(Layer.sync(Metric.MetricRegistry, () => new Map())),
    Layer.provideMerge(Logger.layer([]))
  )

interface Answer {
  readonly status: number
  readonly contentType: string
  readonly headers: Headers
  readonly text: string
  readonly json: any
}

/** Every body any test received, to check afterwards that no secret is in any of them. */
const bodies: Array<string> = []

const call = (path: string, init?: RequestInit) =>
  Effect.gen(function*() {
    const { url } = yield* MonitoringApi
    const response = yield* Effect.promise(() => fetch(`${url}${path}`, init))
    const text = yield* Effect.promise(() => response.text())
    bodies.push(text)
    const contentType = response.headers.get("content-type") ?? ""
    return {
      status: response.status,
      contentType,
      headers: response.headers,
      text,
      json: contentType.startsWith("application/json") ? JSON.parse(text) : undefined
    } satisfies Answer
  })

const bearer = (token: string): RequestInit => ({ method: "POST", headers: { authorization: `Bearer ${token}` } })

/** Mines two chunks; both commit. */
const mineSome = Effect.gen(function*() {
  const coordinator = yield* MiningCoordinator
  return [yield* coordinator.mine(task(1)), yield* coordinator.mine(task(2))]
})

interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

/** A small Prometheus text-format (0.0.4) parser: throws on any line that is not HELP, TYPE, a sample or blank. */
const parsePrometheus = (text: string) => {
  const help = new Map<string, string>()
  const types = new Map<string, string>()
  const samples: Array<Sample> = []
  const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/
  const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/y
  for (const line of text.split("\n")) {
    if (line === "") continue
    let m: RegExpExecArray | null
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line)) !== null) {
      help.set(m[1]!, m[2]!)
    } else if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line)) !== null) {
      types.set(m[1]!, m[2]!)
    } else if ((m = sample.exec(line)) !== null) {
      const labels: Record<string, string> = {}
      const body = m[2] ?? ""
      label.lastIndex = 0
      while (label.lastIndex < body.length) {
        const l = label.exec(body)
        if (l === null) throw new Error(`bad labels in: ${line}`)
        labels[l[1]!] = l[2]!
      }
      const value = m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : Number(m[3])
      if (Number.isNaN(value) && m[3] !== "NaN") throw new Error(`bad value in: ${line}`)
      const family = m[1]!.replace(/_(bucket|sum|count)$/, "")
      if (!types.has(m[1]!) && !types.has(family)) throw new Error(`sample before its TYPE: ${line}`)
      samples.push({ name: m[1]!, labels, value })
    } else {
      throw new Error(`not Prometheus text: ${line}`)
    }
  }
  return { help, types, samples }
}

describe("MonitoringApi", () => {
  it.live("every route answers 200 with the documented shape", () =>
    Effect.gen(function*() {
      const [first, second] = yield* mineSome
      const health = yield* call("/health")
      assert.strictEqual(health.status, 200)
      assert.strictEqual(health.json.status, "ok")
      assert.isNumber(health.json.uptime_seconds)

      const ready = yield* call("/ready")
      assert.strictEqual(ready.status, 200)
      assert.strictEqual(ready.json.status, "ready")
      assert.deepStrictEqual(ready.json.circuit_breakers, { chain: "closed", ipfs: "closed" })

      const stats = yield* call("/stats")
      assert.strictEqual(stats.status, 200)
      assert.strictEqual(stats.json.atomic_coordinator.committed, 2)
      assert.strictEqual(stats.json.atomic_coordinator.total_transactions, 2)
      assert.deepStrictEqual(stats.json.atomic_coordinator.circuit_breakers, { chain: "closed", ipfs: "closed" })
      assert.isString(stats.json.miner.version)
      assert.deepStrictEqual(stats.json.miner.chain, { chain_id: 31337 })

      const one = yield* call(`/transaction/${first!.transaction_id}`)
      assert.strictEqual(one.status, 200)
      assert.strictEqual(one.json.transaction_id, first!.transaction_id)
      assert.strictEqual(one.json.state, "committed")
      assert.strictEqual(one.json.blockchain_tx_hash, first!.blockchain_tx_hash)
      const withEvents = yield* call(`/transaction/${first!.transaction_id}?events=true`)
      assert.strictEqual(withEvents.json.events.at(-1).state, "committed")

      const all = yield* call("/transactions")
      assert.strictEqual(all.status, 200)
      assert.strictEqual(all.json.count, 2)
      assert.deepStrictEqual(
        all.json.transactions.map((r: any) => r.transaction_id).sort(),
        [first!.transaction_id, second!.transaction_id].sort()
      )
      const limited = yield* call("/transactions?state=committed&limit=1")
      assert.strictEqual(limited.status, 200)
      assert.strictEqual(limited.json.count, 1)
      assert.strictEqual(limited.json.state, "committed")
      assert.strictEqual((yield* call("/transactions?state=rolled_back")).json.count, 0)

      const errors = yield* call("/error-breakdown")
      assert.strictEqual(errors.status, 200)
      assert.strictEqual(errors.json.total_errors, 0)
      assert.deepStrictEqual(errors.json.recent_errors, [])

      const cleanup = yield* call("/cleanup-stale", bearer(adminToken))
      assert.strictEqual(cleanup.status, 200)
      assert.deepStrictEqual(cleanup.json.cleaned, [])
      assert.strictEqual(cleanup.json.max_age_seconds, 30) // the transaction timeout of the test config

      const metrics = yield* call("/metrics")
      assert.strictEqual(metrics.status, 200)
      assert.strictEqual(metrics.contentType, prometheusContentType)
    }).pipe(Effect.provide(api({ api: { miner: { chain: { chain_id: 31337 } } } }))))

  it.live("the client derived from the description decodes every answer the server gives", () =>
    Effect.gen(function*() {
      const [first] = yield* mineSome
      const { url } = yield* MonitoringApi
      const client = yield* HttpApiClient.make(MonitoringApiSpec, { baseUrl: url })
      assert.strictEqual((yield* client.health()).status, "ok")
      assert.strictEqual((yield* client.ready()).status, "ready")
      assert.strictEqual((yield* client.stats()).atomic_coordinator["committed"], 2)
      assert.strictEqual((yield* client.transactions({ query: { state: "committed", limit: 5 } })).count, 2)
      const record = yield* client.transaction({ params: { id: first!.transaction_id }, query: { events: "true" } })
      assert.strictEqual(record.events?.at(-1)?.state, "committed")
      assert.strictEqual((yield* client.errorBreakdown()).total_errors, 0)
      assert.include(yield* client.metrics(), "r3mes_transactions_total")
      const missing = yield* Effect.flip(client.transaction({ params: { id: "tx-9-9-nope" }, query: {} }))
      assert.instanceOf(missing, TransactionNotFound)
    }).pipe(Effect.provide(NodeHttpClient.layerNodeHttp), Effect.provide(api())))

  it.live("components (the embedded devnet): /ready while it restarts, /health 503 once it is down for good", () => {
    let devnet = { state: "running", restarts: 0, alive: true, ready: true }
    return Effect.gen(function*() {
      const up = yield* call("/health")
      assert.strictEqual(up.status, 200)
      assert.strictEqual(up.json.components.devnet.state, "running")
      devnet = { state: "restarting", restarts: 0, alive: true, ready: false }
      assert.strictEqual((yield* call("/health")).status, 200)
      const restarting = yield* call("/ready")
      assert.strictEqual(restarting.status, 503)
      assert.include(restarting.json.reasons, "the devnet is restarting")
      devnet = { state: "down", restarts: 3, alive: false, ready: false }
      const down = yield* call("/health")
      assert.strictEqual(down.status, 503)
      assert.strictEqual(down.json.status, "down")
      assert.strictEqual(down.json.components.devnet.restarts, 3)
    }).pipe(Effect.provide(api({ api: { components: Effect.sync(() => ({ devnet })) } })))
  })

  it.live("/metrics is Prometheus text with the miner's series", () =>
    Effect.gen(function*() {
      yield* mineSome
      const metrics = yield* call("/metrics")
      const parsed = parsePrometheus(metrics.text)
      assert.strictEqual(parsed.types.get("r3mes_transactions_total"), "counter")
      assert.isString(parsed.help.get("r3mes_transactions_total"))
      const committed = parsed.samples.find((s) =>
        s.name === "r3mes_transactions_total" && s.labels["state"] === "committed"
      )
      assert.strictEqual(committed?.value, 2)
      assert.strictEqual(parsed.types.get("r3mes_step_duration_seconds"), "histogram")
      const trainingCount = parsed.samples.find((s) =>
        s.name === "r3mes_step_duration_seconds_count" && s.labels["step"] === "training"
      )
      assert.strictEqual(trainingCount?.value, 2)
      assert.isTrue(parsed.samples.some((s) => s.name === "r3mes_step_duration_seconds_bucket" && s.labels["le"] === "+Inf"))
      assert.strictEqual(parsed.samples.find((s) => s.name === "r3mes_active_transactions")?.value, 0)
      assert.isTrue(parsed.samples.some((s) => s.name === "r3mes_pow_hashes_total" && s.value > 0))
      const breakers = parsed.samples.filter((s) => s.name === "r3mes_circuit_breaker_state")
      assert.deepStrictEqual(breakers.map((s) => [s.labels["service"], s.value]).sort(), [["chain", 0], ["ipfs", 0]])
      // Two committed transactions keep two pins.
      assert.strictEqual(parsed.samples.find((s) => s.name === "r3mes_pins")?.value, 2)
    }).pipe(Effect.provide(api())))

  it.live("a verifier in the process: /stats has its section, /metrics its series, /transaction/:id its verdict", () => {
    const registry: Metric.MetricRegistry = new Map()
    const verifications = Metric.counter("r3mes_verifications_total", { incremental: true })
    return Effect.gen(function*() {
      const [first] = yield* mineSome
      yield* Metric.update(Metric.withAttributes(verifications, { verdict: "accepted_exact" }), 1).pipe(
        Effect.provideService(Metric.MetricRegistry, registry)
      )
      const stats = yield* call("/stats")
      assert.deepStrictEqual(stats.json.verifier, { accepted: 1, pending: 0 })
      const metrics = parsePrometheus((yield* call("/metrics")).text)
      assert.strictEqual(
        metrics.samples.find((s) => s.name === "r3mes_verifications_total" && s.labels["verdict"] === "accepted_exact")?.value,
        1
      )
      // The miner's own series are still there, once.
      assert.strictEqual(metrics.samples.filter((s) => s.name === "r3mes_active_transactions").length, 1)
      const one = yield* call(`/transaction/${first!.transaction_id}`)
      assert.strictEqual(one.json.verdict, `accepted_exact for chunk ${first!.chunk_id}`)
    }).pipe(Effect.provide(api({
      api: {
        verifier: {
          snapshot: Effect.succeed({ accepted: 1, pending: 0 }),
          metricRegistry: registry,
          verdictOf: (_roundId, chunkId) => Effect.succeed(`accepted_exact for chunk ${chunkId}`)
        }
      }
    })))
  })

  it.live("unknown transaction, unknown route and wrong method answer JSON errors", () =>
    Effect.gen(function*() {
      const unknown = yield* call("/transaction/tx-9-9-deadbeef")
      assert.strictEqual(unknown.status, 404)
      assert.strictEqual(unknown.contentType, "application/json")
      assert.deepStrictEqual(
        { error: unknown.json.error, transaction_id: unknown.json.transaction_id },
        { error: "not_found", transaction_id: "tx-9-9-deadbeef" }
      )

      const nowhere = yield* call("/nowhere")
      assert.strictEqual(nowhere.status, 404)
      assert.strictEqual(nowhere.json.error, "not_found")
      assert.include(nowhere.json.routes, "GET /health")

      const wrongMethod = yield* call("/health", { method: "POST" })
      assert.strictEqual(wrongMethod.status, 405)
      assert.strictEqual(wrongMethod.json.error, "method_not_allowed")
      assert.strictEqual(wrongMethod.headers.get("allow"), "GET")
      assert.strictEqual((yield* call("/cleanup-stale")).status, 405)
    }).pipe(Effect.provide(api())))

  it.live("bad query parameters answer 400 JSON", () =>
    Effect.gen(function*() {
      // Empty parameters, as DESIGN.md writes the route, mean "not given".
      const empty = yield* call("/transactions?state=&limit=")
      assert.strictEqual(empty.status, 200)
      assert.strictEqual(empty.json.state, null)
      assert.strictEqual(empty.json.limit, 50)
      const bogus = yield* call("/transactions?state=bogus")
      assert.strictEqual(bogus.status, 400)
      assert.strictEqual(bogus.json.error, "invalid_state")
      assert.include(bogus.json.message, "committed")
      for (const limit of ["0", "-1", "abc", "1.5", "1001"]) {
        const bad = yield* call(`/transactions?limit=${limit}`)
        assert.strictEqual(bad.status, 400, limit)
        assert.strictEqual(bad.json.error, "invalid_limit")
      }
      assert.strictEqual((yield* call("/transactions?state=failed&state=committed")).status, 400)
      const negative = yield* call("/cleanup-stale?max_age_seconds=-5", bearer(adminToken))
      assert.strictEqual(negative.status, 400)
      assert.strictEqual(negative.json.error, "invalid_max_age")
      const notJson = yield* call("/cleanup-stale", { ...bearer(adminToken), body: "{oops" })
      assert.strictEqual(notJson.status, 400)
    }).pipe(Effect.provide(api())))

  it.live("a malformed query or body answers 400 with the schema's message, as { error, message }", () =>
    Effect.gen(function*() {
      const limit = yield* call("/transactions?limit=0")
      assert.deepStrictEqual(limit.json, {
        error: "invalid_limit",
        message: "query parameter limit: expected an integer from 1 to 1000"
      })
      const state = yield* call("/transactions?state=bogus")
      assert.match(state.json.message, /^query parameter state: Expected "pending" \| "training"/)
      const events = yield* call("/transaction/tx-1-1-00000000?events=maybe")
      assert.strictEqual(events.status, 400)
      assert.strictEqual(events.json.error, "invalid_parameter")
      const negative = yield* call("/cleanup-stale", {
        method: "POST",
        headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
        body: JSON.stringify({ max_age_seconds: -3 })
      })
      assert.deepStrictEqual(negative.json, {
        error: "invalid_max_age",
        message: "body max_age_seconds: expected a number of seconds, 0 or more"
      })
      const notObject = yield* call("/cleanup-stale", { ...bearer(adminToken), body: "[1]" })
      assert.strictEqual(notObject.status, 400)
      assert.strictEqual(notObject.json.error, "invalid_body")
      // Text from a form or written by hand is read as the number it spells; an empty value is the default.
      const text = yield* call("/cleanup-stale", { ...bearer(adminToken), body: JSON.stringify({ max_age_seconds: "7" }) })
      assert.strictEqual(text.json.max_age_seconds, 7)
      const empty = yield* call("/cleanup-stale", {
        method: "POST",
        headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/x-www-form-urlencoded" },
        body: "max_age_seconds="
      })
      assert.strictEqual(empty.json.max_age_seconds, 30)
    }).pipe(Effect.provide(api())))

  it.live("a body over 64 KiB answers 413 JSON", () =>
    Effect.gen(function*() {
      const big = yield* call("/cleanup-stale", { ...bearer(adminToken), body: `max_age_seconds=1&pad=${"x".repeat(70_000)}` })
      assert.strictEqual(big.status, 413)
      assert.strictEqual(big.json.error, "body_too_large")
    }).pipe(Effect.provide(api())))

  it.live("POST /cleanup-stale needs the bearer token and cleans the stale transactions", () =>
    Effect.gen(function*() {
      const coordinator = yield* MiningCoordinator
      const stale = [yield* coordinator.createTransaction(task(5)), yield* coordinator.createTransaction(task(6))]

      const missing = yield* call("/cleanup-stale", { method: "POST" })
      assert.strictEqual(missing.status, 401)
      assert.strictEqual(missing.json.error, "unauthorized")
      assert.match(missing.headers.get("www-authenticate") ?? "", /^Bearer/)
      assert.strictEqual((yield* call("/cleanup-stale", bearer("wrong"))).status, 401)
      assert.strictEqual((yield* call("/cleanup-stale", bearer(`${adminToken}x`))).status, 401)
      assert.strictEqual((yield* call("/cleanup-stale", bearer(adminToken.toUpperCase()))).status, 401)
      assert.strictEqual(
        (yield* call("/cleanup-stale", { method: "POST", headers: { authorization: `Basic ${adminToken}` } })).status,
        401
      )
      assert.strictEqual(yield* coordinator.activeCount, 2)

      // Younger than an hour: nothing is stale yet (max age in a JSON body).
      const young = yield* call("/cleanup-stale", {
        ...bearer(adminToken),
        headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
        body: JSON.stringify({ max_age_seconds: 3600 })
      })
      assert.strictEqual(young.status, 200)
      assert.deepStrictEqual(young.json.cleaned, [])
      // Defect 9: `curl -d '{…}'` labels JSON as a form; it is read as JSON, never silently taken for the default.
      const curlStyle = yield* call("/cleanup-stale", {
        method: "POST",
        headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/x-www-form-urlencoded" },
        body: JSON.stringify({ max_age_seconds: 3600 })
      })
      assert.strictEqual(curlStyle.status, 200)
      assert.strictEqual(curlStyle.json.max_age_seconds, 3600)
      const unlabelled = yield* call("/cleanup-stale", { ...bearer(adminToken), body: JSON.stringify({ max_age_seconds: 3600 }) })
      assert.strictEqual(unlabelled.json.max_age_seconds, 3600)
      const noField = yield* call("/cleanup-stale", {
        method: "POST",
        headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/x-www-form-urlencoded" },
        body: "maxage=5"
      })
      assert.strictEqual(noField.status, 400)
      assert.strictEqual(noField.json.error, "invalid_body")

      yield* Effect.sleep(Duration.millis(20))
      const cleaned = yield* call("/cleanup-stale?max_age_seconds=0.001", bearer(adminToken))
      assert.strictEqual(cleaned.status, 200)
      assert.deepStrictEqual([...cleaned.json.cleaned].sort(), stale.map((r) => r.transaction_id).sort())
      assert.strictEqual(cleaned.json.count, 2)
      assert.deepStrictEqual(cleaned.json.awaiting_chain, [])
      assert.strictEqual(yield* coordinator.activeCount, 0)
      const after = yield* call(`/transaction/${stale[0]!.transaction_id}`)
      assert.strictEqual(after.json.state, "failed")
      assert.include(after.json.error_message, "stale")
    }).pipe(Effect.provide(api())))

  it.live("admin routes answer 401 'disabled' when no admin token is configured", () =>
    Effect.gen(function*() {
      const refused = yield* call("/cleanup-stale", bearer("anything"))
      assert.strictEqual(refused.status, 401)
      assert.strictEqual(refused.json.error, "admin_disabled")
      assert.include(refused.json.message, "admin routes are disabled")
    }).pipe(Effect.provide(api({ harness: { config: { adminToken: Option.none() } } }))))

  it.live("/ready is 503 until the miner is ready, and while a circuit breaker is open", () =>
    Effect.gen(function*() {
      const readiness = yield* Readiness
      const starting = yield* call("/ready")
      assert.strictEqual(starting.status, 503)
      assert.strictEqual(starting.json.status, "not_ready")
      assert.deepStrictEqual(starting.json.reasons, ["starting: crash recovery has not finished"])
      yield* readiness.markReady
      assert.strictEqual((yield* call("/ready")).status, 200)

      // One retryable IPFS failure opens the breaker (threshold 1): the transaction rolls back, /ready says why.
      const record = yield* (yield* MiningCoordinator).mine(task(1))
      assert.strictEqual(record.state, "rolled_back")
      const open = yield* call("/ready")
      assert.strictEqual(open.status, 503)
      assert.deepStrictEqual(open.json.reasons, ["the ipfs circuit breaker is open"])
      assert.strictEqual(open.json.circuit_breakers.ipfs, "open")
      const errors = yield* call("/error-breakdown")
      assert.strictEqual(errors.json.error_breakdown.network, 1)
      assert.strictEqual(errors.json.recent_errors[0].transaction_id, record.transaction_id)
      const metrics = parsePrometheus((yield* call("/metrics")).text)
      assert.strictEqual(
        metrics.samples.find((s) => s.name === "r3mes_circuit_breaker_state" && s.labels["service"] === "ipfs")?.value,
        2
      )

      yield* readiness.markNotReady("shutting down")
      assert.include((yield* call("/ready")).json.reasons, "shutting down")
    }).pipe(
      Effect.provide(Layer.unwrap(Effect.gen(function*() {
        const readiness = yield* Readiness
        return api({
          api: { readiness: readiness.status },
          harness: {
            config: { circuitBreakerThreshold: 1, circuitBreakerReset: Duration.minutes(1), maxRetries: 0 },
            store: { faults: { add: { alwaysFail: new NetworkError({ message: "connect ECONNREFUSED" }) } } }
          }
        })
      })).pipe(Layer.provideMerge(Readiness.layer)))
    ))

  it.live("no secret appears in any response, even one passed in by mistake", () =>
    Effect.gen(function*() {
      const [first] = yield* mineSome
      const stats = yield* call("/stats")
      assert.strictEqual(stats.json.miner.rpc_url, "https://rpc.example/v3/<redacted>")
      assert.strictEqual(stats.json.miner.signer, "<redacted>")
      // Every route once (this test alone, with -t, still covers them), then every body any test received.
      for (const path of ["/health", "/ready", "/transactions", "/error-breakdown", "/metrics", "/nowhere"]) {
        yield* call(path)
      }
      yield* call(`/transaction/${first!.transaction_id}?events=true`)
      yield* call("/cleanup-stale", bearer(adminToken))
      yield* call("/cleanup-stale", bearer(`${adminToken}-wrong`))
      for (const body of bodies) {
        assert.notInclude(body, adminToken)
        assert.notInclude(body.toLowerCase(), privateKeyHex)
      }
    }).pipe(Effect.provide(api({
      api: { miner: { rpc_url: `https://rpc.example/v3/${adminToken}`, signer: privateKey.toUpperCase() } }
    }))))

  it.live("GET / is the dashboard (HTML) and its assets answer with their content types; an unknown asset is a 404", () =>
    Effect.gen(function*() {
      const page = yield* call("/")
      assert.strictEqual(page.status, 200)
      assert.strictEqual(page.contentType, "text/html; charset=utf-8")
      assert.match(page.text, /<title>r3mes-miner · dashboard<\/title>/)
      assert.include(page.headers.get("content-security-policy") ?? "", "default-src 'self'")
      // Everything the page loads comes from this API: no CDN.
      const loaded = [...page.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!).filter((u) => !u.startsWith("data:"))
      assert.isNotEmpty(loaded)
      for (const url of loaded) assert.match(url, /^\/assets\/[a-z.]+$/, url)

      const types: Record<string, string> = { js: "text/javascript; charset=utf-8", css: "text/css; charset=utf-8" }
      for (const url of loaded) {
        const asset = yield* call(url)
        assert.strictEqual(asset.status, 200, url)
        assert.strictEqual(asset.contentType, types[url.split(".").pop()!], url)
        assert.isAbove(asset.text.length, 100, url)
      }
      assert.include((yield* call("/assets/uplot.min.js")).text, "uPlot")

      const missing = yield* call("/assets/nothing.js")
      assert.strictEqual(missing.status, 404)
      assert.strictEqual(missing.json.error, "not_found")
      assert.include(missing.json.routes, "GET /assets/dashboard.js")
      assert.strictEqual((yield* call("/", { method: "POST" })).status, 405)
      // The page polls these: they answer on the test layers with no network, no verifier and no transaction.
      assert.strictEqual((yield* call("/transactions?limit=50")).json.count, 0)
      assert.notProperty((yield* call("/stats")).json, "network")
    }).pipe(Effect.provide(api())))

  it.live("a fleet runner's /stats has the fleet's section, from the roster", () =>
    Effect.gen(function*() {
      const stats = (yield* call("/stats")).json
      assert.deepStrictEqual(stats.fleet, {
        runner: "runner-a",
        runners: [{ runner: "runner-a", running: true, transactions: {} }],
        totals: {}
      })
    }).pipe(Effect.provide(Layer.unwrap(Effect.gen(function*() {
      const roster = yield* Layer.build(
        TestFleetRoster.layer({ self: "runner-a" }).pipe(Layer.provideMerge(InMemoryJournal.layer({ owner: "runner-a" })))
      )
      return api({ api: { fleet: fleetSection(Context.get(roster, FleetRoster)) } })
    })))))

  it.live("a port in use fails the layer with a ResourceError and a hint", () =>
    Effect.gen(function*() {
      const { port } = yield* MonitoringApi
      const exit = yield* Layer.build(MonitoringApi.layer({ port })).pipe(
        Effect.provide(harness()),
        Effect.scoped,
        Effect.exit
      )
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
      assert.strictEqual(error?._tag, "Fail")
      if (error?._tag === "Fail") {
        assert.strictEqual(error.error._tag, "ResourceError")
        assert.include(error.error.hint, "R3MES_STATS_PORT")
      }
    }).pipe(Effect.provide(api())))
})
