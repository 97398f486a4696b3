/**
 * Entry of a proof-of-work worker thread (started by WorkerPowSolver.ts; runs under Node's type stripping). It picks
 * its engine once (the native addon if loadable, else the TypeScript searcher), says "ready", then runs jobs: claims
 * batches from the shared control block until the range ends, a lower batch has a hit, or the job is stopped, and
 * reports its hashes and its smallest hit. See powWorkerProtocol.ts for why the result is the reference solver's.
 */
import { parentPort, workerData } from "node:worker_threads"
import { makePowSearcher, type PowSearcher } from "../../domain/pow.ts"
import { loadNativePowAddon } from "./nativePowAddon.ts"
import {
  controlViews,
  LOWEST_HIT,
  NEXT_BATCH,
  type PowEngine,
  type PowJob,
  type PowWorkerConfig,
  type PowWorkerMessage,
  STOP
} from "./powWorkerProtocol.ts"

type Search = (challenge: Uint8Array, from: bigint, to: bigint, difficulty: number) => bigint

const pickEngine = (config: PowWorkerConfig): { engine: PowEngine; search: Search; fallbackReason: string | undefined } => {
  let fallbackReason: string | undefined
  if (config.engine !== "typescript") {
    const load = loadNativePowAddon(config.addonPath)
    if (load._tag === "Loaded") {
      const addon = load.addon
      if (config.engine === "portable" || (config.engine === "sha-ni" && addon.shaNi) || config.engine === "auto") {
        const engine = config.engine === "auto" ? addon.engine : config.engine
        return { engine, search: (c, from, to, d) => addon.search(c, from, to, d, engine), fallbackReason: undefined }
      }
      fallbackReason = "this CPU has no SHA extensions"
      return {
        engine: "portable",
        search: (c, from, to, d) => addon.search(c, from, to, d, "portable"),
        fallbackReason
      }
    }
    fallbackReason = load.reason
  }
  let searcher: PowSearcher | undefined
  return {
    engine: "typescript",
    search: (c, from, to, d) => {
      if (searcher === undefined || !sameBytes(searcher.challenge, c)) searcher = makePowSearcher(c)
      return searcher.search(from, to, d)
    },
    fallbackReason
  }
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** Claims and searches batches; returns the hashes computed and the smallest hit (-1n when none). */
const run = (job: PowJob, search: Search): { hashes: number; nonce: bigint } => {
  const { batches, flags } = controlViews(job.control)
  let hashes = 0
  for (;;) {
    if (Atomics.load(flags, STOP) !== 0) return { hashes, nonce: -1n }
    const batch = Atomics.add(batches, NEXT_BATCH, 1n)
    if (batch > Atomics.load(batches, LOWEST_HIT)) return { hashes, nonce: -1n }
    const from = job.start + batch * job.batchSize
    if (from > job.last) return { hashes, nonce: -1n }
    const to = job.last - from < job.batchSize ? job.last : from + job.batchSize - 1n
    const nonce = search(job.challenge, from, to, job.difficulty)
    if (nonce < 0n) {
      hashes += Number(to - from + 1n)
      continue
    }
    hashes += Number(nonce - from + 1n)
    let lowest = Atomics.load(batches, LOWEST_HIT)
    while (batch < lowest) {
      const seen = Atomics.compareExchange(batches, LOWEST_HIT, lowest, batch)
      if (seen === lowest) break
      lowest = seen
    }
    // Batches claimed after this one hold larger nonces only.
    return { hashes, nonce }
  }
}

const port = parentPort
if (port === null) throw new Error("powWorker.ts is a worker thread entry: start it with new Worker(…)")

const { engine, search, fallbackReason } = pickEngine(workerData as PowWorkerConfig)
const post = (message: PowWorkerMessage): void => port.postMessage(message)

port.on("message", (job: PowJob) => {
  try {
    const { hashes, nonce } = run(job, search)
    post({ type: "done", id: job.id, hashes, nonce: nonce < 0n ? null : nonce })
  } catch (cause) {
    post({ type: "failed", id: job.id, hashes: 0, message: cause instanceof Error ? cause.message : String(cause) })
  }
})
post({ type: "ready", engine, fallbackReason })
