import { Duration, Effect, Redacted, Schedule, type Scope } from "effect"
import { createPublicClient, type Hex, isAddress } from "viem"
import { type PrivateKeyAccount, privateKeyToAccount } from "viem/accounts"
import { AuthenticationError, isRetryable, type MiningError, ValidationError } from "../../domain/errors.ts"
import { rpcTransport } from "./rpcTransport.ts"
import { type ViemClients, viemClients } from "./viemClients.ts"
import { rpc } from "./viemRpc.ts"

/**
 * An account's connection to a MiningRegistry: the address and key checked, the node's chain id read, the clients
 * made, and the registry's code found. Shared by the Chain adapter (the miner's or verifier's account) and the
 * RoundAuthority adapter (the owner's account).
 */

/** Where a viem adapter reaches the registry, with which key, and how patiently. */
export interface ViemEndpointOptions {
  readonly rpcUrl: string
  readonly registry: string
  readonly privateKey: Redacted.Redacted<string>
  /** Per RPC request (default 10 s). */
  readonly rpcTimeout?: Duration.Input
  /** How long to wait for a receipt (default 60 s). */
  readonly receiptTimeout?: Duration.Input
  /** Receipt polling interval (default 250 ms; anvil mines instantly). */
  readonly pollingInterval?: Duration.Input
}

export interface RegistryConnectionOptions {
  readonly rpcUrl: string
  readonly registry: string
  readonly privateKey: Redacted.Redacted<string>
  /** Per RPC request (default 10 s). */
  readonly rpcTimeout?: Duration.Input
  /** Receipt and block polling interval. */
  readonly pollingInterval: Duration.Duration
  /** Where the registry address and the RPC URL come from, for the errors: a setting's name, a flag. */
  readonly registryField: string
  readonly rpcField: string
  /** What to do about an invalid private key. */
  readonly keyHint: string
}

export interface RegistryConnection extends ViemClients {
  readonly chainId: number
  readonly registry: Hex
  readonly account: PrivateKeyAccount
}

/** Start-up reads (chain id, registry code) are retried: one lost answer must not stop a process at start. */
const startupRetry = { schedule: Schedule.exponential("200 millis", 2), times: 5, while: isRetryable } as const

export const connectRegistry = Effect.fnUntraced(function*(
  options: RegistryConnectionOptions
): Effect.fn.Return<RegistryConnection, MiningError, Scope.Scope> {
  if (!isAddress(options.registry, { strict: true })) {
    return yield* new ValidationError({
      message: `registry address ${options.registry} is not a 0x-prefixed 20-byte address with a valid checksum`,
      field: options.registryField
    })
  }
  const registry = options.registry as Hex
  const account: PrivateKeyAccount = yield* Effect.try({
    try: () => privateKeyToAccount(Redacted.value(options.privateKey) as Hex),
    catch: () => new AuthenticationError({ message: "the private key is not a valid secp256k1 key", hint: options.keyHint })
  })

  const transport = yield* rpcTransport(options.rpcUrl, { timeout: options.rpcTimeout ?? "10 seconds" })
  const bootstrap = createPublicClient({ transport })
  const chainId = yield* rpc("reaching the chain", () => bootstrap.getChainId()).pipe(Effect.retry(startupRetry))
  const clients = viemClients({
    chainId,
    rpcUrl: options.rpcUrl,
    transport,
    account,
    pollingIntervalMs: Duration.toMillis(options.pollingInterval)
  })

  const code = yield* rpc("reading the registry's code", () => clients.client.getCode({ address: registry })).pipe(
    Effect.retry(startupRetry)
  )
  if (code === undefined || code === "0x") {
    return yield* new ValidationError({
      message: `no contract at ${registry} on chain ${chainId}`,
      field: options.registryField,
      hint: `check ${options.registryField} and ${options.rpcField}`
    })
  }
  return { ...clients, chainId, registry, account }
})
