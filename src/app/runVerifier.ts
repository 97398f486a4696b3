import { Effect, Layer, Option, Redacted } from "effect"
import type { MinerConfig } from "../domain/MinerConfig.ts"
import { redactUrl } from "../domain/redaction.ts"
import { VerifierApi } from "../layers/http/VerifierApi.ts"
import { Settings } from "../services/Settings.ts"
import { Verifier } from "../services/Verifier.ts"
import { crashPointsFromEnv, verifierCrashPointNames, withVerifierCrashPoints } from "../testing/CrashPoints.ts"
import { sharedDeviceSelection } from "../layers/onnx/devices.ts"
import { chainLayer, gradientStoreLayer, journalLayer, trainerLayer } from "./adapters.ts"
import { chainEndpoint } from "./chainEndpoint.ts"

export interface RunVerifierOptions {
  /** Judge every submission up to the chain's head, then return (`verify --once`); else follow until interrupted. */
  readonly once: boolean
  /** Called once the verifier is up, with the chain it verifies on and where its monitoring API listens. */
  readonly onStarted?: (started: {
    readonly rpcUrl: string
    readonly registry: string
    readonly devnet: boolean
    readonly statsUrl: string
  }) => Effect.Effect<void>
}

/**
 * `r3mes-miner verify` as an effect: the Verifier on the production adapters. Its journal locks the data dir (a
 * verifier and a miner need a data dir each). On the data dir's own devnet the key is the devnet's verifier account
 * unless R3MES_PRIVATE_KEY names another.
 */
export const runVerifier = Effect.fn("runVerifier")(
  function*(config: MinerConfig, options: RunVerifierOptions) {
    // Test hook (chaos test): R3MES_CRASH_AT=POINT[:N] makes the verifier SIGKILL itself at one of its crash points;
    // a mining transaction's point is refused here, before anything starts.
    const crashPoints = yield* crashPointsFromEnv(process.env, verifierCrashPointNames)
    // The compute device first: an explicit one that cannot train stops the verifier before anything starts.
    yield* sharedDeviceSelection(config.device)
    const journal = yield* Layer.build(journalLayer(config.dataDir))
    const configured = yield* chainEndpoint(config)
    const endpoint = configured.embedded === undefined || Option.isSome(config.privateKey)
      ? configured
      : { ...configured, privateKey: Redacted.make(configured.embedded.verifier.privateKey) }
    const chain = chainLayer(endpoint)
    const ports = Layer.mergeAll(
      crashPoints === undefined ? chain : withVerifierCrashPoints(chain, crashPoints),
      trainerLayer(config).pipe(Layer.provideMerge(gradientStoreLayer(config))),
      Layer.succeedContext(journal),
      Settings.layerOf(config)
    )
    const verifierLayer = Verifier.layer.pipe(Layer.provideMerge(ports))
    return yield* Effect.gen(function*() {
      const verifier = yield* Verifier
      const api = yield* VerifierApi
      if (options.onStarted) {
        yield* options.onStarted({
          rpcUrl: redactUrl(endpoint.rpcUrl),
          registry: endpoint.registry,
          devnet: endpoint.devnet,
          statsUrl: api.url
        })
      }
      if (options.once) return yield* verifier.runOnce
      return yield* verifier.run
    }).pipe(Effect.provide(VerifierApi.layer.pipe(Layer.provideMerge(verifierLayer))))
  },
  Effect.scoped
)
