import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Logger, Scope } from "effect"
import { randomBytes } from "node:crypto"
import { existsSync, readdirSync } from "node:fs"
import { bytesToHex, challenge, makePowSearcher, MAX_NONCE, powHash } from "../../src/domain/pow.ts"
import { loadNativePowAddon } from "../../src/layers/pow/nativePowAddon.ts"
import { FastPowSolver, makePowWorkerPool, type PowWorkerPool } from "../../src/layers/pow/WorkerPowSolver.ts"
import { PowSolver } from "../../src/services/PowSolver.ts"
import { powInputOf as inputOf, powVectors } from "../support/powVectors.ts"

const native = loadNativePowAddon()
const addon = native._tag === "Loaded" ? native.addon : undefined



/**
 * Pools under test. Small, odd batch sizes put many batch boundaries inside every search (and 3 threads on 2 cores
 * shuffle which worker gets which batch); "fallback" asks for the native engine with an addon path that does not
 * exist, the way a machine without a compiler runs.
 */
const poolOptions = {
  default: {},
  "small batches, 3 threads": { threads: 3, batchSize: 777 },
  ...(addon !== undefined ? { "native portable": { engine: "portable", batchSize: 4099 } } : {}),
  typescript: { engine: "typescript", batchSize: 333 },
  fallback: { addonPath: "/nonexistent/r3mes_pow.node", batchSize: 1000 }
} as const satisfies Record<string, Parameters<typeof makePowWorkerPool>[0]>

const pools = new Map<string, PowWorkerPool>()
const scope = Scope.makeUnsafe()

beforeAll(async () => {
  const made = await Effect.runPromise(
    Effect.forEach(Object.entries(poolOptions), ([name, options]) =>
      makePowWorkerPool(options).pipe(Effect.map((pool) => [name, pool] as const)), { concurrency: "unbounded" }).pipe(
        Scope.provide(scope)
      )
  )
  for (const [name, pool] of made) pools.set(name, pool)
}, 60_000)

afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)))

/** OS threads of this process (Linux), 0 where unknown. */
const osThreads = (): number => (existsSync("/proc/self/task") ? readdirSync("/proc/self/task").length : 0)

const pool = (name: string): PowWorkerPool => pools.get(name)!

describe("engines", () => {
  it("the default pool uses the native addon when it is built, with the SHA extensions when the CPU has them", () => {
    const p = pool("default")
    if (addon === undefined) {
      assert.strictEqual(p.engine, "typescript")
      assert.isDefined(p.fallbackReason)
    } else {
      assert.strictEqual(p.engine, addon.shaNi ? "sha-ni" : "portable")
      assert.isUndefined(p.fallbackReason)
    }
  })

  it("forcing TypeScript, or an addon that is missing, runs TypeScript workers", () => {
    assert.strictEqual(pool("typescript").engine, "typescript")
    assert.isUndefined(pool("typescript").fallbackReason)
    assert.strictEqual(pool("fallback").engine, "typescript")
    assert.match(pool("fallback").fallbackReason ?? "", /not built/)
  })
})

describe("same nonce as the reference solver", () => {
  for (const name of Object.keys(poolOptions)) {
    describe(name, () => {
      for (const v of powVectors) {
        it.live(`vector: difficulty ${v.difficulty}, first valid nonce ${v.first_valid_nonce}`, () =>
          Effect.gen(function*() {
            const solution = yield* pool(name).solve(inputOf(v))
            assert.strictEqual(solution.nonce, BigInt(v.first_valid_nonce))
            assert.strictEqual(solution.powHash, v.pow_hash)
            assert.isAtLeast(solution.hashes, v.first_valid_nonce + 1)
          }))
      }

      it.live("random challenges at difficulty 8–16, ranges anywhere in uint64 (high-word and top-of-range edges)", () =>
        Effect.gen(function*() {
          const p = pool(name)
          const starts = [0n, 1n, (1n << 32n) - 3000n, 0x1234_5678_9abcn, MAX_NONCE - 40_000n]
          for (let i = 0; i < 25; i++) {
            const c = new Uint8Array(randomBytes(32))
            const difficulty = 8 + (i % 9)
            const from = starts[i % starts.length]!
            const to = MAX_NONCE - from < 1n << 19n ? MAX_NONCE : from + (1n << 19n)
            const expected = makePowSearcher(c).search(from, to, difficulty)
            const found = yield* p.search(c, from, to, difficulty)
            assert.strictEqual(found.nonce ?? -1n, expected, `challenge ${bytesToHex(c)} d=${difficulty} from ${from}`)
            assert.isAtLeast(found.hashes, expected < 0n ? Number(to - from + 1n) : Number(expected - from + 1n))
          }
        }), 60_000)

      it.live("tiny ranges and a range with no valid nonce", () =>
        Effect.gen(function*() {
          const p = pool(name)
          const c = new Uint8Array(randomBytes(32))
          for (const [from, to, difficulty] of [[5n, 5n, 0], [7n, 9n, 1], [MAX_NONCE, MAX_NONCE, 0], [100n, 140n, 3]] as const) {
            const found = yield* p.search(c, from, to, difficulty)
            assert.strictEqual(found.nonce ?? -1n, makePowSearcher(c).search(from, to, difficulty))
          }
          // 2000 nonces at 40 bits: none.
          const none = yield* p.search(c, 1000n, 2999n, 40)
          assert.isUndefined(none.nonce)
          assert.isAtLeast(none.hashes, 2000)
          const exhausted = yield* Effect.flip(p.solve({ ...inputOf(powVectors[0]!), difficulty: 40 }, { maxNonce: 999n }))
          assert.strictEqual(exhausted._tag, "ResourceError")
        }))
    })
  }

  it.live("concurrent solves on one pool each get the reference answer", () =>
    Effect.gen(function*() {
      const p = pool("small batches, 3 threads")
      const solutions = yield* Effect.forEach(powVectors, (v) => p.solve(inputOf(v)), { concurrency: "unbounded" })
      assert.deepStrictEqual(solutions.map((s) => Number(s.nonce)), powVectors.map((v) => v.first_valid_nonce))
    }))

  it.live("the powHash it reports is the pow hash of the nonce", () =>
    Effect.gen(function*() {
      const input = { ...inputOf(powVectors[1]!), difficulty: 12 }
      const solution = yield* pool("default").solve(input, { startNonce: 1n << 40n })
      assert.strictEqual(solution.powHash, bytesToHex(powHash(challenge(input), solution.nonce)))
    }))

  it.live("rejects what the reference rejects", () =>
    Effect.gen(function*() {
      const v = inputOf(powVectors[0]!)
      const tooHard = yield* Effect.flip(pool("default").solve({ ...v, difficulty: 65 }))
      assert.strictEqual(tooHard._tag, "ValidationError")
      const empty = yield* Effect.flip(pool("default").solve(v, { startNonce: 10n, maxNonce: 9n }))
      assert.strictEqual(empty._tag, "ValidationError")
    }))
})

describe("interruption", () => {
  for (const name of ["default", "typescript"]) {
    // The interrupt's latency and the CPU time after it are figures of bench/pow.ts.
    it.live(`${name}: a difficulty-40 solve interrupted after 200 ms ends and leaves the workers idle`, () =>
      Effect.gen(function*() {
        const p = pool(name)
        const fiber = yield* Effect.forkChild(p.solve({ ...inputOf(powVectors[0]!), difficulty: 40 }))
        yield* Effect.sleep("200 millis")
        assert.strictEqual(p.busyWorkers(), p.threads)
        yield* Fiber.interrupt(fiber)
        // The interrupt returns once every worker has left the search.
        assert.strictEqual(p.busyWorkers(), 0)
        // And the pool still answers.
        const solution = yield* p.solve(inputOf(powVectors[1]!))
        assert.strictEqual(solution.nonce, BigInt(powVectors[1]!.first_valid_nonce))
      }))
  }
})

describe.skipIf(addon === undefined)("native addon", () => {
  it("every engine it has matches the reference on random ranges, including partial lane groups", () => {
    const engines = addon!.shaNi
      ? ["sha-ni", "portable", "portable-baseline"] as const
      : ["portable", "portable-baseline"] as const
    for (let i = 0; i < 200; i++) {
      const c = new Uint8Array(randomBytes(32))
      const difficulty = i % 13
      const from = [0n, (1n << 32n) - 20n, 0xfffffffffffff000n, BigInt(i) * 1_000_003n][i % 4]!
      const to = from + BigInt(i % 57)
      const expected = makePowSearcher(c).search(from, to, difficulty)
      for (const engine of engines) assert.strictEqual(addon!.search(c, from, to, difficulty, engine), expected, engine)
    }
  })

  it("rejects bad arguments with a RangeError", () => {
    assert.throws(() => addon!.search(new Uint8Array(31), 0n, 1n, 8), RangeError)
    assert.throws(() => addon!.search(new Uint8Array(32), 2n, 1n, 8), RangeError)
    assert.throws(() => addon!.search(new Uint8Array(32), 0n, 1n, 65), RangeError)
    assert.throws(() => addon!.search(new Uint8Array(32), 0n, 1n << 64n, 8), RangeError)
  })
})

describe("FastPowSolver.layer", () => {
  it.live("serves the PowSolver port, logs its engine once, and terminates its workers on release", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const capture = Logger.make(({ message }) => {
        lines.push(Array.isArray(message) ? message.join(" ") : String(message))
      })
      const v = powVectors[1]!
      const threadsBefore = osThreads()
      let threadsDuring = 0
      const solution = yield* Effect.gen(function*() {
        const solver = yield* PowSolver
        threadsDuring = osThreads()
        return yield* solver.solve(inputOf(v))
      }).pipe(
        Effect.provide(FastPowSolver.layer({ threads: 2 })),
        Effect.provide(Logger.layer([capture]))
      )
      assert.strictEqual(solution.nonce, BigInt(v.first_valid_nonce))
      if (threadsBefore > 0) {
        // A worker thread is a few OS threads; once released they are gone again.
        assert.isAtLeast(threadsDuring, threadsBefore + 2)
        assert.isAtMost(osThreads(), threadsBefore)
      }
      const engineLines = lines.filter((line) => line.startsWith("proof of work"))
      assert.strictEqual(engineLines.length, 1)
      const expected = addon === undefined ? /typescript on 2 worker/ : /native (sha-ni|portable) on 2 worker/
      assert.match(engineLines[0]!, expected)
    }))

  it.live("falls back to TypeScript workers with a warning when the addon is missing", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const capture = Logger.make(({ message, logLevel }) => {
        lines.push(`${logLevel} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
      })
      const v = powVectors[0]!
      const solution = yield* PowSolver.use((solver) => solver.solve(inputOf(v))).pipe(
        Effect.provide(FastPowSolver.layer({ threads: 1, addonPath: "/nonexistent/r3mes_pow.node" })),
        Effect.provide(Logger.layer([capture]))
      )
      assert.strictEqual(solution.nonce, BigInt(v.first_valid_nonce))
      assert.isTrue(lines.some((line) => /^Warn.*not built.*typescript on 1 worker threads/.test(line)), lines.join("\n"))
    }))
})

