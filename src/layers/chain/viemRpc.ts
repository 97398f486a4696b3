import { Effect, Schedule } from "effect"
import { isRetryable, type MiningError } from "../../domain/errors.ts"
import { fromViemError, type FromViemErrorOptions } from "./viemErrors.ts"

/**
 * One JSON-RPC call through viem, its failure translated into the miner's errors; `options.account` (the sender) lets
 * an "insufficient funds" hint name the address to fund.
 */
export const rpc = <A>(context: string, f: () => Promise<A>, options?: FromViemErrorOptions): Effect.Effect<A, MiningError> =>
  Effect.tryPromise({ try: f, catch: (e) => fromViemError(e, context, options) })

/**
 * A read (eth_call, a block, logs, a receipt, a nonce) is idempotent: a lost or refused answer is asked again at
 * once, twice, before it fails the operation. A claim or a submission takes a dozen reads; measured through a proxy
 * that loses one answer in five, a claim without this succeeded one time in ten and the miner spent its time backing
 * off, with it 40 transactions took a third of the time.
 */
export const read = <A>(context: string, f: () => Promise<A>, options?: FromViemErrorOptions): Effect.Effect<A, MiningError> =>
  rpc(context, f, options).pipe(Effect.retry({ schedule: Schedule.exponential("20 millis", 3), times: 2, while: isRetryable }))
