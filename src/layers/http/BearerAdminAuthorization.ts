import { createHash, timingSafeEqual } from "node:crypto"
import { Effect, Layer, Option, Redacted } from "effect"
import { HttpServerRequest } from "effect/http"
import { Unauthorized } from "../../api/MonitoringApiErrors.ts"
import { AdminAuthorization } from "../../api/MonitoringApiSpec.ts"
import { Settings } from "../../services/Settings.ts"

const sha256 = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest()

/**
 * The admin routes' guard: the bearer token against R3MES_ADMIN_TOKEN, compared as SHA-256 digests (equal lengths)
 * in constant time. Every refusal is logged with the caller's address: someone is trying the admin routes.
 */
export const BearerAdminAuthorization = {
  layer: Layer.effect(
    AdminAuthorization,
    Effect.gen(function*() {
      const config = yield* Settings
      const adminDigest = Option.map(config.adminToken, (token) => sha256(Redacted.value(token)))
      const refuse = Effect.fnUntraced(function*(refusal: Unauthorized) {
        const request = yield* HttpServerRequest.HttpServerRequest
        const from = Option.getOrElse(request.remoteAddress, () => "unknown")
        yield* Effect.logWarning(`admin route refused (${refusal.error}): ${request.method} ${request.url} from ${from}`)
        return yield* refusal
      })
      return AdminAuthorization.of({
        bearer: (handler, { credential }) => {
          if (Option.isNone(adminDigest)) {
            return refuse(
              new Unauthorized({
                error: "admin_disabled",
                message: "admin routes are disabled: no admin token is configured (set R3MES_ADMIN_TOKEN or --admin-token)"
              })
            )
          }
          const token = Redacted.value(credential).trim()
          return token !== "" && timingSafeEqual(sha256(token), adminDigest.value)
            ? handler
            : refuse(
              new Unauthorized({
                error: "unauthorized",
                message: "a valid `Authorization: Bearer <R3MES_ADMIN_TOKEN>` header is required"
              })
            )
        }
      })
    })
  )
}
