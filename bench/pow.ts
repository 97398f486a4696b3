/**
 * Proof-of-work hashing rates, in one run (~30 s): the fast solver (worker threads on every core, native addon with
 * the SHA extensions / portable C, and TypeScript workers), next to node:crypto (OpenSSL) hashing the same 40-byte
 * messages challenge ‖ nonce one at a time and the reference solver (pure TypeScript, one thread); then the
 * distribution of 20-bit solve times on the fast solver; then how a search shares the machine (timers next to the
 * reference solver, interrupt latency of both solvers, CPU time once the pool is interrupted). Writes
 * bench/results/pow.json.
 *
 *   npm run bench:pow
 *
 * Each rate is the median of three timed passes after a warm-up. Figures, not assertions: tests never time.
 *
 * Absolute rates on a shared machine swing threefold between runs, so the per-core rate is also given as a ratio to
 * what OpenSSL does on the same core in the same run: its single-stream SHA-256 rate in 64-byte blocks per second,
 * node:crypto (OpenSSL inside Node) hashing a 64 MiB buffer in one update, measured before and after the solvers
 * (the median of both counts). A PoW message is 40 bytes, which with its padding (0x80, zeros, the 8-byte length)
 * is exactly one 64-byte block: one PoW hash is one run of the SHA-256 compression function, as is one block of
 * the bulk stream. So `per_core_ratio_to_openssl_sha256_blocks` = PoW hashes per second per core ÷ OpenSSL blocks per
 * second on one core: 1.0 means the solver compresses as fast as OpenSSL's best loop; it may pass 1 since the first
 * 32 bytes of every message are the same (part of the message schedule is constant) and a search needs no digest
 * bytes, no padding and no API call per hash; far below 1 means the solver leaves the hardware's SHA speed unused.
 * The per-core rate divides the total of all worker threads by their number, so a busy machine lowers it more than
 * it lowers one stream: the one-thread ratio is printed next to it. `openssl speed -evp sha256` (the OpenSSL
 * binary, wall-clock, 16 KiB buffers) is printed as a cross-check when the binary exists.
 */
import { Effect, Fiber } from "effect"
import { spawnSync } from "node:child_process"
import { createHash, hash as oneShotHash, randomFillSync } from "node:crypto"
import { mkdirSync, writeFileSync } from "node:fs"
import { availableParallelism, cpus } from "node:os"
import { bytesToHex, challenge, makePowSearcher, solveReference, type SolveInput } from "../src/domain/pow.ts"
import { loadNativePowAddon } from "../src/layers/pow/nativePowAddon.ts"
import {
  makePowWorkerPool,
  type PowEngine,
  type PowEngineRequest,
  type PowWorkerPool
} from "../src/layers/pow/WorkerPowSolver.ts"

const input: SolveInput = {
  chainId: 31337,
  registry: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
  miner: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
  roundId: 42n,
  chunkId: 7,
  gradientHash: "0x1b6a3443f30a8adc08c12490d5b12cbe9a8590f6c76b73a15cdb3ac880eb7cc4",
  cid: "QmSKtdHEsfahQnRsP5MkQ6xWG1Jah2xAzVAj2SkpcAgoSx",
  // Nothing in the measured ranges reaches 64 zero bits: every nonce is hashed.
  difficulty: 64
}
const c = challenge(input)
const cores = availableParallelism()

/** Hashes per second of `run(from, count)`, median of three passes after a warm-up pass. */
const measure = async (count: number, run: (from: number, count: number) => Promise<void> | void): Promise<number> => {
  await run(0, Math.ceil(count / 4))
  const rates: Array<number> = []
  for (let pass = 0; pass < 3; pass++) {
    const started = performance.now()
    await run((pass + 1) * count, count)
    rates.push(count / ((performance.now() - started) / 1000))
  }
  return rates.sort((a, b) => a - b)[1]!
}

const message = Buffer.alloc(40)
message.set(c)
const setNonce = (n: number): void => {
  message.writeUInt32BE(Math.floor(n / 2 ** 32), 32)
  message.writeUInt32BE(n >>> 0, 36)
}

const nodeCreateHash = (from: number, count: number): void => {
  for (let n = from; n < from + count; n++) {
    setNonce(n)
    createHash("sha256").update(message).digest()
  }
}

const nodeOneShot = (from: number, count: number): void => {
  for (let n = from; n < from + count; n++) {
    setNonce(n)
    oneShotHash("sha256", message, "buffer")
  }
}

/** 64 MiB, touched before timing (a first touch of fresh pages costs more than hashing them here). */
const bulk = randomFillSync(Buffer.alloc(64 << 20))

/** OpenSSL's single-stream SHA-256 rate, in 64-byte blocks per second: node:crypto over 64 MiB in one update. */
const opensslBlocksPerSecond = async (): Promise<number> => {
  const bytesPerSecond = await measure(bulk.length, () => {
    createHash("sha256").update(bulk).digest()
  })
  return bytesPerSecond / 64
}

/** The same from the `openssl` binary (`openssl speed -evp sha256`, 16 KiB buffers, 2 s, wall clock), if present. */
const opensslSpeedBlocksPerSecond = (): { readonly blocks: number } | { readonly unavailable: string } => {
  const run = spawnSync("openssl", ["speed", "-evp", "sha256", "-bytes", "16384", "-seconds", "2", "-elapsed", "-mr"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"]
  })
  if (run.error !== undefined) return { unavailable: `no openssl binary (${run.error.message})` }
  // Machine-readable result line: +F:<n>:sha256:<bytes per second for each buffer size asked>
  const line = run.stdout.split("\n").find((l) => l.startsWith("+F:"))
  const bytesPerSecond = Number(line?.split(":")[3])
  return Number.isFinite(bytesPerSecond) && bytesPerSecond > 0
    ? { blocks: bytesPerSecond / 64 }
    : { unavailable: `openssl speed gave no rate (exit ${run.status}): ${run.stderr.trim().split("\n")[0] ?? ""}` }
}

const searcher = makePowSearcher(c)
const searcherOnly = (from: number, count: number): void => {
  searcher.search(BigInt(from), BigInt(from + count - 1), input.difficulty)
}

// The whole solver: batches of 4096 with a scheduler yield between them; the range runs out (ResourceError).
const referenceSolver = (from: number, count: number): Promise<void> =>
  Effect.runPromise(
    solveReference(input, { startNonce: BigInt(from), maxNonce: BigInt(from + count - 1) }).pipe(
      Effect.flip,
      Effect.flatMap((error) =>
        error._tag === "ResourceError" ? Effect.void : Effect.die(`unexpected ${error._tag}: ${error.message}`)
      )
    )
  )

// The specialised hash and OpenSSL must agree before their speeds mean anything.
for (const nonce of [0, 1, 4096, 2 ** 32 + 7]) {
  setNonce(nonce)
  const expected = createHash("sha256").update(message).digest("hex")
  if (bytesToHex(searcher.hash(BigInt(nonce))) !== `0x${expected}`) throw new Error(`pow hash mismatch at ${nonce}`)
}

/** A pool's search rate over `seconds` of hashing per pass (sized from a quick probe). */
const poolRate = async (pool: PowWorkerPool, seconds: number): Promise<number> => {
  const search = (from: number, count: number) =>
    Effect.runPromise(pool.search(c, BigInt(from), BigInt(from + count - 1), input.difficulty).pipe(Effect.asVoid))
  const probeCount = pool.batchSize * pool.threads * 8
  const probeStart = performance.now()
  await search(2 ** 40, probeCount)
  const probe = probeCount / ((performance.now() - probeStart) / 1000)
  return measure(Math.ceil(probe * seconds), search)
}

interface PoolFigures {
  readonly engine: PowEngine
  readonly threads: number
  readonly total: number
  readonly single: number | undefined
}

/** Rate on every core, and on one thread (for the scaling), of one engine; undefined when it is not available. */
const poolFigures = (engine: PowEngineRequest, seconds: number, alsoSingle: boolean): Promise<PoolFigures | undefined> =>
  Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      const pool = yield* makePowWorkerPool({ engine })
      if (engine !== "auto" && pool.engine !== engine) return undefined
      const total = yield* Effect.promise(() => poolRate(pool, seconds))
      let single: number | undefined
      if (alsoSingle && pool.threads > 1) {
        single = yield* Effect.scoped(
          makePowWorkerPool({ engine, threads: 1 }).pipe(
            Effect.flatMap((one) => Effect.promise(() => poolRate(one, seconds)))
          )
        )
      }
      return { engine: pool.engine, threads: pool.threads, total, single }
    }))
  )

/** 20 solves at 20 bits on the fast solver, each a different challenge: times in ms and hashes. */
const pow20 = (): Promise<{ readonly ms: Array<number>; readonly hashes: Array<number>; readonly engine: PowEngine }> =>
  Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      const pool = yield* makePowWorkerPool()
      yield* pool.solve({ ...input, difficulty: 16 })
      const ms: Array<number> = []
      const hashes: Array<number> = []
      for (let i = 0; i < 20; i++) {
        const started = performance.now()
        const solution = yield* pool.solve({ ...input, chunkId: 1000 + i, difficulty: 20 })
        ms.push(performance.now() - started)
        hashes.push(solution.hashes)
      }
      return { ms, hashes, engine: pool.engine }
    }))
  )

/**
 * How a search shares the machine (test/pow*.test.ts check the behaviour, untimed): ten 10 ms sleeps of another
 * fiber next to a difficulty-40 reference search, the time an interrupt of that search takes, the same for the
 * worker pool after 200 ms of hashing, and the process's CPU time in the 300 ms after it (idle workers hash nothing).
 */
const lifecycle = (): Promise<{
  readonly ticksMs: number
  readonly referenceInterruptMs: number
  readonly fastInterruptMs: number
  readonly idleCpuMs: number
}> =>
  Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      const reference = yield* Effect.forkChild(solveReference({ ...input, difficulty: 40 }))
      const ticking = performance.now()
      for (let tick = 0; tick < 10; tick++) yield* Effect.sleep("10 millis")
      const ticksMs = performance.now() - ticking
      const interrupting = performance.now()
      yield* Fiber.interrupt(reference)
      const referenceInterruptMs = performance.now() - interrupting
      const pool = yield* makePowWorkerPool()
      const fastSolve = yield* Effect.forkChild(pool.solve({ ...input, difficulty: 40 }))
      yield* Effect.sleep("200 millis")
      const interruptingFast = performance.now()
      yield* Fiber.interrupt(fastSolve)
      const fastInterruptMs = performance.now() - interruptingFast
      const cpuBefore = process.cpuUsage()
      yield* Effect.sleep("300 millis")
      const used = process.cpuUsage(cpuBefore)
      return { ticksMs, referenceInterruptMs, fastInterruptMs, idleCpuMs: (used.user + used.system) / 1000 }
    }))
  )

/** TypeScript workers are shown on their own line unless "auto" already was TypeScript (no addon). */
const unlessSameEngine = (figures: PoolFigures | undefined, other: PoolFigures | undefined): PoolFigures | undefined =>
  figures !== undefined && other !== undefined && figures.engine === other.engine ? undefined : figures

const native = loadNativePowAddon()
const opensslBefore = await opensslBlocksPerSecond()
const fast = await poolFigures("auto", 1, true)
const opensslAfter = await opensslBlocksPerSecond()
const opensslSpeed = opensslSpeedBlocksPerSecond()
const portable = native._tag === "Loaded" && native.addon.shaNi ? await poolFigures("portable", 1, false) : undefined
const tsWorkers = await poolFigures("typescript", 1, true)
const reference = await measure(4_000_000, referenceSolver)
const core = await measure(4_000_000, searcherOnly)
const node = await measure(600_000, nodeCreateHash)
const nodeHash = await measure(600_000, nodeOneShot)
const distribution = await pow20()
const sharing = await lifecycle()

const row = (label: string, value: string, extra = "") => console.log(`  ${label.padEnd(62)}${value.padStart(12)}  ${extra}`)
const mhs = (rate: number) => `${(rate / 1e6).toFixed(2)} MH/s`
const label = (engine: PowEngine) => (engine === "typescript" ? "TypeScript workers" : `native ${engine}`)
const nodeBest = Math.max(node, nodeHash)
const opensslBlocks = (opensslBefore + opensslAfter) / 2

console.log(`PoW hashing — Node ${process.version}, ${cpus()[0]?.model ?? "unknown CPU"}, ${cores} cores`)
if (native._tag === "Unavailable") console.log(`  (native addon unavailable: ${native.reason})`)
for (const figures of [fast, portable, unlessSameEngine(tsWorkers, fast)]) {
  if (figures === undefined) continue
  const name = `fast solver, ${label(figures.engine)}`
  row(`${name}: total on ${figures.threads} threads`, mhs(figures.total))
  const perCore = figures.total / figures.threads
  row(`${name}: per core (total / ${figures.threads})`, mhs(perCore), `${(perCore / nodeBest).toFixed(1)}× node:crypto`)
  if (figures.single !== undefined) {
    const scaling = `scaling ×${(figures.total / figures.single).toFixed(2)} on ${figures.threads}`
    row(`${name}: one thread`, mhs(figures.single), scaling)
  }
}
const bestFigures = fast ?? tsWorkers!
const perCoreRatio = bestFigures.total / bestFigures.threads / opensslBlocks
const singleRatio = bestFigures.single === undefined ? undefined : bestFigures.single / opensslBlocks
row(
  "OpenSSL SHA-256 one stream, 64-byte blocks (node:crypto)",
  mhs(opensslBlocks),
  `${mhs(opensslBefore)} before, ${mhs(opensslAfter)} after the fast solver (OpenSSL ${process.versions.openssl})`
)
row(
  "openssl speed -evp sha256, 64-byte blocks (binary)",
  "blocks" in opensslSpeed ? mhs(opensslSpeed.blocks) : "-",
  "unavailable" in opensslSpeed ? opensslSpeed.unavailable : ""
)
row(
  `fast solver per core ÷ OpenSSL blocks (${label(bestFigures.engine)})`,
  `${perCoreRatio.toFixed(2)}×`,
  singleRatio === undefined ? "" : `one thread: ${singleRatio.toFixed(2)}×`
)
row("reference solver (solveReference: batches + yields, 1 thread)", mhs(reference))
row("reference hash loop alone (PowSearcher.search)", mhs(core))
row("node:crypto createHash('sha256'), one per message", mhs(node))
row("node:crypto hash('sha256') one-shot, one per message", mhs(nodeHash))

const sorted = [...distribution.ms].sort((a, b) => a - b)
const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!
const meanHashes = distribution.hashes.reduce((a, b) => a + b, 0) / distribution.hashes.length
console.log(
  `  20-bit PoW on the fast solver (${label(distribution.engine)}), 20 solves: ` +
    `min ${sorted[0]!.toFixed(1)} ms, p50 ${at(0.5).toFixed(1)} ms, p95 ${at(0.95).toFixed(1)} ms, ` +
    `max ${sorted[sorted.length - 1]!.toFixed(1)} ms (mean ${(meanHashes / 1e6).toFixed(2)} M hashes)`
)

console.log(
  `  next to a difficulty-40 reference search, ten 10 ms sleeps of another fiber took ${sharing.ticksMs.toFixed(1)} ms; ` +
    `interrupting it took ${sharing.referenceInterruptMs.toFixed(1)} ms`
)
console.log(
  `  interrupting the fast solver after 200 ms took ${sharing.fastInterruptMs.toFixed(1)} ms; ` +
    `CPU time in the 300 ms after: ${sharing.idleCpuMs.toFixed(0)} ms (all threads)`
)

const best = bestFigures
const ratio = (value: number) => Math.round(value * 1000) / 1000
const result = {
  solver: `${label(best.engine)} on ${best.threads} worker threads`,
  cores: best.threads,
  hashes_per_second_per_core: Math.round(best.total / best.threads),
  hashes_per_second_total: Math.round(best.total),
  // One PoW hash = one SHA-256 block; see the comment at the top of this file.
  per_core_ratio_to_openssl_sha256_blocks: ratio(perCoreRatio),
  single_thread_ratio_to_openssl_sha256_blocks: singleRatio === undefined ? null : ratio(singleRatio),
  openssl_sha256_blocks_per_second: Math.round(opensslBlocks),
  openssl_version: process.versions.openssl,
  openssl_speed_sha256_blocks_per_second: "blocks" in opensslSpeed ? Math.round(opensslSpeed.blocks) : null,
  baseline_node_crypto_per_second: Math.round(nodeBest),
  reference_solver_per_second: Math.round(reference),
  typescript_workers_per_second_total: tsWorkers === undefined ? null : Math.round(tsWorkers.total),
  ticks_next_to_reference_search_ms: Math.round(sharing.ticksMs * 10) / 10,
  reference_interrupt_ms: Math.round(sharing.referenceInterruptMs * 10) / 10,
  fast_interrupt_ms: Math.round(sharing.fastInterruptMs * 10) / 10,
  cpu_ms_300ms_after_fast_interrupt: Math.round(sharing.idleCpuMs),
  pow20_ms: Object.fromEntries(
    Object.entries({ min: sorted[0]!, p50: at(0.5), p95: at(0.95), max: sorted[sorted.length - 1]! }).map((
      [k, v]
    ) => [k, Math.round(v * 10) / 10])
  )
}
const resultsDir = new URL("./results/", import.meta.url)
mkdirSync(resultsDir, { recursive: true })
writeFileSync(new URL("pow.json", resultsDir), `${JSON.stringify(result, null, 2)}\n`)
console.log(`  wrote bench/results/pow.json`)
