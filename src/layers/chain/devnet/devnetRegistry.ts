import { Effect } from "effect"
import { type Address, encodeDeployData, getAddress, keccak256 } from "viem"
import { ValidationError } from "../../../domain/errors.ts"
import { miningRegistryAbi, miningRegistryBytecode } from "../MiningRegistryArtifact.ts"
import type { DevnetClients } from "./devnetClients.ts"
import { devnetFileName, readDevnetFile, stateFileName, writeDevnetFile } from "./devnetFiles.ts"

/** The devnet's MiningRegistry: deployed by account 0, or reused from a previous run's devnet.json. */

/** Which contract a devnet.json's registry was deployed from (see DevnetFile.artifact). */
const artifactHash = keccak256(miningRegistryBytecode)

export const deployRegistry = Effect.fn("Devnet.deployRegistry")(function*(
  { rpc, wallet }: DevnetClients,
  leaseSeconds: number
) {
  const receipt = yield* rpc("deploying MiningRegistry", () =>
    wallet.sendTransactionSync({
      data: encodeDeployData({
        abi: miningRegistryAbi,
        bytecode: miningRegistryBytecode,
        args: [BigInt(leaseSeconds)]
      }),
      throwOnReceiptRevert: true
    }))
  const address = receipt.contractAddress
  if (address === null || address === undefined) {
    return yield* new ValidationError({ message: `the MiningRegistry deployment ${receipt.transactionHash} made no contract` })
  }
  yield* Effect.logInfo(`devnet: deployed MiningRegistry at ${address} (lease ${leaseSeconds} s)`)
  return getAddress(address)
})

export const hasCode = Effect.fn("Devnet.hasCode")(function*({ client, rpc }: DevnetClients, address: Address) {
  const code = yield* rpc(`reading the code at ${address}`, () => client.getCode({ address }))
  return code !== undefined && code !== "0x"
})

/**
 * Makes `verifier` one of the registry's verifiers (DESIGN.md "Verification": the devnet registers a verifier
 * account), unless it already is one: a registry reused from the data dir keeps its verifiers in the chain state, and
 * setting it again would only add a VerifierSet event per restart.
 */
export const registerVerifier = Effect.fn("Devnet.registerVerifier")(function*(
  { client, rpc, wallet }: DevnetClients,
  registry: Address,
  verifier: Address
) {
  const allowed = yield* rpc(`reading whether ${verifier} is a verifier`, () =>
    client.readContract({ address: registry, abi: miningRegistryAbi, functionName: "isVerifier", args: [verifier] }))
  if (allowed) return
  yield* rpc(`allowing ${verifier} to record verdicts`, () =>
    wallet.writeContractSync({
      address: registry,
      abi: miningRegistryAbi,
      functionName: "setVerifier",
      args: [verifier, true],
      throwOnReceiptRevert: true
    }))
  yield* Effect.logInfo(`devnet: ${verifier} records verdicts on ${registry}`)
})

/**
 * The registry the devnet serves: the one devnet.json names when the chain state still holds it, else a new
 * deployment (with `leaseSeconds`); recorded in devnet.json in persistent mode. Its lease duration is read from the
 * contract, since a reused registry keeps its own. `verifier` is registered as a verifier on it.
 */
export const setUpRegistry = Effect.fn("Devnet.setUpRegistry")(function*(
  clients: DevnetClients,
  chainId: number,
  dataDir: string | undefined,
  leaseSeconds: number,
  verifier: Address
) {
  const previous = dataDir === undefined ? undefined : yield* readDevnetFile(dataDir)
  if (previous !== undefined && previous.chain_id !== chainId) {
    return yield* new ValidationError({
      message: `the devnet in ${dataDir} runs chain ${previous.chain_id}, not ${chainId}`,
      field: "chain id",
      hint: `start it with chain id ${previous.chain_id}, or use another data dir for a new chain`
    })
  }
  let registry: Address
  const current = previous !== undefined && previous.artifact === artifactHash
  if (previous !== undefined && !current) {
    yield* Effect.logWarning(
      `devnet: ${dataDir}/${devnetFileName} names a MiningRegistry built by an older r3mes-miner (${previous.registry}): ` +
        "deploying one with today's contract on the same chain"
    )
    registry = yield* deployRegistry(clients, leaseSeconds)
  } else if (previous !== undefined && (yield* hasCode(clients, previous.registry as Address))) {
    registry = getAddress(previous.registry)
    yield* Effect.logInfo(`devnet: reusing MiningRegistry at ${registry} from ${dataDir}`)
  } else {
    if (previous !== undefined) {
      yield* Effect.logWarning(
        `devnet: ${dataDir}/${devnetFileName} names ${previous.registry}, but the chain state has no code there ` +
          `(${stateFileName} lost or replaced): deploying a new registry`
      )
    }
    registry = yield* deployRegistry(clients, leaseSeconds)
  }
  yield* registerVerifier(clients, registry, verifier)
  const lease = Number(
    yield* clients.rpc("reading the lease duration", () =>
      clients.client.readContract({ address: registry, abi: miningRegistryAbi, functionName: "leaseDuration" }))
  )
  if (dataDir !== undefined) {
    yield* writeDevnetFile(dataDir, {
      registry,
      chain_id: chainId,
      owner: clients.owner,
      lease_seconds: lease,
      artifact: artifactHash
    })
  }
  return { registry, leaseSeconds: lease }
})
