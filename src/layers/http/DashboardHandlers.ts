import { Effect } from "effect"
import { HttpServerResponse } from "effect/http"
import { HttpApiBuilder } from "effect/http-api"
import { RouteNotFound } from "../../api/MonitoringApiErrors.ts"
import { htmlContentType, MonitoringApiSpec } from "../../api/MonitoringApiSpec.ts"
import { loadDashboardFiles } from "./dashboard/assets.ts"

/**
 * The page blocks everything but its own origin: it only ever loads its assets and polls this API, so an injected
 * value (a revert reason, a CID) could neither run a script nor send data anywhere.
 */
const contentSecurityPolicy = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"

/** GET / (the dashboard) and GET /assets/:name (its scripts and stylesheets), from files read once at start. */
export const dashboardHandlers = HttpApiBuilder.group(
  MonitoringApiSpec,
  "dashboard",
  Effect.fnUntraced(function*(handlers) {
    const files = yield* Effect.sync(loadDashboardFiles)
    const assetRoutes = [...files.assets.keys()].map((name) => `GET /assets/${name}`)
    return handlers.handleAll({
      page: () =>
        Effect.succeed(
          HttpServerResponse.text(files.page, {
            contentType: htmlContentType,
            headers: { "content-security-policy": contentSecurityPolicy, "cache-control": "no-cache" }
          })
        ),
      asset: ({ params }) => {
        const asset = files.assets.get(params.name)
        if (asset === undefined) {
          return Effect.fail(new RouteNotFound({ message: `no dashboard asset ${params.name}`, routes: assetRoutes }))
        }
        return Effect.succeed(
          HttpServerResponse.text(asset.body, { contentType: asset.contentType, headers: { "cache-control": "no-cache" } })
        )
      }
    })
  })
)
