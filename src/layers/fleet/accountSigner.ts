import { Context, Duration, Effect, Layer, Schema } from "effect"
import { ClusterSchema, Entity } from "effect/cluster"
import { Rpc } from "effect/rpc"
import type { Hex } from "viem"
import { isMiningError, MiningError, RetryableError, ValidationError } from "../../domain/errors.ts"
import { SignedTransaction } from "../../domain/mining.ts"
import type { AccountSigning, CallToSign } from "../../services/AccountSigning.ts"

/**
 * The account's signer on Effect's cluster (DESIGN.md "Fleet"): one entity per account, in the `signer` shard group,
 * so it lives on exactly one of the runners that may sign (R3MES_FLEET_SIGNERS) and moves to another when that runner
 * dies. Every runner's writer asks it for the bytes of its calls; it signs them at the account's next nonce with its
 * runner's key and reserves them in the nonce ledger — the fence for the moments a lease puts the entity on two
 * runners — and lends them to the caller, who journals and broadcasts them (viemWriter.ts `AccountSigning` has the
 * rules). Its state (the next nonce, lent nonces) is a cache of the ledger: a new home starts from the ledger.
 *
 * Messages are volatile (not persisted): a lost one is a failed write that the transaction's retries repeat, and a
 * repeated lend of a submission or completion finds its reserved bytes (`reservedSameCall`), never a second signature.
 */

const Call = Schema.Struct({
  functionName: Schema.String,
  data: Schema.String,
  /** Decimal; none to let the signer's node estimate. */
  gas: Schema.optional(Schema.String),
  idempotent: Schema.Boolean
})

const Lend = Rpc.make("Lend", {
  payload: Call,
  success: Schema.Struct({ signed: SignedTransaction, reservedBefore: Schema.Boolean }),
  error: MiningError
})

const Release = Rpc.make("Release", {
  payload: { signed: SignedTransaction },
  success: Schema.Literals(["undone", "kept"]),
  error: MiningError
})

const Refused = Rpc.make("Refused", { payload: { signed: SignedTransaction }, error: MiningError })

const FillGapBelow = Rpc.make("FillGapBelow", { payload: { nonce: Schema.Int }, error: MiningError })

/** The shard group of the signer: only runners allowed to sign take its shards. */
export const signerShardGroup = "signer"

export const AccountSigner = Entity.make("AccountSigner", [Lend, Release, Refused, FillGapBelow]).annotate(
  ClusterSchema.ShardGroup,
  () => signerShardGroup
)

/** The entity id of an account's signer: the account and the registry it writes to, lower-case. */
export const accountSignerId = (account: string, registry: string): string =>
  `${account.toLowerCase()}@${registry.toLowerCase()}`

/** This runner's signing side (its writer's `signer`), for the account this runner's key signs for. */
export class LocalAccountSigner extends Context.Service<LocalAccountSigner, {
  readonly id: string
  readonly signer: AccountSigning
}>()("r3mes/layers/fleet/LocalAccountSigner") {}

/**
 * Hosts the account's signer entity on this runner (when the cluster gives it this runner's `signer` shards): each
 * message served by this runner's own writer. An id that is not this runner's account is refused: a runner of the
 * fleet started with another key.
 */
export const accountSignerEntityLayer = AccountSigner.toLayer(
  Effect.gen(function*() {
    const local = yield* LocalAccountSigner
    const address = yield* Entity.CurrentAddress
    // Where the signer lives is what an operator looks for first when the fleet's writes wait.
    yield* Effect.logInfo(`the account's signer ${address.entityId} runs on this runner`)
    yield* Effect.addFinalizer(() => Effect.logInfo(`the account's signer ${address.entityId} left this runner`))
    const check = <A>(serve: Effect.Effect<A, MiningError>): Effect.Effect<A, MiningError> =>
      address.entityId === local.id ? serve : Effect.fail(
        new ValidationError({
          message: `this runner signs for ${local.id}, and was asked to sign for ${address.entityId}`,
          hint: "every runner of a fleet needs the same R3MES_PRIVATE_KEY and R3MES_REGISTRY_ADDRESS",
          field: "privateKey"
        })
      )
    return AccountSigner.of({
      Lend: ({ payload }) =>
        check(local.signer.lend({
          functionName: payload.functionName,
          data: payload.data as Hex,
          gas: payload.gas === undefined ? undefined : BigInt(payload.gas),
          idempotent: payload.idempotent
        })),
      Release: ({ payload }) => check(local.signer.release(payload.signed)),
      Refused: ({ payload }) => check(local.signer.refused(payload.signed)),
      FillGapBelow: ({ payload }) => check(local.signer.fillGapBelow(payload.nonce))
    })
  }),
  // The writer's nonce permit orders what must be ordered; gap fills and lends of many callers queue there.
  { concurrency: "unbounded" }
)

/**
 * How long a writer waits for the signer's answer: signing is milliseconds, so a longer wait is a signer that died or
 * froze; the write fails as retryable and its transaction's retries try again, by then at the signer's new home.
 */
export const signerAnswerTimeout = Duration.seconds(15)

/**
 * The account's signer as this runner's writer reaches it (through the cluster, wherever the entity lives). Failures
 * of the cluster itself (the entity between homes, a runner unreachable) are retryable errors.
 */
export const remoteAccountSigner = (id: string, timeout: Duration.Duration = signerAnswerTimeout) =>
  AccountSigner.client.pipe(Effect.map((clientFor) => accountSigningThrough(clientFor(id), timeout)))

/** What a writer needs of an entity client: the four messages, whatever else they may fail with. */
export interface SignerClient {
  readonly Lend: (payload: typeof Call.Type) => Effect.Effect<{ readonly signed: SignedTransaction; readonly reservedBefore: boolean }, unknown>
  readonly Release: (payload: { readonly signed: SignedTransaction }) => Effect.Effect<"undone" | "kept", unknown>
  readonly Refused: (payload: { readonly signed: SignedTransaction }) => Effect.Effect<void, unknown>
  readonly FillGapBelow: (payload: { readonly nonce: number }) => Effect.Effect<void, unknown>
}

/** The signer's messages as `AccountSigning`, through a client of the entity (the cluster's, or a test's). */
export const accountSigningThrough = (
  client: SignerClient,
  timeout: Duration.Duration = signerAnswerTimeout
): AccountSigning => {
  const reached = <A>(what: string, call: Effect.Effect<A, unknown>): Effect.Effect<A, MiningError> =>
    call.pipe(
      Effect.timeoutOrElse({
        duration: timeout,
        orElse: () =>
          Effect.fail(
            new RetryableError({
              message: `the account's signer did not answer ${what} within ${Duration.format(timeout)}`,
              hint: "its runner died or froze: the cluster moves the signer to another runner of R3MES_FLEET_SIGNERS " +
                "within R3MES_FLEET_LEASE; check that one of them runs"
            })
          )
      }),
      Effect.mapError((error) =>
        isMiningError(error) ? error : new RetryableError({
          message: `the account's signer could not be reached for ${what}`,
          hint: "the cluster is moving it between runners, or its runner is unreachable on its R3MES_FLEET_ADDRESS",
          cause: error instanceof Error ? error.message : String(error)
        })
      )
    )
  const remote: AccountSigning = {
    lend: (call: CallToSign) =>
      reached(
        `a ${call.functionName}`,
        client.Lend({
          functionName: call.functionName,
          data: call.data,
          gas: call.gas === undefined ? undefined : call.gas.toString(),
          idempotent: call.idempotent
        })
      ),
    release: (signed) => reached(`the release of nonce ${signed.nonce}`, client.Release({ signed })),
    refused: (signed) => reached(`the refusal of nonce ${signed.nonce}`, client.Refused({ signed })),
    fillGapBelow: (nonce) => reached(`a gap fill below nonce ${nonce}`, client.FillGapBelow({ nonce }))
  }
  return remote
}

/** The entity on this runner, serving `local`. */
export const accountSignerLayer = (local: LocalAccountSigner["Service"]) =>
  accountSignerEntityLayer.pipe(Layer.provide(Layer.succeed(LocalAccountSigner, local)))
