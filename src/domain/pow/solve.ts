import { Effect } from "effect"
import { ResourceError, ValidationError } from "../errors.ts"
import { PowSolution } from "../mining.ts"
import { challenge, type ChallengeInput } from "./challenge.ts"
import { bytesToHex } from "./hex.ts"
import { difficultyProblem, MAX_NONCE, nonceRangeProblem } from "./limits.ts"
import { makePowSearcher } from "./search.ts"

/**
 * The reference solver: the pure-TypeScript search the fast solvers are checked and measured against, and the request
 * checks every solver shares.
 */

export interface SolveOptions {
  /** First nonce tried (default 0). */
  readonly startNonce?: bigint
  /** Last nonce tried, inclusive (default 2^64 − 1). */
  readonly maxNonce?: bigint
  /** Nonces hashed between two yields to the scheduler (default 4096). */
  readonly batchSize?: number
}

/** What the solver needs: the challenge's inputs and the difficulty. `PowInput` is one. */
export interface SolveInput extends ChallengeInput {
  readonly difficulty: number
}

export const DEFAULT_BATCH_SIZE = 4096

/** A search every solver can run: a valid difficulty, a non-empty uint64 nonce range, an encodable challenge. */
export interface PreparedSearch {
  readonly challengeBytes: Uint8Array
  readonly difficulty: number
  readonly startNonce: bigint
  readonly maxNonce: bigint
}

/** Checks a solve request the same way for every solver, and computes its challenge. */
export const prepareSearch = Effect.fnUntraced(function*(
  input: SolveInput,
  options: { readonly startNonce?: bigint | undefined; readonly maxNonce?: bigint | undefined } = {}
): Effect.fn.Return<PreparedSearch, ValidationError> {
  const difficulty = input.difficulty
  const badDifficulty = difficultyProblem(difficulty)
  if (badDifficulty !== undefined) {
    return yield* new ValidationError({
      message: `proof-of-work ${badDifficulty}: the solver cannot search it`,
      field: "difficulty",
      hint: "a difficulty over 64 leading zero bits cannot be expected within the uint64 nonce range"
    })
  }
  const startNonce = options.startNonce ?? 0n
  const maxNonce = options.maxNonce ?? MAX_NONCE
  const badRange = nonceRangeProblem(startNonce, maxNonce)
  if (badRange !== undefined) return yield* new ValidationError({ message: badRange, field: "nonce" })
  const challengeBytes = yield* Effect.try({
    try: () => challenge(input),
    catch: (cause) => {
      const detail = cause instanceof Error ? cause.message : String(cause)
      return new ValidationError({ message: `cannot encode the proof-of-work challenge: ${detail}`, cause: detail })
    }
  })
  return { challengeBytes, difficulty, startNonce, maxNonce }
})

/** Every solver's answer when no nonce of the range meets the difficulty. */
export const exhaustedRange = (search: PreparedSearch): ResourceError =>
  new ResourceError({
    message: `no nonce in ${search.startNonce}..${search.maxNonce} meets difficulty ${search.difficulty} ` +
      `(${search.maxNonce - search.startNonce + 1n} hashes)`,
    resource: "pow nonce range",
    hint: "the nonce range is exhausted: lower the difficulty or widen the range"
  })

/**
 * Finds the smallest nonce in [startNonce, maxNonce] whose pow hash meets `input.difficulty`, hashing in batches
 * and yielding to the scheduler between batches (a macrotask turn), so the search is interruptible and other fibers
 * and I/O keep running. Reports the number of hashes computed. An exhausted range fails with a ResourceError; bad
 * inputs (difficulty outside 0..64, malformed fields, an empty or out-of-range nonce range) with a ValidationError.
 */
export const solveReference = Effect.fnUntraced(function*(
  input: SolveInput,
  options: SolveOptions = {}
): Effect.fn.Return<PowSolution, ValidationError | ResourceError> {
  const prepared = yield* prepareSearch(input, options)
  const { challengeBytes, difficulty, maxNonce, startNonce } = prepared
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
    return yield* new ValidationError({ message: `batch size ${batchSize} is not a positive integer`, field: "batchSize" })
  }

  const searcher = makePowSearcher(challengeBytes)
  const step = BigInt(batchSize)
  let from = startNonce
  for (;;) {
    const to = maxNonce - from < step ? maxNonce : from + step - 1n
    const nonce = searcher.search(from, to, difficulty)
    if (nonce >= 0n) {
      return new PowSolution({
        nonce,
        powHash: bytesToHex(searcher.hash(nonce)),
        hashes: Number(nonce - startNonce + 1n)
      })
    }
    if (to === maxNonce) {
      return yield* exhaustedRange(prepared)
    }
    from = to + 1n
    yield* Effect.yieldNow
  }
})
