/**
 * The bounds of a proof-of-work search, checked here for every solver (the reference, the worker pool, the TypeScript
 * searcher); the native addon checks the same bounds in C, since it is called from worker threads directly.
 * Each check returns what is wrong, or undefined: callers turn it into a ValidationError (user input) or a RangeError
 * (a value that was checked already, so a bad one is a programming error).
 */

/** The largest nonce: the contract takes it as uint64. */
export const MAX_NONCE = (1n << 64n) - 1n

/**
 * The largest difficulty the solver takes. The contract's field is a uint8, but 2^64 nonces can never be expected to
 * reach more than 64 zero bits, and the configured range is 16..32.
 */
export const MAX_DIFFICULTY = 64

export const difficultyProblem = (difficulty: number): string | undefined =>
  !Number.isInteger(difficulty) || difficulty < 0 || difficulty > MAX_DIFFICULTY
    ? `difficulty ${difficulty} is out of range 0..${MAX_DIFFICULTY}`
    : undefined

export const nonceProblem = (nonce: bigint): string | undefined =>
  nonce < 0n || nonce > MAX_NONCE ? `nonce ${nonce} is out of range 0..2^64-1` : undefined

export const nonceRangeProblem = (from: bigint, to: bigint): string | undefined =>
  from < 0n || to > MAX_NONCE || from > to ? `nonce range ${from}..${to} is empty or outside the uint64 range` : undefined

export const challengeProblem = (challenge: Uint8Array): string | undefined =>
  challenge.length !== 32 ? `a challenge is 32 bytes, got ${challenge.length}` : undefined

/** Everything a search of [from, to] takes, checked: the first problem found, or undefined. */
export const searchProblem = (
  challenge: Uint8Array,
  from: bigint,
  to: bigint,
  difficulty: number
): string | undefined => challengeProblem(challenge) ?? nonceRangeProblem(from, to) ?? difficultyProblem(difficulty)

/** Throws the problem as a RangeError, for arguments that should have been checked already. */
export const rejectProblem = (problem: string | undefined): void => {
  if (problem !== undefined) throw new RangeError(problem)
}
