/**
 * One runner process of bench/fleet.ts: `r3mes-miner mine` as a fleet runner (every setting from the R3MES_*
 * variables, read as the CLI reads them), whose trainer is a simulated GPU: one training at a time, each taking
 * `--training-ms`. The real ONNX training runs inside that time (the gradients are real and pass every check); the
 * rest is slept, so the machine's two cores are not what a fleet of GPU machines would measure. Runs until
 * SIGTERM/SIGINT, which stop it as they stop `mine`.
 *
 *   node bench/fleetRunner.ts --training-ms 2000
 */
import { parseArgs } from "node:util"
import { Clock, Effect, Layer, Semaphore } from "effect"
import { runMiner } from "../src/app/runMiner.ts"
import { minerConfig, settingsProvider } from "../src/domain/MinerConfigSchema.ts"
import { FileLogger } from "../src/layers/telemetry/FileLogger.ts"
import { Trainer } from "../src/services/Trainer.ts"

const { values: args } = parseArgs({ options: { "training-ms": { type: "string", default: "2000" } } })
const trainingMs = Number(args["training-ms"])

/** The trainer behind one GPU: trainings queue for it, and each holds it for `trainingMs` at least. */
const simulatedGpu = <E, R>(real: Layer.Layer<Trainer, E, R>): Layer.Layer<Trainer, E, R> =>
  Layer.effect(
    Trainer,
    Effect.gen(function*() {
      const trainer = yield* Trainer
      const gpu = yield* Semaphore.make(1)
      return Trainer.of({
        ...trainer,
        train: (task, miner, reproduce) =>
          Semaphore.withPermit(
            gpu,
            Effect.gen(function*() {
              const started = yield* Clock.currentTimeMillis
              const result = yield* trainer.train(task, miner, reproduce)
              const left = trainingMs - ((yield* Clock.currentTimeMillis) - started)
              if (left > 0) yield* Effect.sleep(left)
              return result
            })
          )
      })
    })
  ).pipe(Layer.provide(real))

const config = await Effect.runPromise(minerConfig.parse(settingsProvider({ env: process.env, overrides: {} })))
const run = await Effect.runPromise(
  runMiner(config, {
    iterations: undefined,
    adapters: (adapters) => ({ ...adapters, trainer: simulatedGpu(adapters.trainer) })
  }).pipe(Effect.provide(FileLogger.layerFromConfig(config, { console: "stderr", consoleLevel: "Error" })))
)
process.stdout.write(`${JSON.stringify({ committed: run.summary.committed, transactions: run.summary.transactions })}\n`)
