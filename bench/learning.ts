/**
 * Does the network's useful work train a model? The whole miner (`runMiner`, as `npm start` runs it: embedded
 * devnet with its round coordinator and verifier, embedded Helia, ONNX trainer) mines R learning rounds of the
 * default spec (8 chunks each) in a fresh data dir; the finalized rounds' test accuracy on the held-out split is read
 * back from the chain. In the same run, the same model is trained centrally on the same examples in the same order
 * (plain SGD, the spec's lr and batch size, the same total steps: every chunk's 10 steps, one after the other), and
 * the ratio of the final test accuracies is the figure. Then the same mining again with the verifier off and 20%
 * of the chunks (every fifth, as 20% of the miners would) submitting a dishonest gradient — the honest one flipped
 * and scaled ×100, which moves a plain mean 100 honest gradients the wrong way — to show what robust aggregation
 * (clip to the median norm, trimmed mean) holds back alone. Writes bench/results/learning.json.
 *
 *   npm run bench:learning [-- --rounds 30 --keep]
 *
 * Figures, not assertions: tests never time.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { Context, Effect, Layer, Option } from "effect"
import * as ort from "onnxruntime-node"
import { roundServices } from "../src/app/roundServices.ts"
import { runMiner } from "../src/app/runMiner.ts"
import { encodeEnvelope, decodeEnvelope, float32Bytes, float32Values } from "../src/domain/gradientEnvelope.ts"
import { minerConfig, settingsProvider } from "../src/domain/MinerConfigSchema.ts"
import type { MinerConfig } from "../src/domain/MinerConfig.ts"
import { TrainingResult } from "../src/domain/mining.ts"
import { chunkBatch, chunkExamples, heldOutTestIndices, MNIST } from "../src/domain/training/data.ts"
import { evaluateModel } from "../src/domain/training/evaluate.ts"
import { initialWeights, type ParameterValues, trainableParameters } from "../src/domain/training/model.ts"
import { canonicalRoundSpec, parseRoundSpec, type RoundSpecV2 } from "../src/domain/training/spec.ts"
import { loadMnist } from "../src/layers/onnx/MnistDigits.ts"
import { createSession, releaseSession, runSession } from "../src/layers/onnx/ortSession.ts"
import { trainingGraph } from "../src/layers/onnx/trainingGraphs.ts"
import { sha256Hex } from "../src/layers/sha256Hex.ts"
import { Chain } from "../src/services/Chain.ts"
import { RoundAggregator } from "../src/services/RoundAggregator.ts"
import { Trainer } from "../src/services/Trainer.ts"

const { values: args } = parseArgs({
  options: {
    rounds: { type: "string", default: "30" },
    "adversarial-fraction": { type: "string", default: "0.2" },
    keep: { type: "boolean", default: false }
  }
})
const rounds = Number(args.rounds)
const adversarialFraction = Number(args["adversarial-fraction"])
/** Chunks per learning round on the devnet (src/app/learningRounds.ts). */
const chunksPerRound = 8
const dishonestScale = -100

const configFor = (dataDir: string): Effect.Effect<MinerConfig, unknown> =>
  minerConfig.parse(settingsProvider({
    env: {},
    overrides: {
      R3MES_DATA_DIR: dataDir,
      R3MES_LOG_FILE: join(dataDir, "miner.log"),
      R3MES_STATS_PORT: "0",
      // The proof of work is not what is measured here.
      R3MES_POW_DIFFICULTY: "16"
    }
  }))

/** A trainer that submits the honest gradient flipped and scaled on the chunks `dishonest` picks. */
const dishonestTrainer = (dishonest: (roundId: bigint, chunkId: number) => boolean) =>
  Layer.effect(
    Trainer,
    Effect.gen(function*() {
      const honest = yield* Trainer
      return Trainer.of({
        profile: honest.profile,
        train: (task, miner, reproduce) =>
          Effect.gen(function*() {
            const result = yield* honest.train(task, miner, reproduce)
            if (!dishonest(task.roundId, task.chunkId)) return result
            const { header, tensors } = yield* decodeEnvelope(result.envelope)
            const flipped = tensors.map((t) => float32Bytes(float32Values(t).map((v) => v * dishonestScale)))
            const envelope = yield* encodeEnvelope(header, flipped)
            return new TrainingResult({ ...result, envelope, gradientHash: sha256Hex(envelope) })
          })
      })
    })
  )

interface RoundFigure {
  readonly round: string
  readonly accepted: number
  readonly rejected: number
  readonly test_accuracy: number
  readonly test_loss: number | null
}

/** Mines `rounds` learning rounds in a fresh data dir; the finalized rounds as the chain records them, and their specs. */
const mine = (label: string, options: { readonly verifier: boolean; readonly dishonest?: (roundId: bigint, chunkId: number) => boolean }) =>
  Effect.gen(function*() {
    const dataDir = mkdtempSync(join(tmpdir(), `r3mes-bench-learning-${label}-`))
    const config = yield* configFor(dataDir)
    const started = performance.now()
    const dishonest = options.dishonest
    const run = yield* runMiner(config, {
      iterations: rounds * chunksPerRound,
      embeddedVerifier: options.verifier,
      ...(dishonest === undefined
        ? {}
        : { adapters: (a) => ({ ...a, trainer: dishonestTrainer(dishonest).pipe(Layer.provide(a.trainer)) }) })
    })
    const seconds = (performance.now() - started) / 1000
    const figures = yield* Effect.scoped(Effect.gen(function*() {
      const context = yield* roundServices(config)
      const chain = Context.get(context, Chain)
      const aggregator = Context.get(context, RoundAggregator)
      const onChain = (yield* chain.rounds).filter((r) => r.roundId <= BigInt(rounds))
      const specs: Array<RoundSpecV2> = []
      const perRound: Array<RoundFigure> = []
      for (const round of onChain) {
        const spec = yield* parseRoundSpec(round.spec)
        if (spec.version !== 2) continue
        specs.push(spec)
        const summary = yield* aggregator.summary(round)
        if (Option.isNone(summary.finalization)) continue
        perRound.push({
          round: round.roundId.toString(),
          accepted: summary.finalization.value.acceptedCount,
          rejected: summary.rejected,
          test_accuracy: summary.finalization.value.testAccuracyPpm / 1e6,
          test_loss: Option.match(summary.test, { onNone: () => null, onSome: (t) => t.loss })
        })
      }
      return { specs, perRound }
    }))
    if (args.keep) console.log(`${label}: kept ${dataDir}`)
    else rmSync(dataDir, { recursive: true, force: true })
    console.log(
      `${label}: ${run.summary.transactions} transactions, ${figures.perRound.length} rounds finalized in ${seconds.toFixed(0)} s`
    )
    return { ...figures, seconds }
  })

/**
 * Centralised training of the same model on the same examples in the same order: every round's chunks in chunk
 * order, each chunk's `steps` batches, plain SGD from the first round's initial weights (w ← fround(w − lr · g), as
 * the trainer steps). Test accuracy after each round's worth of examples.
 */
const centralised = (specs: ReadonlyArray<RoundSpecV2>) =>
  Effect.gen(function*() {
    const first = specs[0]!
    const dataset = yield* loadMnist()
    const graph = trainingGraph(first.model)
    const session = yield* createSession(graph.onnx)
    const weights = new Map<string, ParameterValues>(initialWeights(first))
    const trainable = trainableParameters(first.model)
    const accuracy: Array<number> = []
    let loss = Number.NaN
    for (const spec of specs) {
      for (let chunkId = 0; chunkId < chunksPerRound; chunkId++) {
        const examples = chunkExamples(spec, chunkId, dataset.count)
        for (let step = 0; step < spec.steps; step++) {
          const batch = chunkBatch(dataset, examples, step, spec.batch_size)
          const feeds: Record<string, ort.Tensor> = {
            x: new ort.Tensor("float32", batch.x, [batch.size, MNIST.features]),
            y: new ort.Tensor("float32", batch.y, [batch.size, MNIST.classes])
          }
          for (const p of graph.parameters) {
            feeds[p.name] = new ort.Tensor("float32", Float32Array.from(weights.get(p.name)!), [...p.shape])
          }
          const out = yield* runSession(session, feeds)
          for (const p of trainable) {
            const w = weights.get(p.name) as Float32Array
            const g = out[graph.gradientOutputs.get(p.name)!]!.data as Float32Array
            for (let i = 0; i < w.length; i++) w[i] = w[i]! - spec.lr * g[i]!
          }
        }
      }
      const test = evaluateModel(first.model, weights, dataset, heldOutTestIndices())
      accuracy.push(test.accuracy)
      loss = test.loss
    }
    yield* releaseSession(session)
    return { accuracy, loss }
  })

const main = Effect.gen(function*() {
  console.log(`learning rounds: ${rounds} rounds × ${chunksPerRound} chunks, the devnet's default spec`)
  const honest = yield* mine("federated", { verifier: true })
  const central = yield* centralised(honest.specs.slice(0, rounds))
  const step = Math.round(1 / adversarialFraction)
  const adversarial = yield* mine("adversarial", {
    verifier: false,
    // Every `step`-th chunk of the run: `adversarialFraction` of the work, spread over the rounds.
    dishonest: (roundId, chunkId) => ((Number(roundId) - 1) * chunksPerRound + chunkId) % step === 0
  })

  const federatedAccuracy = honest.perRound.map((r) => r.test_accuracy)
  const final = federatedAccuracy.at(-1) ?? 0
  const centralFinal = central.accuracy.at(-1) ?? 0
  const firstAbove90 = federatedAccuracy.findIndex((a) => a >= 0.9)
  console.log("\nround  federated  centralised  adversarial (verifier off, 20% dishonest)")
  for (let i = 0; i < honest.perRound.length; i++) {
    const pct = (a: number | undefined) => (a === undefined ? "-" : `${(a * 100).toFixed(2)}%`).padStart(9)
    console.log(
      `${String(i + 1).padStart(5)}  ${pct(federatedAccuracy[i])}  ${pct(central.accuracy[i]).padStart(11)}  ${pct(adversarial.perRound[i]?.test_accuracy)}`
    )
  }
  const ratio = final / centralFinal
  console.log(
    `\nfinal test accuracy: federated ${(final * 100).toFixed(2)}%, centralised ${(centralFinal * 100).toFixed(2)}% ` +
      `(ratio ${ratio.toFixed(4)}); ≥ 90% from round ${firstAbove90 < 0 ? "never" : firstAbove90 + 1}; ` +
      `adversarial ${((adversarial.perRound.at(-1)?.test_accuracy ?? 0) * 100).toFixed(2)}%`
  )

  const result = {
    spec: JSON.parse(canonicalRoundSpec(honest.specs[0]!)) as unknown,
    rounds,
    chunks_per_round: chunksPerRound,
    accuracy_per_round: federatedAccuracy,
    loss_per_round: honest.perRound.map((r) => r.test_loss),
    first_round_at_or_above_90: firstAbove90 < 0 ? null : firstAbove90 + 1,
    final_test_accuracy: final,
    centralised_accuracy_per_round: central.accuracy,
    centralised_test_accuracy: centralFinal,
    accuracy_ratio: ratio,
    adversarial: {
      fraction: adversarialFraction,
      attack: `honest pseudo-gradient × ${dishonestScale}`,
      verifier: false,
      accuracy_per_round: adversarial.perRound.map((r) => r.test_accuracy),
      final_test_accuracy: adversarial.perRound.at(-1)?.test_accuracy ?? null
    },
    seconds: { federated: honest.seconds, adversarial: adversarial.seconds },
    measured_at: new Date().toISOString()
  }
  mkdirSync(join(import.meta.dirname, "results"), { recursive: true })
  writeFileSync(join(import.meta.dirname, "results", "learning.json"), `${JSON.stringify(result, null, 2)}\n`)
  console.log("wrote bench/results/learning.json")
})

Effect.runPromise(main).catch((e) => {
  console.error(e)
  process.exit(1)
})
