import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option, Tracer } from "effect"
import fc from "fast-check"
import { createHash, randomBytes } from "node:crypto"
import {
  bytesToHex,
  challenge,
  encodeChallengeInput,
  hexToBytes,
  leadingZeroBits,
  makePowSearcher,
  MAX_NONCE,
  meetsDifficulty,
  powHash,
  sha256,
  solveReference,
  type SolveInput
} from "../../src/domain/pow.ts"
import { ReferencePowSolver } from "../../src/layers/pow/ReferencePowSolver.ts"
import { PowSolver } from "../../src/services/PowSolver.ts"
import { powInputOf as inputOf, powVectors as vectors } from "../support/powVectors.ts"

const nodeSha256 = (bytes: Uint8Array): string => `0x${createHash("sha256").update(bytes).digest("hex")}`

const nodePowHash = (c: Uint8Array, nonce: bigint): string => {
  const message = Buffer.alloc(40)
  message.set(c)
  message.writeBigUInt64BE(nonce, 32)
  return nodeSha256(message)
}

/** A 32-byte hash with exactly `bits` leading zero bits: zeros, then a one, then random bits. */
const hashWithLeadingZeros = (bits: number): Uint8Array => {
  const hash = new Uint8Array(randomBytes(32))
  for (let i = 0; i < bits; i++) hash[i >> 3]! &= ~(0x80 >>> (i & 7))
  if (bits < 256) hash[bits >> 3]! |= 0x80 >>> (bits & 7)
  return hash
}

const anyInput: SolveInput = {
  chainId: 31337,
  registry: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
  miner: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
  roundId: 1n,
  chunkId: 0,
  gradientHash: `0x${"ab".repeat(32)}`,
  cid: "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
  difficulty: 16
}

describe("pow test vectors (independent implementation)", () => {
  for (const v of vectors) {
    describe(`chain ${v.chain_id}, round ${v.round_id.slice(0, 12)}, chunk ${v.chunk_id}, difficulty ${v.difficulty}`, () => {
      const input = inputOf(v)
      const c = challenge(input)

      it("challenge", () => {
        assert.strictEqual(bytesToHex(c), v.challenge)
      })

      it("pow hashes at nonce 0, 2^64 - 1 and the first valid nonce, general and specialised SHA-256", () => {
        const searcher = makePowSearcher(c)
        for (const [nonce, expected] of [
          [0n, v.pow_hash_nonce_0],
          [MAX_NONCE, v.pow_hash_nonce_max],
          [BigInt(v.first_valid_nonce), v.pow_hash]
        ] as const) {
          assert.strictEqual(bytesToHex(powHash(c, nonce)), expected)
          assert.strictEqual(bytesToHex(searcher.hash(nonce)), expected)
        }
        assert.isTrue(meetsDifficulty(hexToBytes(v.pow_hash), v.difficulty))
      })

      it.effect("the solver finds exactly the first valid nonce", () =>
        Effect.gen(function*() {
          const solution = yield* solveReference(input)
          assert.strictEqual(solution.nonce, BigInt(v.first_valid_nonce))
          assert.strictEqual(solution.powHash, v.pow_hash)
          assert.strictEqual(solution.hashes, v.first_valid_nonce + 1)
        }))

      it.effect("a search starting shortly before it finds it too, and one starting after it finds a later one", () =>
        Effect.gen(function*() {
          const first = BigInt(v.first_valid_nonce)
          const startNonce = first > 50_000n ? first - 50_000n : 0n
          const near = yield* solveReference(input, { startNonce })
          assert.strictEqual(near.nonce, first)
          assert.strictEqual(near.hashes, Number(first - startNonce + 1n))
          const next = yield* solveReference(input, { startNonce: first + 1n })
          assert.isTrue(next.nonce > first)
          assert.isTrue(meetsDifficulty(hexToBytes(next.powHash), v.difficulty))
          assert.strictEqual(next.powHash, nodePowHash(c, next.nonce))
        }))
    })
  }

  it("the challenge ignores address checksum case", () => {
    const v = vectors[0]!
    const lower = { ...inputOf(v), registry: v.registry.toLowerCase(), miner: v.miner.toLowerCase() }
    assert.strictEqual(bytesToHex(challenge(lower)), v.challenge)
  })
})

describe("challenge encoding", () => {
  it("is abi.encode of seven static words", () => {
    const v = vectors[1]!
    const encoded = encodeChallengeInput(inputOf(v))
    assert.strictEqual(encoded.length, 7 * 32)
    const word = (i: number) => bytesToHex(encoded.subarray(32 * i, 32 * (i + 1)))
    assert.strictEqual(word(0), `0x${"00".repeat(31)}01`)
    assert.strictEqual(word(1), `0x${"00".repeat(12)}${v.registry.slice(2).toLowerCase()}`)
    assert.strictEqual(word(2), `0x${"00".repeat(12)}${v.miner.slice(2).toLowerCase()}`)
    assert.strictEqual(word(3), `0x${"ff".repeat(32)}`)
    assert.strictEqual(word(4), `0x${"00".repeat(28)}ffffffff`)
    assert.strictEqual(word(5), v.gradient_hash)
    assert.strictEqual(word(6), nodeSha256(new TextEncoder().encode(v.cid)))
    assert.strictEqual(bytesToHex(sha256(encoded)), v.challenge)
  })

  it("rejects out-of-range and malformed fields", () => {
    const base = inputOf(vectors[0]!)
    assert.throws(() => encodeChallengeInput({ ...base, roundId: 1n << 256n }), RangeError)
    assert.throws(() => encodeChallengeInput({ ...base, roundId: -1n }), RangeError)
    assert.throws(() => encodeChallengeInput({ ...base, chunkId: 2 ** 32 }), RangeError)
    assert.throws(() => encodeChallengeInput({ ...base, chainId: 2 ** 60 }), RangeError)
    assert.throws(() => encodeChallengeInput({ ...base, registry: "0x1234" }), RangeError)
    assert.throws(() => encodeChallengeInput({ ...base, gradientHash: `0x${"zz".repeat(32)}` }), RangeError)
  })

  it("takes a bigint chain id above 2^53", () => {
    const encoded = encodeChallengeInput({ ...inputOf(vectors[0]!), chainId: (1n << 200n) + 5n })
    assert.strictEqual(bytesToHex(encoded.subarray(0, 32)), `0x${"00".repeat(6)}01${"00".repeat(24)}05`)
  })
})

describe("SHA-256 against node:crypto", () => {
  it("every length across the padding boundaries (0..200 bytes)", () => {
    for (let length = 0; length <= 200; length++) {
      const bytes = new Uint8Array(randomBytes(length))
      assert.strictEqual(bytesToHex(sha256(bytes)), nodeSha256(bytes), `length ${length}`)
    }
  })

  it("random messages", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1000 }), (bytes) => bytesToHex(sha256(bytes)) === nodeSha256(bytes)),
      { numRuns: 300 }
    )
  })

  it("pow hashes of random challenges and uint64 nonces, general and specialised", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.oneof(
          fc.bigInt({ min: 0n, max: MAX_NONCE }),
          fc.bigInt({ min: 0n, max: 1000n }),
          fc.bigInt({ min: (1n << 32n) - 1000n, max: (1n << 32n) + 1000n }),
          fc.bigInt({ min: MAX_NONCE - 1000n, max: MAX_NONCE })
        ),
        (c, nonce) => {
          const expected = nodePowHash(c, nonce)
          return bytesToHex(powHash(c, nonce)) === expected && bytesToHex(makePowSearcher(c).hash(nonce)) === expected
        }
      ),
      { numRuns: 500 }
    )
  })
})

describe("nonce search against brute force with node:crypto", () => {
  const bruteForce = (c: Uint8Array, from: bigint, to: bigint, difficulty: number): bigint => {
    for (let n = from; n <= to; n++) {
      if (leadingZeroBits(hexToBytes(nodePowHash(c, n))) >= difficulty) return n
    }
    return -1n
  }

  it("finds the same first nonce, also across a change of the nonce's high word", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.constantFrom(0n, (1n << 32n) - 300n, (5n << 32n) - 10n, MAX_NONCE - 600n),
        fc.integer({ min: 0, max: 9 }),
        (c, from, difficulty) => {
          const to = from + 600n
          return makePowSearcher(c).search(from, to, difficulty) === bruteForce(c, from, to, difficulty)
        }
      ),
      { numRuns: 60 }
    )
  })

  it("one searcher gives the same answers whatever ranges it searched before", () => {
    const c = new Uint8Array(randomBytes(32))
    const searcher = makePowSearcher(c)
    const ranges: ReadonlyArray<readonly [bigint, bigint]> = [
      [(7n << 32n) - 200n, (7n << 32n) + 200n],
      [0n, 400n],
      [MAX_NONCE - 400n, MAX_NONCE],
      [(7n << 32n) + 10n, (7n << 32n) + 400n]
    ]
    for (const [from, to] of ranges) assert.strictEqual(searcher.search(from, to, 6), bruteForce(c, from, to, 6))
  })

  it("above 32 bits of difficulty it checks the second word too (nothing found in a short range)", () => {
    const c = new Uint8Array(randomBytes(32))
    assert.strictEqual(makePowSearcher(c).search(0n, 20_000n, 33), -1n)
    assert.strictEqual(makePowSearcher(c).search(0n, 10n, 0), 0n)
  })
})

describe("difficulty", () => {
  it("a hash with exactly d leading zero bits meets d and not d + 1, for every d in 0..255", () => {
    for (let d = 0; d < 256; d++) {
      const hash = hashWithLeadingZeros(d)
      assert.strictEqual(leadingZeroBits(hash), d)
      assert.isTrue(meetsDifficulty(hash, d), `meets ${d}`)
      assert.isFalse(meetsDifficulty(hash, d + 1), `fails ${d + 1}`)
    }
    assert.strictEqual(leadingZeroBits(new Uint8Array(32)), 256)
    assert.isTrue(meetsDifficulty(new Uint8Array(32), 256))
  })

  it("the configured range: 16, 20 and 32", () => {
    const hex = (s: string) => hexToBytes(`0x${s.padEnd(64, "f")}`)
    assert.isTrue(meetsDifficulty(hex("0000"), 16))
    assert.isFalse(meetsDifficulty(hex("0000"), 17))
    assert.isFalse(meetsDifficulty(hex("0001"), 16))
    assert.isTrue(meetsDifficulty(hex("000008"), 20))
    assert.isFalse(meetsDifficulty(hex("000008"), 21))
    assert.isFalse(meetsDifficulty(hex("000010"), 20))
    assert.isTrue(meetsDifficulty(hex("0000000080"), 32))
    assert.isFalse(meetsDifficulty(hex("0000000080"), 33))
    assert.isFalse(meetsDifficulty(hex("0000000100"), 32))
  })

  it.effect("difficulty 0 accepts the start nonce", () =>
    Effect.gen(function*() {
      const solution = yield* solveReference({ ...anyInput, difficulty: 0 }, { startNonce: 12345n })
      assert.strictEqual(solution.nonce, 12345n)
      assert.strictEqual(solution.hashes, 1)
    }))

  it.effect("difficulties the solver does not take fail with a ValidationError", () =>
    Effect.gen(function*() {
      for (const difficulty of [65, 255, -1, 1.5, Number.NaN]) {
        const error = yield* Effect.flip(solveReference({ ...anyInput, difficulty }))
        assert.strictEqual(error._tag, "ValidationError")
      }
    }))

  it.effect("malformed inputs and nonce ranges fail with a ValidationError", () =>
    Effect.gen(function*() {
      const errors = [
        yield* Effect.flip(solveReference({ ...anyInput, miner: "0xnope" })),
        yield* Effect.flip(solveReference(anyInput, { startNonce: 10n, maxNonce: 9n })),
        yield* Effect.flip(solveReference(anyInput, { maxNonce: MAX_NONCE + 1n })),
        yield* Effect.flip(solveReference(anyInput, { startNonce: -1n })),
        yield* Effect.flip(solveReference(anyInput, { batchSize: 0 }))
      ]
      for (const error of errors) assert.strictEqual(error._tag, "ValidationError")
    }))
})

describe("search lifecycle", () => {
  // How long an interrupt takes and how late other fibers' timers fire next to a search: bench/pow.ts prints both.
  it.live("a search at difficulty 40 stops when interrupted, and other fibers keep running meanwhile", () =>
    Effect.gen(function*() {
      let hashing = true
      const fiber = yield* Effect.forkChild(
        solveReference({ ...anyInput, difficulty: 40 }).pipe(Effect.ensuring(Effect.sync(() => (hashing = false))))
      )
      let ticks = 0
      for (let tick = 0; tick < 10; tick++) {
        yield* Effect.sleep("10 millis")
        ticks++
      }
      assert.strictEqual(ticks, 10)
      assert.isTrue(hashing, "the search was still running while the other fiber ticked")
      yield* Fiber.interrupt(fiber)
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.hasInterrupts(exit))
      assert.isFalse(hashing)
    }))

  it.live("a timeout ends a search that cannot finish", () =>
    Effect.gen(function*() {
      const result = yield* solveReference({ ...anyInput, difficulty: 48 }).pipe(Effect.timeoutOption("50 millis"))
      assert.isTrue(Option.isNone(result))
    }))

  it.effect("an exhausted nonce range fails with a ResourceError", () =>
    Effect.gen(function*() {
      const atTheEnd = yield* Effect.flip(
        solveReference({ ...anyInput, difficulty: 40 }, { startNonce: MAX_NONCE - 9_999n })
      )
      assert.strictEqual(atTheEnd._tag, "ResourceError")
      const bounded = yield* Effect.flip(
        solveReference({ ...anyInput, difficulty: 40 }, { startNonce: 100n, maxNonce: 20_000n, batchSize: 1000 })
      )
      assert.strictEqual(bounded._tag, "ResourceError")
      assert.include(bounded.message, "100..20000")
    }))

  it.effect("the last nonce of the range is searched", () =>
    Effect.gen(function*() {
      const v = vectors[0]!
      const solution = yield* solveReference(inputOf(v), {
        startNonce: BigInt(v.first_valid_nonce) - 5000n,
        maxNonce: BigInt(v.first_valid_nonce),
        batchSize: 999
      })
      assert.strictEqual(solution.nonce, BigInt(v.first_valid_nonce))
    }))
})

describe("ReferencePowSolver.layer", () => {
  it.effect("solves through the port, in a PowSolver.solve span with difficulty and hashes", () =>
    Effect.gen(function*() {
      const spans: Array<Tracer.NativeSpan> = []
      const tracer = Tracer.make({
        span(options) {
          const span = new Tracer.NativeSpan(options)
          spans.push(span)
          return span
        }
      })
      const v = vectors[0]!
      const solution = yield* PowSolver.use((pow) => pow.solve(inputOf(v))).pipe(Effect.withTracer(tracer))
      assert.strictEqual(solution.nonce, BigInt(v.first_valid_nonce))
      assert.strictEqual(solution.powHash, v.pow_hash)
      const span = spans.find((s) => s.name === "PowSolver.solve")
      assert.isDefined(span)
      assert.strictEqual(span!.attributes.get("pow.difficulty"), v.difficulty)
      assert.strictEqual(span!.attributes.get("pow.hashes"), v.first_valid_nonce + 1)
    }).pipe(Effect.provide(ReferencePowSolver.layer)))
})
