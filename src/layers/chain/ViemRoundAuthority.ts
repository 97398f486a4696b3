import { Duration, Effect, Layer } from "effect"
import type { Hex } from "viem"
import { type MiningError, TimeoutError, ValidationError } from "../../domain/errors.ts"
import { FinalizationReceipt, type FinalizeRound } from "../../domain/rounds.ts"
import { RoundAuthority } from "../../services/RoundAuthority.ts"
import { miningRegistryAbi } from "./MiningRegistryArtifact.ts"
import { connectRegistry, type ViemEndpointOptions } from "./viemConnection.ts"
import { read, rpc } from "./viemRpc.ts"

/** As ViemChain's; `privateKey` is the registry owner's (on the devnet: anvil's account 0). */
export type ViemRoundAuthorityOptions = ViemEndpointOptions

/**
 * The RoundAuthority port on viem, signing as the registry's owner: simulated first (a revert is decoded without
 * spending gas), then sent with the account's pending nonce, read afresh for each write — on the devnet the round
 * keeper writes from the same owner account with its own client, so a nonce kept here would go stale at its every
 * round (the miner's nonce writer, viemWriter.ts, assumes one writer per account). Writes are not retried: a lost
 * answer may have been mined, and a second finalizeRound is the caller's to judge (RoundAlreadyFinalized).
 */
export const make = Effect.fnUntraced(function*(options: ViemRoundAuthorityOptions) {
  const receiptTimeout = Duration.fromInputUnsafe(options.receiptTimeout ?? "60 seconds")
  const pollingInterval = Duration.fromInputUnsafe(options.pollingInterval ?? "250 millis")
  const { account, chain, client, registry, wallet } = yield* connectRegistry({
    rpcUrl: options.rpcUrl,
    registry: options.registry,
    privateKey: options.privateKey,
    pollingInterval,
    registryField: "registry",
    rpcField: "rpcUrl",
    keyHint: "the registry owner's key must be 0x followed by 64 hex digits",
    ...(options.rpcTimeout === undefined ? {} : { rpcTimeout: options.rpcTimeout })
  })

  const finalizeRound = Effect.fn("RoundAuthority.finalizeRound")(function*(f: FinalizeRound) {
    yield* Effect.annotateCurrentSpan({
      "r3mes.round_id": f.roundId.toString(),
      "r3mes.accepted_count": f.acceptedCount,
      "r3mes.test_accuracy_ppm": f.testAccuracyPpm
    })
    const call = {
      address: registry,
      abi: miningRegistryAbi,
      functionName: "finalizeRound",
      args: [f.roundId, f.modelCid, f.weightsHash as Hex, f.acceptedCount, f.testAccuracyPpm],
      account,
      chain,
      // On the pool's state: a finalization sent by another process and not yet mined is seen, and decoded.
      blockTag: "pending"
    } as const
    const simulate = () => client.simulateContract(call)
    /** Why the call reverts now, decoded by simulating it again; `fallback` when the replay does not revert. */
    const replay = (fallback: MiningError) =>
      Effect.flip(rpc(`replaying finalizeRound(${f.roundId})`, simulate)).pipe(
        Effect.map((e) => (e._tag === "ChainRevertError" ? e : fallback)),
        Effect.orElseSucceed(() => fallback)
      )
    const { request } = yield* read(`simulating finalizeRound(${f.roundId})`, simulate)
    const hash = yield* rpc(`sending finalizeRound(${f.roundId})`, () => wallet.writeContract(request)).pipe(
      // A revert met while estimating gas reaches viem without its data (measured with anvil: UnknownRevert).
      Effect.catchTag("ChainRevertError", (e) => Effect.flatMap(replay(e), Effect.fail))
    )
    const receipt = yield* rpc(`waiting for the receipt of finalizeRound(${f.roundId})`, () =>
      client.waitForTransactionReceipt({
        hash,
        pollingInterval: Duration.toMillis(pollingInterval),
        timeout: Duration.toMillis(receiptTimeout)
      })).pipe(
        Effect.catchTag("TimeoutError", (e) =>
          Effect.fail(
            new TimeoutError({
              message: `no receipt for finalizeRound(${f.roundId}) ${hash} within ${Duration.format(receiptTimeout)}`,
              hint: "it may still be mined: read Chain.getFinalization before sending it again",
              ...(e.cause === undefined ? {} : { cause: e.cause })
            })
          ))
      )
    if (receipt.status !== "success") {
      // Mined but reverted (finalized by another transaction in between): replay it to learn why.
      return yield* Effect.flatMap(
        replay(new ValidationError({ message: `finalizeRound(${f.roundId}) ${hash} reverted on chain` })),
        Effect.fail
      )
    }
    return new FinalizationReceipt({
      txHash: receipt.transactionHash,
      blockNumber: receipt.blockNumber,
      blockHash: receipt.blockHash
    })
  })

  return RoundAuthority.of({ finalizeRound })
})

export const ViemRoundAuthority = {
  /**
   * The RoundAuthority port on a MiningRegistry reached over JSON-RPC (http(s) or ws(s)), as the key's account. Fails
   * to build when the registry is not there; a key that is not the owner's builds, and each call reverts NotOwner.
   */
  layer: (options: ViemRoundAuthorityOptions): Layer.Layer<RoundAuthority, MiningError> =>
    Layer.effect(RoundAuthority, make(options))
} as const
