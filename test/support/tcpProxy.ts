import { connect, createServer, type Socket } from "node:net"
import type { AddressInfo } from "node:net"

/**
 * A TCP proxy in front of a local server (Postgres), to make a client's machine vanish: `vanish()` destroys every
 * client-side socket and leaves every server-side one open and silent — nothing forwarded, no FIN, no RST — which is
 * what a server sees of a machine that lost power or its network. New connections are refused from then on.
 */
export interface TcpProxy {
  readonly port: number
  /** `url` with its port replaced by the proxy's. */
  readonly via: (url: string) => string
  readonly vanish: () => void
  readonly close: () => Promise<void>
}

export const startTcpProxy = async (upstreamPort: number): Promise<TcpProxy> => {
  const pairs = new Set<{ readonly client: Socket; readonly upstream: Socket }>()
  const kept: Array<Socket> = []
  let vanished = false
  const server = createServer((client) => {
    if (vanished) return void client.destroy()
    const upstream = connect(upstreamPort, "127.0.0.1")
    const pair = { client, upstream }
    pairs.add(pair)
    client.pipe(upstream)
    upstream.pipe(client)
    const end = () => {
      if (!pairs.delete(pair)) return
      client.destroy()
      upstream.destroy()
    }
    for (const socket of [client, upstream]) {
      socket.on("error", end)
      socket.on("close", end)
    }
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as AddressInfo).port
  return {
    port,
    via: (url) => {
      const u = new URL(url)
      u.port = String(port)
      return u.toString()
    },
    vanish: () => {
      vanished = true
      for (const pair of [...pairs]) {
        pairs.delete(pair)
        pair.client.unpipe(pair.upstream)
        pair.upstream.unpipe(pair.client)
        pair.upstream.removeAllListeners("close")
        pair.upstream.removeAllListeners("error")
        pair.upstream.on("error", () => {})
        pair.upstream.pause()
        kept.push(pair.upstream)
        pair.client.destroy()
      }
    },
    close: async () => {
      for (const socket of kept) socket.destroy()
      for (const pair of pairs) {
        pair.client.destroy()
        pair.upstream.destroy()
      }
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
