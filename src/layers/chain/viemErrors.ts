import { BaseError, ContractFunctionRevertedError } from "viem"
import { classify } from "../../domain/classify.ts"
import {
  AuthenticationError,
  ChainRevertError,
  type MiningError,
  NetworkError,
  RetryableError,
  TimeoutError
} from "../../domain/errors.ts"

const stringify = (value: unknown): string => (typeof value === "bigint" ? value.toString() : String(value))

/** The revert of a MiningRegistry call, decoded from viem's error chain; undefined when the error is not a revert. */
export const decodeRevert = (error: unknown): ChainRevertError | undefined => {
  if (!(error instanceof BaseError)) return undefined
  const reverted = error.walk((e) => e instanceof ContractFunctionRevertedError)
  if (!(reverted instanceof ContractFunctionRevertedError)) return undefined
  const errorName = reverted.data?.errorName ?? (reverted.reason !== undefined ? "Error" : "UnknownRevert")
  const args = (reverted.data?.args ?? (reverted.reason !== undefined ? [reverted.reason] : [])).map(stringify)
  return new ChainRevertError({
    message: `MiningRegistry reverted with ${errorName}(${args.join(", ")})`,
    errorName,
    args,
    ...(reverted.signature !== undefined ? { cause: `selector ${reverted.signature}` } : {})
  })
}

/**
 * viem's errors → the miner's. viem names its errors precisely, so they are matched by name along the cause chain
 * before falling back to the generic classifier. The private key never appears: viem does not put it in messages.
 */
export const fromViemError = (error: unknown, context: string): MiningError => {
  const revert = decodeRevert(error)
  if (revert !== undefined) return revert
  if (error instanceof BaseError) {
    const names = new Set<string>()
    error.walk((e) => {
      if (e instanceof Error) names.add(e.name)
      return false
    })
    const message = `${context}: ${error.shortMessage}`
    const cause = error.details || undefined
    const base = cause === undefined ? { message } : { message, cause }
    if (names.has("InsufficientFundsError")) {
      return new AuthenticationError({ ...base, hint: "fund the miner account (R3MES_PRIVATE_KEY's address)" })
    }
    if (names.has("NonceTooLowError") || names.has("NonceTooHighError") || names.has("FeeCapTooLowError")) {
      return new RetryableError(base)
    }
    if (names.has("WaitForTransactionReceiptTimeoutError")) {
      return new TimeoutError({ ...base, hint: "the transaction may still be mined; its hash is journaled" })
    }
    if (names.has("TimeoutError")) return new TimeoutError({ ...base, hint: "the RPC node did not answer in time" })
    if (names.has("HttpRequestError") || names.has("SocketClosedError") || names.has("WebSocketRequestError")) {
      const classified = classify(error, context)
      // A 4xx from the node is the request's fault, not the network's.
      if (classified._tag !== "ValidationError" && classified._tag !== "AuthenticationError") {
        return new NetworkError({ ...base, service: "chain", hint: "is the RPC node (R3MES_RPC_URL) running?" })
      }
      return classified
    }
  }
  return classify(error, context)
}
