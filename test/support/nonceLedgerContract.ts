import { assert } from "@effect/vitest"
import { Context, Effect, Layer, type Scope } from "effect"
import { keccak256, toHex } from "viem"
import type { MiningError } from "../../src/domain/errors.ts"
import { NonceLedger, type NonceReservation, type NonceTaken } from "../../src/services/NonceLedger.ts"

/**
 * The NonceLedger contract, one suite run against every ledger (PgNonceLedger, and InMemoryNonceLedger that users
 * test their harnesses with): the same answers to the same calls, and the fence — of two runners reserving one nonce
 * with different transactions, exactly one wins — on both.
 */

type Register<R> = <A, E>(name: string, self: () => Effect.Effect<A, E, R | Scope.Scope>, timeout?: number) => void

/** A fresh, empty database; the function it gives builds one more runner's ledger on it (its own pool). */
export type MakeDatabase = () => Effect.Effect<() => Layer.Layer<NonceLedger, MiningError>, never, Scope.Scope>

/** A checksummed-looking (mixed-case) account, as viem prints addresses. */
export const ACCOUNT = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
export const OTHER_ACCOUNT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
export const CHAIN = 31337

/** Stand-in signed bytes (distinct per `tag`) and their keccak256, as a signer would reserve them. */
export const contractReservation = (tag: string, holder = "runner-a"): NonceReservation => {
  const signedBytes = toHex(new TextEncoder().encode(`signed transaction ${tag}`))
  return { transactionHash: keccak256(signedBytes), signedBytes, holder }
}

const taken = (error: NonceTaken | MiningError): NonceTaken => {
  assert.strictEqual(error._tag, "NonceTaken", error.message)
  return error as NonceTaken
}

export const nonceLedgerContract = <R>(register: Register<R>, makeDatabase: MakeDatabase) => {
  /** A runner's ledger on `database`, built in the test's scope. */
  const runner = (layer: Layer.Layer<NonceLedger, MiningError>) =>
    Layer.build(layer).pipe(Effect.map((c) => Context.get(c, NonceLedger)))
  const fresh = Effect.gen(function*() {
    const database = yield* makeDatabase()
    return yield* runner(database())
  })

  register("reserve then get, list and next; nothing reserved is undefined or empty", () =>
    Effect.gen(function*() {
      const ledger = yield* fresh
      assert.isUndefined(yield* ledger.next(ACCOUNT, CHAIN))
      assert.isUndefined(yield* ledger.get(ACCOUNT, CHAIN, 0))
      assert.deepStrictEqual(yield* ledger.list(ACCOUNT, CHAIN), [])
      const r = contractReservation("a")
      yield* ledger.reserve(ACCOUNT, CHAIN, 0, r)
      const entry = {
        ...r,
        account: ACCOUNT.toLowerCase(),
        chainId: CHAIN,
        nonce: 0,
        revision: 0,
        replacedHashes: []
      }
      assert.deepStrictEqual(yield* ledger.get(ACCOUNT, CHAIN, 0), entry)
      assert.deepStrictEqual(yield* ledger.list(ACCOUNT, CHAIN), [entry])
      assert.strictEqual(yield* ledger.next(ACCOUNT, CHAIN), 1)
      assert.isUndefined(yield* ledger.get(ACCOUNT, CHAIN, 1))
    }))

  register("a second transaction at a reserved nonce is NonceTaken carrying the row there; the same one again is fine", () =>
    Effect.gen(function*() {
      const ledger = yield* fresh
      const first = contractReservation("first", "runner-a")
      yield* ledger.reserve(ACCOUNT, CHAIN, 7, first)
      // A retry after a lost answer: one transaction, kept as written.
      yield* ledger.reserve(ACCOUNT, CHAIN, 7, first)
      // Identical bytes from another holder (two signers of one account, one call): theirs is not its write.
      const same = taken(yield* Effect.flip(ledger.reserve(ACCOUNT, CHAIN, 7, { ...first, holder: "runner-b" })))
      assert.strictEqual(same.holder, "runner-a")
      const error = taken(yield* Effect.flip(ledger.reserve(ACCOUNT, CHAIN, 7, contractReservation("second", "runner-b"))))
      assert.strictEqual(error.transactionHash, first.transactionHash)
      assert.strictEqual(error.holder, "runner-a")
      assert.strictEqual(error.nonce, 7)
      assert.strictEqual(error.chainId, CHAIN)
      assert.strictEqual(error.account, ACCOUNT.toLowerCase())
      assert.include(error.message, first.transactionHash)
      assert.isDefined(error.hint)
      const row = yield* ledger.get(ACCOUNT, CHAIN, 7)
      assert.strictEqual(row?.transactionHash, first.transactionHash)
      assert.strictEqual(row?.holder, "runner-a")
      assert.strictEqual(row?.signedBytes, first.signedBytes)
    }))

  register("accounts are case-insensitive; hex is stored lower-case; accounts and chains are apart", () =>
    Effect.gen(function*() {
      const ledger = yield* fresh
      const r = contractReservation("a")
      yield* ledger.reserve(ACCOUNT.toUpperCase().replace("0X", "0x"), CHAIN, 0, {
        ...r,
        transactionHash: r.transactionHash.toUpperCase().replace("0X", "0x"),
        signedBytes: r.signedBytes.toUpperCase().replace("0X", "0x")
      })
      const row = yield* ledger.get(ACCOUNT.toLowerCase(), CHAIN, 0)
      assert.strictEqual(row?.account, ACCOUNT.toLowerCase())
      assert.strictEqual(row?.transactionHash, r.transactionHash)
      assert.strictEqual(row?.signedBytes, r.signedBytes)
      // The same transaction in another case is the same transaction; another one at that nonce is refused.
      yield* ledger.reserve(ACCOUNT, CHAIN, 0, r)
      taken(yield* Effect.flip(ledger.reserve(ACCOUNT.toLowerCase(), CHAIN, 0, contractReservation("b"))))
      // Another account, another chain: their own nonce 0.
      yield* ledger.reserve(OTHER_ACCOUNT, CHAIN, 0, contractReservation("other account"))
      yield* ledger.reserve(ACCOUNT, 1, 0, contractReservation("other chain"))
      assert.deepStrictEqual((yield* ledger.list(ACCOUNT, CHAIN)).map((e) => e.transactionHash), [r.transactionHash])
      assert.strictEqual(yield* ledger.next(OTHER_ACCOUNT, CHAIN), 1)
      assert.strictEqual(yield* ledger.next(ACCOUNT, 1), 1)
      assert.isUndefined(yield* ledger.next(OTHER_ACCOUNT, 1))
    }))

  register("next is the highest reserved + 1, gaps included; list is ascending from fromNonce, cut to limit", () =>
    Effect.gen(function*() {
      const ledger = yield* fresh
      for (const nonce of [3, 0, 5, 1]) yield* ledger.reserve(ACCOUNT, CHAIN, nonce, contractReservation(`n${nonce}`))
      assert.strictEqual(yield* ledger.next(ACCOUNT, CHAIN), 6)
      const nonces = (entries: ReadonlyArray<{ readonly nonce: number }>) => entries.map((e) => e.nonce)
      assert.deepStrictEqual(nonces(yield* ledger.list(ACCOUNT, CHAIN)), [0, 1, 3, 5])
      assert.deepStrictEqual(nonces(yield* ledger.list(ACCOUNT, CHAIN, { fromNonce: 2 })), [3, 5])
      assert.deepStrictEqual(nonces(yield* ledger.list(ACCOUNT, CHAIN, { fromNonce: 1, limit: 2 })), [1, 3])
      assert.deepStrictEqual(nonces(yield* ledger.list(ACCOUNT, CHAIN, { limit: 0 })), [])
      assert.deepStrictEqual(nonces(yield* ledger.list(ACCOUNT, CHAIN, { fromNonce: 6 })), [])
      // Numerically, past one digit: 10 after 9 (a fleet's gap fill reads from a nonce on, with a limit).
      for (let nonce = 6; nonce <= 11; nonce++) {
        yield* ledger.reserve(ACCOUNT, CHAIN, nonce, contractReservation(`n${nonce}`))
      }
      assert.deepStrictEqual(nonces(yield* ledger.list(ACCOUNT, CHAIN, { fromNonce: 5 })), [5, 6, 7, 8, 9, 10, 11])
      assert.deepStrictEqual(nonces(yield* ledger.list(ACCOUNT, CHAIN, { fromNonce: 8, limit: 3 })), [8, 9, 10])
    }))

  register("big nonces (above 2^32, up to 2^53 - 1) and big chain ids round-trip exactly", () =>
    Effect.gen(function*() {
      const ledger = yield* fresh
      const big = 2 ** 32 + 5
      const biggest = Number.MAX_SAFE_INTEGER
      const bigChain = 2 ** 40 + 3
      yield* ledger.reserve(ACCOUNT, CHAIN, big, contractReservation("big"))
      assert.strictEqual(yield* ledger.next(ACCOUNT, CHAIN), big + 1)
      yield* ledger.reserve(ACCOUNT, CHAIN, biggest, contractReservation("biggest"))
      assert.strictEqual(yield* ledger.next(ACCOUNT, CHAIN), 2 ** 53)
      assert.strictEqual((yield* ledger.get(ACCOUNT, CHAIN, biggest))?.nonce, biggest)
      assert.deepStrictEqual((yield* ledger.list(ACCOUNT, CHAIN, { fromNonce: big + 1 })).map((e) => e.nonce), [biggest])
      taken(yield* Effect.flip(ledger.reserve(ACCOUNT, CHAIN, biggest, contractReservation("other"))))
      yield* ledger.reserve(ACCOUNT, bigChain, 1, contractReservation("big chain"))
      assert.strictEqual((yield* ledger.get(ACCOUNT, bigChain, 1))?.chainId, bigChain)
    }))

  register("malformed arguments are ValidationErrors, and nothing is written", () =>
    Effect.gen(function*() {
      const ledger = yield* fresh
      const r = contractReservation("a")
      const refused = [
        yield* Effect.flip(ledger.reserve("0x1234", CHAIN, 0, r)),
        yield* Effect.flip(ledger.reserve(ACCOUNT, CHAIN, -1, r)),
        yield* Effect.flip(ledger.reserve(ACCOUNT, CHAIN, 1.5, r)),
        yield* Effect.flip(ledger.reserve(ACCOUNT, CHAIN, 2 ** 53, r)),
        yield* Effect.flip(ledger.reserve(ACCOUNT, 0, 0, r)),
        yield* Effect.flip(ledger.reserve(ACCOUNT, CHAIN, 0, { ...r, transactionHash: "0xabc" })),
        yield* Effect.flip(ledger.reserve(ACCOUNT, CHAIN, 0, { ...r, signedBytes: "0x123" })),
        yield* Effect.flip(ledger.reserve(ACCOUNT, CHAIN, 0, { ...r, holder: "" })),
        yield* Effect.flip(ledger.next("not an address", CHAIN))
      ]
      for (const error of refused) assert.strictEqual(error._tag, "ValidationError", error.message)
      assert.deepStrictEqual(yield* ledger.list(ACCOUNT, CHAIN), [])
    }))

  register("replace: a compare-and-set on (hash, holder), idempotent, keeping the replaced hashes", () =>
    Effect.gen(function*() {
      const ledger = yield* fresh
      const first = contractReservation("first", "runner-a")
      const second = contractReservation("second", "runner-a")
      yield* ledger.reserve(ACCOUNT, CHAIN, 4, first)
      // Nothing reserved there: a caller's mistake, not a race.
      const missing = yield* Effect.flip(
        ledger.replace(ACCOUNT, CHAIN, 5, { transactionHash: first.transactionHash, holder: "runner-a" }, second)
      )
      assert.strictEqual(missing._tag, "ValidationError")
      // Stale expectations lose, and change nothing.
      const wrongHash = taken(yield* Effect.flip(
        ledger.replace(ACCOUNT, CHAIN, 4, { transactionHash: second.transactionHash, holder: "runner-a" }, second)
      ))
      assert.strictEqual(wrongHash.transactionHash, first.transactionHash)
      taken(yield* Effect.flip(
        ledger.replace(ACCOUNT, CHAIN, 4, { transactionHash: first.transactionHash, holder: "runner-b" }, second)
      ))
      yield* ledger.replace(ACCOUNT, CHAIN, 4, { transactionHash: first.transactionHash, holder: "runner-a" }, second)
      // The same replace again (its answer lost): done already, fine.
      yield* ledger.replace(ACCOUNT, CHAIN, 4, { transactionHash: first.transactionHash, holder: "runner-a" }, second)
      const row = yield* ledger.get(ACCOUNT, CHAIN, 4)
      assert.deepStrictEqual(row, {
        ...second,
        account: ACCOUNT.toLowerCase(),
        chainId: CHAIN,
        nonce: 4,
        revision: 1,
        replacedHashes: [first.transactionHash]
      })
      // The replaced transaction cannot come back through reserve.
      taken(yield* Effect.flip(ledger.reserve(ACCOUNT, CHAIN, 4, first)))
      assert.strictEqual(yield* ledger.next(ACCOUNT, CHAIN), 5)
    }))

  register("a takeover (same bytes, new holder) makes the former holder's replace lose", () =>
    Effect.gen(function*() {
      const ledger = yield* fresh
      const mine = contractReservation("a's", "runner-a")
      yield* ledger.reserve(ACCOUNT, CHAIN, 0, mine)
      yield* ledger.replace(ACCOUNT, CHAIN, 0, { transactionHash: mine.transactionHash, holder: "runner-a" }, {
        ...mine,
        holder: "runner-b"
      })
      const late = taken(yield* Effect.flip(
        ledger.replace(
          ACCOUNT,
          CHAIN,
          0,
          { transactionHash: mine.transactionHash, holder: "runner-a" },
          contractReservation("a's filler", "runner-a")
        )
      ))
      assert.strictEqual(late.transactionHash, mine.transactionHash)
      assert.strictEqual(late.holder, "runner-b")
      const row = yield* ledger.get(ACCOUNT, CHAIN, 0)
      assert.strictEqual(row?.signedBytes, mine.signedBytes)
      assert.strictEqual(row?.holder, "runner-b")
      assert.strictEqual(row?.revision, 1)
      assert.deepStrictEqual(row?.replacedHashes, [mine.transactionHash])
    }))

  register("two runners on one database reserving one nonce at once, 20 times: exactly one wins each time", () =>
    Effect.gen(function*() {
      const database = yield* makeDatabase()
      const a = yield* runner(database())
      const b = yield* runner(database())
      // Both pools connected before the races: each race is two statements in flight, not a connect and a statement.
      yield* Effect.all([a.next(ACCOUNT, CHAIN), b.next(ACCOUNT, CHAIN)], { concurrency: 2 })
      for (let nonce = 0; nonce < 20; nonce++) {
        const ra = contractReservation(`a${nonce}`, "runner-a")
        const rb = contractReservation(`b${nonce}`, "runner-b")
        const [resultA, resultB] = yield* Effect.all(
          [Effect.result(a.reserve(ACCOUNT, CHAIN, nonce, ra)), Effect.result(b.reserve(ACCOUNT, CHAIN, nonce, rb))],
          { concurrency: 2 }
        )
        const wins = [resultA, resultB].filter((r) => r._tag === "Success").length
        assert.strictEqual(wins, 1, `race ${nonce}: ${wins} winners`)
        const [winner, loser] = resultA._tag === "Success" ? [ra, resultB] : [rb, resultA]
        assert.strictEqual(loser._tag, "Failure")
        if (loser._tag !== "Failure") return
        const error = taken(loser.failure)
        assert.strictEqual(error.transactionHash, winner.transactionHash)
        assert.strictEqual(error.holder, winner.holder)
        // Both runners read the winner's row.
        assert.strictEqual((yield* a.get(ACCOUNT, CHAIN, nonce))?.transactionHash, winner.transactionHash)
        assert.strictEqual((yield* b.get(ACCOUNT, CHAIN, nonce))?.signedBytes, winner.signedBytes)
      }
      assert.strictEqual(yield* b.next(ACCOUNT, CHAIN), 20)
      assert.strictEqual((yield* a.list(ACCOUNT, CHAIN)).length, 20)
    }), 60_000)

  register("two runners replacing one reservation at once: exactly one compare-and-set wins", () =>
    Effect.gen(function*() {
      const database = yield* makeDatabase()
      const a = yield* runner(database())
      const b = yield* runner(database())
      for (let nonce = 0; nonce < 5; nonce++) {
        const original = contractReservation(`o${nonce}`, "runner-a")
        yield* a.reserve(ACCOUNT, CHAIN, nonce, original)
        const expected = { transactionHash: original.transactionHash, holder: "runner-a" }
        // The holder swaps in a filler while another runner takes the bytes over to send them.
        const filler = contractReservation(`filler${nonce}`, "runner-a")
        const takeover = { ...original, holder: "runner-b" }
        const results = yield* Effect.all(
          [
            Effect.result(a.replace(ACCOUNT, CHAIN, nonce, expected, filler)),
            Effect.result(b.replace(ACCOUNT, CHAIN, nonce, expected, takeover))
          ],
          { concurrency: 2 }
        )
        assert.strictEqual(results.filter((r) => r._tag === "Success").length, 1, `race ${nonce}`)
        const row = yield* a.get(ACCOUNT, CHAIN, nonce)
        assert.strictEqual(row?.revision, 1)
        const winner = results[0]._tag === "Success" ? filler : takeover
        assert.strictEqual(row?.transactionHash, winner.transactionHash)
        assert.strictEqual(row?.holder, winner.holder)
      }
    }), 60_000)
}
