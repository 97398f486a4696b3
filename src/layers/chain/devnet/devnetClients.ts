import { Effect } from "effect"
import { http } from "viem"
import { privateKeyToAccount } from "viem/accounts"
import type { MiningError } from "../../../domain/errors.ts"
import { viemClients } from "../viemClients.ts"
import { fromViemError } from "../viemErrors.ts"
import type { AnvilInstance } from "./Anvil.ts"

/**
 * The devnet's own clients on its anvil, signing as account 0 (the registry's owner), and the one way the devnet
 * calls them: a failed call becomes a MiningError naming what the devnet was doing.
 */
export const devnetClients = (anvil: AnvilInstance) => {
  const account = privateKeyToAccount(anvil.accounts[0]!.privateKey)
  const { client, wallet } = viemClients({
    chainId: anvil.chainId,
    rpcUrl: anvil.rpcUrl,
    // anvil answers in milliseconds; a restart keeps the same URL, so the transport outlives the process.
    transport: http(anvil.rpcUrl, { timeout: 10_000, retryCount: 0 }),
    account,
    pollingIntervalMs: 50,
    name: `r3mes-devnet-${anvil.chainId}`
  })
  const rpc = <A>(context: string, f: () => Promise<A>): Effect.Effect<A, MiningError> =>
    Effect.tryPromise({ try: f, catch: (e) => fromViemError(e, `devnet: ${context}`) })
  return { client, wallet, owner: account.address, rpc }
}

export type DevnetClients = ReturnType<typeof devnetClients>
