import { createServer } from "node:net"
import { Effect } from "effect"
import { ResourceError } from "../../../domain/errors.ts"

/** anvil listens on loopback only: a devnet's keys are public knowledge. */
export const host = "127.0.0.1"

const listenOnce = (port: number): Promise<number> =>
  new Promise((resolvePort, reject) => {
    const server = createServer()
    server.unref()
    server.once("error", reject)
    server.listen({ port, host, exclusive: true }, () => {
      const address = server.address()
      const bound = typeof address === "object" && address !== null ? address.port : port
      server.close(() => resolvePort(bound))
    })
  })

/** A port on 127.0.0.1 that was free a moment ago (the OS picks it). */
export const freePort: Effect.Effect<number, ResourceError> = Effect.tryPromise({
  try: () => listenOnce(0),
  catch: (cause) =>
    new ResourceError({ message: `cannot find a free TCP port on ${host}`, resource: "port", cause: String(cause) })
})

/** Fails when something already listens on the port (else anvil's probe could be answered by that other server). */
export const checkPortFree = (port: number): Effect.Effect<void, ResourceError> =>
  Effect.tryPromise({
    try: () => listenOnce(port),
    catch: (cause) =>
      new ResourceError({
        message: `port ${port} on ${host} is in use`,
        resource: "port",
        cause: String(cause),
        hint: "stop whatever listens there (another devnet?) or choose another port (0 picks a free one)"
      })
  }).pipe(Effect.asVoid)
