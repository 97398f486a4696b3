import { createServer } from "node:http"
import { NodeHttpServer } from "@effect/platform-node"
import { type Context, Effect, Layer, type Scope } from "effect"
import { HttpMiddleware, HttpServer, type HttpServerRequest, type HttpServerResponse } from "effect/http"
import { ResourceError } from "../../domain/errors.ts"
import { isProbe } from "./answers.ts"
import type { MonitoringAddress } from "./MonitoringApiOptions.ts"

/**
 * Serves `app` on host:port (node:http) while the layer is in scope, and provides where it listens under `address`.
 * Probes (/health, /ready, /metrics) are untraced unless `traceProbes`. A port that cannot be bound is a
 * ResourceError with the hint to pick another.
 */
export const serveApi = <I>(
  address: Context.Key<I, MonitoringAddress>,
  options: { readonly host: string; readonly port: number; readonly traceProbes: boolean; readonly name: string },
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest | Scope.Scope>
): Layer.Layer<I, ResourceError> => {
  const { host, port } = options
  const probesUntraced = options.traceProbes ? Layer.empty : Layer.succeed(HttpMiddleware.TracerDisabledWhen, isProbe)
  const serve = HttpServer.serve(app).pipe(Layer.provide(probesUntraced))
  const bound = Layer.effect(
    address,
    Effect.gen(function*() {
      const server = yield* HttpServer.HttpServer
      const actual = server.address._tag === "UnixPathAddress" ? port : server.address.port
      const url = HttpServer.formatAddress(server.address)
      yield* Effect.logInfo(`${options.name} listening on ${url}`)
      return { host, port: actual, url }
    })
  )
  const server = Layer.effect(
    HttpServer.HttpServer,
    NodeHttpServer.make(createServer, { host, port }).pipe(
      Effect.mapError((error) =>
        new ResourceError({
          message: `the ${options.name} cannot listen on ${host}:${port}`,
          resource: "stats port",
          cause: error.cause instanceof Error ? error.cause.message : String(error.cause),
          hint: "set R3MES_STATS_PORT / --stats-port to a free port (0 = any free port) or stop the other process"
        })
      )
    )
  )
  return Layer.merge(serve, bound).pipe(Layer.provide(server))
}
