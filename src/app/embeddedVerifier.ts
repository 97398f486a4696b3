import { Context, Duration, Effect, Fiber, Layer, PubSub, Redacted } from "effect"
import type { Scope } from "effect"
import type { MiningError } from "../domain/errors.ts"
import type { MinerConfig } from "../domain/MinerConfig.ts"
import { transactionKey } from "../domain/mining.ts"
import { type VerdictName, verdictName } from "../domain/verification.ts"
import type { RunningDevnet } from "../layers/chain/devnet/Devnet.ts"
import { Chain } from "../services/Chain.ts"
import type { GradientStore } from "../services/GradientStore.ts"
import { Journal } from "../services/Journal.ts"
import { Settings } from "../services/Settings.ts"
import { type RecordedVerdict, Verifier } from "../services/Verifier.ts"
import { chainLayer, trainerLayer } from "./adapters.ts"

/** A verdict on one of this miner's transactions, for its live output. */
export interface TransactionVerdict {
  readonly transactionId: string | undefined
  readonly roundId: bigint
  readonly chunkId: number
  readonly verdict: VerdictName
  readonly reason: string
}

export interface EmbeddedVerifier {
  readonly verifier: Verifier["Service"]
  /** Its verdict on a chunk, as the chain holds it (undefined while none, or when the chain cannot answer now). */
  readonly verdictOf: (roundId: bigint, chunkId: number) => Effect.Effect<string | undefined>
  /** Starts following the chain (once the miner has recovered: its output comes first). */
  readonly follow: Effect.Effect<void>
  /** Verdicts on this miner's transactions so far, by name. */
  readonly verdicts: () => Readonly<Partial<Record<VerdictName, number>>>
  /**
   * Judges what is left up to the chain's head (bounded by `within`), so a run of N transactions ends with their
   * verdicts shown, then stops following.
   */
  readonly finish: (within: Duration.Input) => Effect.Effect<void>
}

/**
 * The embedded devnet's verifier (DESIGN.md "Verification"): the devnet's verifier account judging every
 * submission on the devnet beside the miner, on the miner's own store (it holds the content) and journal (its
 * cursor and journaled verdicts are meta keys of their own), with an honest trainer of its own. A verifier that
 * fails for good (e.g. its account lost the role) is logged and mining goes on.
 */
export const startEmbeddedVerifier = Effect.fn("startEmbeddedVerifier")(function*(
  config: MinerConfig,
  devnet: RunningDevnet,
  ports: { readonly journal: Context.Context<Journal>; readonly store: Context.Context<GradientStore> },
  onVerdict: (verdict: TransactionVerdict) => Effect.Effect<void>
): Effect.fn.Return<EmbeddedVerifier, MiningError, Scope.Scope | Chain> {
  const minerChain = yield* Chain
  const identity = yield* minerChain.identity
  const journal = Context.get(ports.journal, Journal)
  const chain = chainLayer({
    rpcUrl: devnet.rpcUrl,
    registry: devnet.registry,
    privateKey: Redacted.make(devnet.verifier.privateKey),
    devnet: true
  })
  const store = Layer.succeedContext(ports.store)
  const context = yield* Layer.build(
    Verifier.layer.pipe(Layer.provideMerge(Layer.mergeAll(
      chain,
      trainerLayer(config).pipe(Layer.provide(store)),
      store,
      Layer.succeedContext(ports.journal),
      Settings.layerOf(config)
    )))
  )
  const verifier = Context.get(context, Verifier)
  const verifierChain = Context.get(context, Chain)
  const verifierAddress = (yield* verifierChain.identity).miner

  const counts: Partial<Record<VerdictName, number>> = {}
  const ours = Effect.fnUntraced(function*(recorded: RecordedVerdict) {
    if (recorded.miner.toLowerCase() !== identity.miner.toLowerCase()) return
    counts[recorded.verdict] = (counts[recorded.verdict] ?? 0) + 1
    const record = yield* journal.findByKey(transactionKey(identity, recorded)).pipe(Effect.orElseSucceed(() => undefined))
    yield* onVerdict({ ...recorded, transactionId: record?.transaction_id })
  })
  const subscription = yield* verifier.verdicts
  const drain = Effect.gen(function*() {
    const waiting = yield* PubSub.remaining(subscription)
    for (const recorded of yield* PubSub.takeUpTo(subscription, waiting)) yield* ours(recorded)
  })
  const shown = yield* Effect.forkScoped(Effect.forever(PubSub.take(subscription).pipe(Effect.flatMap(ours))))
  const scope = yield* Effect.scope
  let following: Fiber.Fiber<void> | undefined
  return {
    verifier,
    follow: Effect.suspend(() => {
      if (following !== undefined) return Effect.void
      return verifier.run.pipe(
        Effect.catch((error) => Effect.logWarning(`the embedded verifier stopped: ${error.message}; mining goes on`)),
        Effect.forkIn(scope),
        Effect.map((fiber) => void (following = fiber))
      )
    }),
    verdicts: () => ({ ...counts }),
    verdictOf: (roundId, chunkId) =>
      verifierChain.getVerdict(roundId, chunkId, verifierAddress).pipe(
        Effect.map((found) => (found._tag === "Some" ? verdictName(found.value.verdict) ?? String(found.value.verdict) : undefined)),
        Effect.orElseSucceed(() => undefined)
      ),
    finish: (within) =>
      Effect.gen(function*() {
        if (following !== undefined) yield* Fiber.interrupt(following)
        yield* verifier.runOnce.pipe(
          Effect.timeout(within),
          Effect.catch((error) => Effect.logWarning(`the embedded verifier's last pass did not finish: ${String(error)}`))
        )
        yield* Fiber.interrupt(shown)
        yield* drain
      })
  } satisfies EmbeddedVerifier
})
