import { createServer, type IncomingMessage } from "node:http"
import type { AddressInfo } from "node:net"
import { testTask } from "../../src/testing/TestTaskSource.ts"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Layer, Option, Tracer } from "effect"
import { Tracing, tracingConfig } from "../../src/layers/telemetry/Tracing.ts"
import { MiningCoordinator } from "../../src/services/MiningCoordinator.ts"
import { harness } from "../support/harness.ts"

const withEnv = (env: Record<string, string>) => ConfigProvider.layer(ConfigProvider.fromEnvRecord(env))

const task = testTask(2)

interface Received {
  readonly url: string
  readonly headers: IncomingMessage["headers"]
  readonly body: string
}

/** A stand-in OTLP/HTTP collector on a free port that keeps every request. */
const collector = Effect.acquireRelease(
  Effect.promise(() =>
    new Promise<{ url: string; received: Array<Received>; close: () => Promise<void> }>((resolve) => {
      const received: Array<Received> = []
      const server = createServer((req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (c: Buffer) => chunks.push(c))
        req.on("end", () => {
          received.push({ url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") })
          res.writeHead(200, { "content-type": "application/json" }).end("{}")
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resolve({
          url: `http://127.0.0.1:${port}`,
          received,
          close: () => new Promise((done) => server.close(() => done()))
        })
      })
    })
  ),
  (c) => Effect.promise(c.close)
)

describe("Tracing", () => {
  it.effect("exports nothing (Layer.empty) without an OTLP endpoint", () =>
    Effect.gen(function*() {
      assert.isTrue(Option.isNone(yield* tracingConfig))
      const tracer = yield* Effect.tracer.pipe(Effect.provide(Tracing.layer()))
      assert.strictEqual(tracer, Tracer.nativeTracer)
    }).pipe(Effect.provide(withEnv({}))))

  it.effect("reads the standard OpenTelemetry variables", () =>
    Effect.gen(function*() {
      const read = (env: Record<string, string>) => tracingConfig.pipe(Effect.provide(withEnv(env)))
      const base = yield* read({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" })
      assert.deepStrictEqual(Option.getOrUndefined(base), {
        url: "http://collector:4318/v1/traces",
        protocol: "http/protobuf",
        compression: "none",
        headers: {},
        serviceName: "r3mes-miner"
      })
      const specific = yield* read({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://traces:4318/custom",
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_EXPORTER_OTLP_HEADERS: "x-api-key=abc%20def,x-team=miners",
        OTEL_SERVICE_NAME: "miner-7"
      })
      assert.strictEqual(Option.getOrUndefined(specific)?.url, "http://traces:4318/custom")
      assert.strictEqual(Option.getOrUndefined(specific)?.protocol, "http/json")
      assert.deepStrictEqual(Option.getOrUndefined(specific)?.headers, { "x-api-key": "abc def", "x-team": "miners" })
      assert.strictEqual(Option.getOrUndefined(specific)?.serviceName, "miner-7")
      const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" }
      assert.isTrue(Option.isNone(yield* read({ ...endpoint, OTEL_SDK_DISABLED: "true" })))
      assert.isTrue(Option.isNone(yield* read({ ...endpoint, OTEL_TRACES_EXPORTER: "none" })))
      assert.isTrue(Option.isSome(yield* read({ ...endpoint, OTEL_TRACES_EXPORTER: "console,otlp" })))

      const grpc = yield* Effect.exit(read({ ...endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }))
      assert.isTrue(Exit.isFailure(grpc))
      const notUrl = yield* Effect.exit(read({ OTEL_EXPORTER_OTLP_ENDPOINT: "collector" }))
      assert.isTrue(Exit.isFailure(notUrl))
    }))

  it.live("exports the coordinator's spans over OTLP with service name r3mes-miner", () =>
    Effect.gen(function*() {
      const otlp = yield* collector
      const record = yield* Effect.gen(function*() {
        return yield* (yield* MiningCoordinator).mine(task)
      }).pipe(
        Effect.provide(harness()),
        // Closing the layer flushes the spans still buffered.
        Effect.provide(Tracing.layer({ serviceVersion: "9.9.9" })),
        Effect.provide(withEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" }))
      )
      assert.strictEqual(record.state, "committed")
      assert.isAbove(otlp.received.length, 0)
      assert.isTrue(otlp.received.every((r) => r.url === "/v1/traces"))
      const payloads = otlp.received.map((r) => JSON.parse(r.body))
      const resource = payloads[0].resourceSpans[0].resource.attributes
      const attribute = (attrs: Array<any>, key: string) => attrs.find((a) => a.key === key)?.value
      assert.strictEqual(attribute(resource, "service.name")?.stringValue, "r3mes-miner")
      assert.strictEqual(attribute(resource, "service.version")?.stringValue, "9.9.9")
      const spans: Array<any> = payloads.flatMap((p) =>
        p.resourceSpans.flatMap((rs: any) => rs.scopeSpans.flatMap((ss: any) => ss.spans))
      )
      const names = spans.map((s) => s.name)
      for (const name of ["MiningCoordinator.mine", "MiningCoordinator.training", "MiningCoordinator.blockchain_submit"]) {
        assert.include(names, name)
      }
      const submit = spans.find((s) => s.name === "MiningCoordinator.blockchain_submit")
      assert.strictEqual(attribute(submit.attributes, "r3mes.transaction_id")?.stringValue, record.transaction_id)
      assert.strictEqual(attribute(submit.attributes, "r3mes.cid")?.stringValue, record.ipfs_hash)
      assert.strictEqual(attribute(submit.attributes, "r3mes.tx_hash")?.stringValue, record.blockchain_tx_hash)
    }).pipe(Effect.scoped))
})
