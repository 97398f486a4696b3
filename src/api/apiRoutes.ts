import { HttpApi, type HttpApiGroup } from "effect/http-api"

/** One route of an API's description. */
export interface ApiRoute {
  readonly method: string
  readonly path: string
}

/** Every route of an API's description, in its order: what a 404 lists and a 405 is computed from. */
export const routesOf = <Id extends string, Groups extends HttpApiGroup.Constraint>(
  api: HttpApi.HttpApi<Id, Groups>
): ReadonlyArray<ApiRoute> => {
  const routes: Array<ApiRoute> = []
  HttpApi.reflect(api, {
    onGroup: () => {},
    onEndpoint: ({ endpoint }) => routes.push({ method: endpoint.method, path: endpoint.path })
  })
  return routes
}
