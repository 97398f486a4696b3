import {
  type Chain as ViemChainDefinition,
  createPublicClient,
  createWalletClient,
  defineChain,
  type PublicClient,
  type Transport,
  type WalletClient
} from "viem"
import type { PrivateKeyAccount } from "viem/accounts"

/**
 * viem's public and wallet clients on one transport, with a chain definition made from the node's own chain id: the
 * miner talks to whatever chain the RPC URL serves (a devnet, a testnet), so no built-in viem chain applies. Shared
 * by the Chain adapter and the devnet's deployer and round keeper.
 */

export interface ViemClientsOptions {
  readonly chainId: number
  readonly rpcUrl: string
  readonly transport: Transport
  readonly account: PrivateKeyAccount
  /** How often the public client polls (receipts, blocks), in milliseconds. */
  readonly pollingIntervalMs: number
  /** The chain's display name in viem's errors; default `r3mes-<chainId>`. */
  readonly name?: string
}

export interface ViemClients {
  readonly chain: ViemChainDefinition
  readonly client: PublicClient
  readonly wallet: WalletClient<Transport, ViemChainDefinition, PrivateKeyAccount>
}

export const viemClients = (options: ViemClientsOptions): ViemClients => {
  const chain = defineChain({
    id: options.chainId,
    name: options.name ?? `r3mes-${options.chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [options.rpcUrl] } }
  })
  const client: PublicClient = createPublicClient({
    chain,
    transport: options.transport,
    pollingInterval: options.pollingIntervalMs
  })
  const wallet = createWalletClient({ chain, transport: options.transport, account: options.account })
  return { chain, client, wallet }
}
