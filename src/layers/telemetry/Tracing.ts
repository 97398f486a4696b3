import { Config, Effect, Layer, Option, Schema, Tracer } from "effect"
import { FetchHttpClient } from "effect/http"
import { OtlpExporter, OtlpSerialization, OtlpTracer } from "effect/observability"
import { ValidationError } from "../../domain/errors.ts"

export const serviceName = "r3mes-miner"

export interface TracingOptions {
  /** Reported as `service.version`. */
  readonly serviceVersion?: string | undefined
  /** Extra resource attributes (e.g. `{ "r3mes.miner": address }`); never put a secret here. */
  readonly attributes?: Readonly<Record<string, unknown>> | undefined
}

/** Where and how spans are exported, from the standard OpenTelemetry environment variables. */
export interface TracingConfig {
  readonly url: string
  readonly protocol: "http/protobuf" | "http/json"
  readonly headers: Readonly<Record<string, string>>
  readonly compression: "gzip" | "none"
  readonly serviceName: string
}

const optionalString = (name: string) => Config.option(Config.String(name))
const headerList = (name: string) => Config.option(Config.Record(Schema.String, Schema.StringFromUriComponent, name))

/**
 * Reads the OTLP trace settings. None (no export) unless OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
 * OTEL_EXPORTER_OTLP_ENDPOINT is set (the latter gets `/v1/traces` appended, as the OpenTelemetry spec says), and
 * also none when OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER does not name `otlp`. gRPC is not supported.
 */
export const tracingConfig: Effect.Effect<Option.Option<TracingConfig>, ValidationError> = Effect.gen(function*() {
  const env = yield* Config.all({
    disabled: Config.Boolean("OTEL_SDK_DISABLED").pipe(Config.withDefault(false)),
    exporters: optionalString("OTEL_TRACES_EXPORTER"),
    tracesEndpoint: optionalString("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    endpoint: optionalString("OTEL_EXPORTER_OTLP_ENDPOINT"),
    tracesProtocol: optionalString("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
    protocol: optionalString("OTEL_EXPORTER_OTLP_PROTOCOL"),
    tracesHeaders: headerList("OTEL_EXPORTER_OTLP_TRACES_HEADERS"),
    headers: headerList("OTEL_EXPORTER_OTLP_HEADERS"),
    tracesCompression: optionalString("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"),
    compression: optionalString("OTEL_EXPORTER_OTLP_COMPRESSION"),
    serviceName: optionalString("OTEL_SERVICE_NAME")
  }).pipe(
    Effect.mapError((error) =>
      new ValidationError({
        message: "invalid OpenTelemetry settings",
        cause: String(error),
        hint: "check the OTEL_EXPORTER_OTLP_* environment variables (headers are key=value,key=value)"
      })
    )
  )
  const exporters = Option.map(env.exporters, (list) => list.split(",").map((e) => e.trim().toLowerCase()))
  if (env.disabled || (Option.isSome(exporters) && !exporters.value.includes("otlp"))) return Option.none()

  const endpoint = Option.orElse(
    env.tracesEndpoint,
    () => Option.map(env.endpoint, (base) => `${base.endsWith("/") ? base : `${base}/`}v1/traces`)
  )
  if (Option.isNone(endpoint) || endpoint.value.trim() === "") return Option.none()
  const url = endpoint.value.trim()
  if (!URL.canParse(url)) {
    return yield* new ValidationError({
      message: `OTLP endpoint ${url} is not a URL`,
      field: "OTEL_EXPORTER_OTLP_ENDPOINT",
      hint: "set it to the collector's OTLP/HTTP base URL, e.g. http://localhost:4318"
    })
  }

  const protocol = Option.getOrElse(Option.orElse(env.tracesProtocol, () => env.protocol), () => "http/protobuf")
  if (protocol !== "http/protobuf" && protocol !== "http/json") {
    return yield* new ValidationError({
      message: `OTLP protocol ${protocol} is not supported`,
      field: "OTEL_EXPORTER_OTLP_PROTOCOL",
      hint: "use http/protobuf (default) or http/json, with the collector's OTLP/HTTP port (usually 4318)"
    })
  }
  const compression = Option.getOrElse(Option.orElse(env.tracesCompression, () => env.compression), () => "none")
  if (compression !== "gzip" && compression !== "none") {
    return yield* new ValidationError({
      message: `OTLP compression ${compression} is not supported`,
      field: "OTEL_EXPORTER_OTLP_COMPRESSION",
      hint: "use gzip or none"
    })
  }
  return Option.some({
    url,
    protocol,
    compression,
    headers: Option.getOrElse(Option.orElse(env.tracesHeaders, () => env.headers), () => ({})),
    serviceName: Option.getOrElse(env.serviceName, () => serviceName)
  } satisfies TracingConfig)
})

/**
 * Exports every span of the program to `config.url` (batched every 5 s; the rest is flushed, within 3 s, when the
 * layer closes). Only the tracer is provided: the exporter's flusher stays private.
 */
export const otlpLayer = (config: TracingConfig, options: TracingOptions = {}): Layer.Layer<never> =>
  Layer.effect(
    Tracer.Tracer,
    OtlpTracer.make({
      url: config.url,
      headers: config.headers,
      compression: config.compression,
      resource: {
        serviceName: config.serviceName,
        serviceVersion: options.serviceVersion,
        attributes: { ...options.attributes }
      }
    })
  ).pipe(
    Layer.provide(OtlpExporter.layerFlusher),
    Layer.provide(config.protocol === "http/json" ? OtlpSerialization.layerJson : OtlpSerialization.layerProtobuf),
    Layer.provide(FetchHttpClient.layer)
  )

export const Tracing = {
  /**
   * OTLP trace export when OTEL_EXPORTER_OTLP_ENDPOINT (or …_TRACES_ENDPOINT) is set, `Layer.empty` otherwise.
   * Spans are those the program already makes (`Effect.fn` names, the coordinator's per-step spans with `r3mes.*`
   * attributes); provide this layer at the root so all of them go to the same tracer.
   */
  layer: (options: TracingOptions = {}): Layer.Layer<never, ValidationError> =>
    Layer.unwrap(
      Effect.map(tracingConfig, (config) => Option.match(config, {
        onNone: () => Layer.empty,
        onSome: (c) => otlpLayer(c, options)
      }))
    )
}
