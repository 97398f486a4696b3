import { Cause, Effect, Schema, SchemaIssue } from "effect"
import { HttpBody, HttpServerError, HttpServerRequest, HttpServerResponse } from "effect/http"
import { HttpApiError } from "effect/http-api"
import {
  BadRequest,
  InternalError,
  MethodNotAllowed,
  RouteNotFound
} from "../../api/MonitoringApiErrors.ts"
import type { ApiRoute } from "../../api/apiRoutes.ts"
import { monitoringRoutes } from "../../api/MonitoringApiSpec.ts"

/**
 * How the monitoring API answers what no handler answers (unknown route, wrong method, a request its schemas refuse,
 * a failure nobody expected), and the last step of every answer: secrets redacted from the body.
 */

const formatIssue = SchemaIssue.makeFormatterStandardSchemaV1()

/** The parameters whose refusal has had a code of its own since before the API was described with schemas. */
const codeOf: Readonly<Record<string, string>> = {
  state: "invalid_state",
  limit: "invalid_limit",
  max_age_seconds: "invalid_max_age"
}

const placeOf = { Params: "path parameter", Query: "query parameter", Headers: "header", Payload: "body" } as const

/** A request a schema refused, as a 400 carrying the schema's message for the first thing it refused. */
export const badRequest = (kind: keyof typeof placeOf, error: Schema.SchemaError): BadRequest => {
  const [first] = formatIssue(error.issue).issues
  const path = first?.path ?? []
  const name = path.length === 0 ? undefined : path.map(String).join(".")
  const message = first?.message ?? error.message
  return new BadRequest({
    error: (name === undefined ? undefined : codeOf[name.split(".")[0]!]) ??
      (kind === "Payload" ? "invalid_body" : "invalid_parameter"),
    message: name === undefined ? `${placeOf[kind]}: ${message}` : `${placeOf[kind]} ${name}: ${message}`
  })
}

const pathOf = (url: string): string => {
  const end = url.search(/[?#]/)
  return end === -1 ? url : url.slice(0, end)
}

const patternsOf = (routes: ReadonlyArray<ApiRoute>) =>
  routes.map((route) => ({ ...route, pattern: new RegExp(`^${route.path.replace(/:[a-z_]+/g, "[^/]+")}$`) }))

const toJson = <A, I>(schema: Schema.Codec<A, I>, value: A, status: number) =>
  HttpServerResponse.jsonUnsafe(Schema.encodeSync(schema)(value), { status })

const routeNotFound = (
  routes: ReadonlyArray<ApiRoute>,
  routePatterns: ReturnType<typeof patternsOf>,
  request: HttpServerRequest.HttpServerRequest
): HttpServerResponse.HttpServerResponse => {
  const path = pathOf(request.url)
  const allowed = routePatterns.filter((r) => r.pattern.test(path)).map((r) => r.method)
  if (allowed.length > 0) {
    return toJson(
      MethodNotAllowed,
      new MethodNotAllowed({
        message: `${request.method} ${path} is not supported; use ${allowed.join(", ")}`,
        allowed
      }),
      405
    ).pipe(HttpServerResponse.setHeader("allow", allowed.join(", ")))
  }
  return toJson(
    RouteNotFound,
    new RouteNotFound({
      message: `no route ${request.method} ${path}`,
      routes: routes.map((r) => `${r.method} ${r.path}`)
    }),
    404
  )
}

/** Unknown route → 404, known route with another method → 405, refused input → 400, anything else → 500: all JSON. */
/** How an API with these routes answers what none of its handlers did. */
export const answerFailureFor = (routes: ReadonlyArray<ApiRoute>) => {
  const patterns = patternsOf(routes)
  return Effect.fnUntraced(function*(cause: Cause.Cause<unknown>) {
  const request = yield* HttpServerRequest.HttpServerRequest
  const failure = Cause.squash(cause)
  if (HttpServerError.isHttpServerError(failure) && failure.reason._tag === "RouteNotFound") {
    return routeNotFound(routes, patterns, request)
  }
  const schemaError = HttpApiError.HttpApiSchemaError.is(failure) ? failure : undefined
  if (schemaError !== undefined && schemaError.kind !== "Body" && schemaError.kind !== "ResponseHeaders") {
    return toJson(BadRequest, badRequest(schemaError.kind, schemaError.cause), 400)
  }
  yield* Effect.logError(`monitoring API: ${request.method} ${pathOf(request.url)} failed`, cause)
  const message = schemaError !== undefined
    ? `the answer does not fit the API's description: ${schemaError.cause.message}`
    : typeof failure === "object" && failure !== null && "message" in failure
    ? String(failure.message)
    : "internal error"
  return toJson(InternalError, new InternalError({ message }), 500)
  })
}

export const answerFailure = answerFailureFor(monitoringRoutes)

/** Paths polled by probes and scrapers, in any of the APIs: untraced unless asked. */
const probePaths: ReadonlySet<string> = new Set(["/health", "/ready", "/metrics"])

/** Whether a request goes to a probe (/health, /ready, /metrics): those are not traced unless asked. */
export const isProbe = (request: HttpServerRequest.HttpServerRequest): boolean =>
  request.method === "GET" && probePaths.has(pathOf(request.url))

const decoder = new TextDecoder()

/**
 * Every answer goes through the redactor last, whoever wrote it, so a secret that slipped into a value (an RPC URL
 * with its key, an error message quoting a token) never leaves the process. A 401 names the scheme to use.
 */
export const finishAnswer = (redact: (text: string) => string) =>
(response: HttpServerResponse.HttpServerResponse): HttpServerResponse.HttpServerResponse => {
  const answer = response.status === 401
    ? HttpServerResponse.setHeader(response, "www-authenticate", "Bearer realm=\"r3mes-miner admin\"")
    : response
  const body = answer.body
  if (body._tag !== "Uint8Array") return answer
  const text = decoder.decode(body.body)
  const redacted = redact(text)
  return redacted === text ? answer : HttpServerResponse.setBody(answer, HttpBody.text(redacted, body.contentType))
}

/**
 * A value as JSON carries it: big integers as decimal strings, non-finite numbers as null. For the parts of an
 * answer whose keys the schemas leave open (statistics, miner details), which JSON.stringify would otherwise refuse.
 */
export const asJson = (value: object): Record<string, unknown> =>
  JSON.parse(JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v)))
