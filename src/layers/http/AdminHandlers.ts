import { Duration, Effect, Schema } from "effect"
import type { HttpServerRequest } from "effect/http"
import { HttpApiBuilder } from "effect/http-api"
import { BadRequest, PayloadTooLarge } from "../../api/MonitoringApiErrors.ts"
import { CleanupStalePayload } from "../../api/MonitoringApiSchemas.ts"
import { MonitoringApiSpec } from "../../api/MonitoringApiSpec.ts"
import { MiningCoordinator } from "../../services/MiningCoordinator.ts"
import { Settings } from "../../services/Settings.ts"
import { badRequest } from "./answers.ts"

const maxBodyBytes = 64 * 1024

const decodePayload = Schema.decodeUnknownEffect(CleanupStalePayload)

const noField = "send {\"max_age_seconds\": N} or max_age_seconds=N"

/**
 * The body of POST /cleanup-stale, by its shape rather than its content-type: `curl -d '{…}'` labels JSON as a form,
 * and a body that names no max_age_seconds is refused rather than silently taken for the default.
 */
const readPayload = Effect.fnUntraced(function*(request: HttpServerRequest.HttpServerRequest) {
  if (Number(request.headers["content-length"] ?? "0") > maxBodyBytes) {
    return yield* new PayloadTooLarge({ message: `the body is over ${maxBodyBytes} bytes` })
  }
  const body = (yield* Effect.orDie(request.text)).trim()
  let raw: unknown = {}
  if (body.startsWith("{") || body.startsWith("[")) {
    try {
      raw = JSON.parse(body)
    } catch {
      return yield* new BadRequest({ error: "invalid_body", message: `the body is not JSON: ${noField}` })
    }
  } else if (body !== "") {
    const form = new URLSearchParams(body)
    if (!form.has("max_age_seconds")) {
      return yield* new BadRequest({ error: "invalid_body", message: `the body names no max_age_seconds: ${noField}` })
    }
    raw = Object.fromEntries(form)
  }
  const payload = yield* decodePayload(raw).pipe(Effect.mapError((error) => badRequest("Payload", error)))
  const seconds = payload.max_age_seconds
  return seconds === undefined || seconds === null || seconds === "" ? undefined : seconds
})

/** POST /cleanup-stale (behind AdminAuthorization): rolls back the in-flight transactions older than max_age_seconds. */
export const adminHandlers = HttpApiBuilder.group(
  MonitoringApiSpec,
  "admin",
  Effect.fnUntraced(function*(handlers) {
    const coordinator = yield* MiningCoordinator
    const config = yield* Settings
    // Raw: the body is read by its shape above, which no content-type-driven decoder does.
    return handlers.handleRaw(
      "cleanupStale",
      Effect.fn("MonitoringApi.cleanupStale")(function*({ query, request }) {
        const seconds = query.max_age_seconds ?? (yield* readPayload(request)) ??
          Duration.toSeconds(config.transactionTimeout)
        const { awaiting_chain, cleaned } = yield* Effect.orDie(
          coordinator.cleanupStaleTransactions(Duration.seconds(seconds))
        )
        yield* Effect.logWarning(
          `admin: cleanup-stale (max age ${seconds} s) cleaned ${cleaned.length} transaction(s); ` +
            `${awaiting_chain.length} past their commit point left to the chain`
        )
        return { cleaned, count: cleaned.length, awaiting_chain, max_age_seconds: seconds }
      })
    )
  })
)
