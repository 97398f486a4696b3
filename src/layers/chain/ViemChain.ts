import { Duration, Effect, Layer, Option, Redacted, Schedule, Semaphore } from "effect"
import {
  createPublicClient,
  createWalletClient,
  defineChain,
  encodeFunctionData,
  type Hex,
  http,
  keccak256,
  parseEventLogs,
  type PublicClient,
  type TransactionReceipt,
  zeroAddress
} from "viem"
import { type PrivateKeyAccount, privateKeyToAccount } from "viem/accounts"
import {
  AuthenticationError,
  type ChainRevertError,
  type MiningError,
  ValidationError
} from "../../domain/errors.ts"
import {
  ChunkClaim,
  MinerIdentity,
  OnChainSubmission,
  RoundInfo,
  SignedTransaction,
  type Submission,
  SubmissionReceipt
} from "../../domain/mining.ts"
import { Chain } from "../../services/Chain.ts"
import { miningRegistryAbi } from "./MiningRegistryArtifact.ts"
import { decodeRevert, fromViemError } from "./viemErrors.ts"

export interface ViemChainOptions {
  readonly rpcUrl: string
  readonly registry: string
  readonly privateKey: Redacted.Redacted<string>
  /** Per RPC request (default 10 s). */
  readonly rpcTimeout?: Duration.Input
  /** How long to wait for a receipt (default 60 s). */
  readonly receiptTimeout?: Duration.Input
  /** Receipt polling interval (default 250 ms; anvil mines instantly). */
  readonly pollingInterval?: Duration.Input
}

type WriteFunction = "claimChunk" | "submitGradient" | "completeChunk"

/** The quick receipt looks before viem's watcher: 5 ms, doubling, five retries (see waitForReceipt). */
const quickReceiptDelay = "5 millis"
const quickReceiptRetries = 5

/**
 * The Chain port on viem against a MiningRegistry.
 *
 * Writes are simulated first (a revert is decoded into a ChainRevertError without spending gas), then signed
 * locally with an explicit nonce and broadcast as raw bytes: the transaction hash is known before it is sent.
 * One nonce writer per account: nonce allocation, signing and broadcast happen under a single permit, so
 * concurrent transactions of this miner never collide. After any failed broadcast the nonce is re-read from the
 * chain, since a broadcast that failed on our side may still have reached the node.
 */
export const make = Effect.fnUntraced(function*(options: ViemChainOptions) {
  const rpcTimeoutMs = Duration.toMillis(Duration.fromInputUnsafe(options.rpcTimeout ?? "10 seconds"))
  const receiptTimeoutMs = Duration.toMillis(Duration.fromInputUnsafe(options.receiptTimeout ?? "60 seconds"))
  const pollingIntervalMs = Duration.toMillis(Duration.fromInputUnsafe(options.pollingInterval ?? "250 millis"))

  if (!/^0x[0-9a-fA-F]{40}$/.test(options.registry)) {
    return yield* new ValidationError({
      message: `registry address ${options.registry} is not a 0x-prefixed 20-byte address`,
      field: "R3MES_REGISTRY_ADDRESS"
    })
  }
  const registry = options.registry as Hex
  const account: PrivateKeyAccount = yield* Effect.try({
    try: () => privateKeyToAccount(Redacted.value(options.privateKey) as Hex),
    catch: () =>
      new AuthenticationError({
        message: "the private key is not a valid secp256k1 key",
        hint: "R3MES_PRIVATE_KEY must be 0x followed by 64 hex digits"
      })
  })

  const transport = http(options.rpcUrl, { timeout: rpcTimeoutMs, retryCount: 0 })
  const bootstrap = createPublicClient({ transport })
  const chainId = yield* Effect.tryPromise({
    try: () => bootstrap.getChainId(),
    catch: (e) => fromViemError(e, `cannot reach the chain at ${options.rpcUrl}`)
  })
  const chain = defineChain({
    id: chainId,
    name: `r3mes-${chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [options.rpcUrl] } }
  })
  const client: PublicClient = createPublicClient({ chain, transport, pollingInterval: pollingIntervalMs })
  const wallet = createWalletClient({ chain, transport, account })
  const identity = new MinerIdentity({ chainId, registry, miner: account.address })

  const rpc = <A>(context: string, f: () => Promise<A>): Effect.Effect<A, MiningError> =>
    Effect.tryPromise({ try: f, catch: (e) => fromViemError(e, context) })

  const code = yield* rpc("reading the registry's code", () => client.getCode({ address: registry }))
  if (code === undefined || code === "0x") {
    return yield* new ValidationError({
      message: `no contract at ${registry} on chain ${chainId}`,
      field: "R3MES_REGISTRY_ADDRESS",
      hint: "check R3MES_REGISTRY_ADDRESS and R3MES_RPC_URL"
    })
  }

  const signLocally = (request: object): Promise<Hex> => {
    const { account: _account, chain: _chain, ...transaction } = request as Record<string, unknown>
    return account.signTransaction({ ...transaction, chainId } as never)
  }

  const nonceWriter = yield* Semaphore.make(1)
  let nextNonce: number | undefined

  /**
   * A node that mines as it receives (anvil's automine) has the receipt within milliseconds of the broadcast, but
   * viem's watcher, once its first look misses, waits a whole polling interval: measured on the devnet, one write in
   * ten paid 250 ms that way. So the receipt is first asked for at 0, 5, 10, 20, 40 and 80 ms (155 ms, six calls);
   * only then does the watcher take over, at the polling interval, with its replacement detection.
   */
  const waitForReceipt = (what: string, hash: Hex) =>
    Effect.tryPromise(() => client.getTransactionReceipt({ hash })).pipe(
      Effect.retry({ schedule: Schedule.exponential(quickReceiptDelay, 2), times: quickReceiptRetries }),
      Effect.catch(() =>
        rpc(`waiting for the receipt of ${what} ${hash}`, () =>
          client.waitForTransactionReceipt({ hash, timeout: receiptTimeoutMs, pollingInterval: pollingIntervalMs }))
      )
    )

  /**
   * Simulates, then signs with an explicit nonce, runs `beforeBroadcast` (the journal's intent) and broadcasts;
   * returns the receipt.
   */
  const write = (
    functionName: WriteFunction,
    args: ReadonlyArray<unknown>,
    beforeBroadcast?: (signed: SignedTransaction) => Effect.Effect<void, MiningError>
  ) =>
    Effect.gen(function*() {
      const call = { address: registry, abi: miningRegistryAbi, functionName, args, account } as never
      const simulated = yield* rpc(`simulating ${functionName}`, () => client.simulateContract(call))
      const data = encodeFunctionData({ abi: miningRegistryAbi, functionName, args } as never)
      const hash = yield* Semaphore.withPermit(
        nonceWriter,
        Effect.gen(function*() {
          if (nextNonce === undefined) {
            nextNonce = yield* rpc("reading the account nonce", () =>
              client.getTransactionCount({ address: account.address, blockTag: "pending" }))
          }
          const nonce = nextNonce
          const request = yield* rpc(`preparing ${functionName}`, () =>
            wallet.prepareTransactionRequest({
              account,
              chain,
              to: registry,
              data,
              nonce,
              gas: ((simulated as { request: { gas?: bigint } }).request.gas ?? undefined) as never
            }))
          // Signed with the local key: the wallet action would first ask the node for its chain id (one more
          // round trip per write) to compare it with the one this client was built for, which make() read already.
          const raw = yield* rpc(`signing ${functionName}`, () => signLocally(request))
          const hash = keccak256(raw)
          if (beforeBroadcast !== undefined) yield* beforeBroadcast(new SignedTransaction({ hash, raw, nonce }))
          yield* rpc(`broadcasting ${functionName}`, () => client.sendRawTransaction({ serializedTransaction: raw })).pipe(
            Effect.tapError(() => Effect.sync(() => (nextNonce = undefined)))
          )
          nextNonce = nonce + 1
          return hash
        })
      )
      const receipt = yield* waitForReceipt(functionName, hash)
      if (receipt.status !== "success") {
        // Mined but reverted (state changed between simulation and inclusion): replay it to learn why.
        const reason = yield* rpc(`replaying ${functionName}`, () => client.simulateContract(call)).pipe(
          Effect.as(undefined),
          Effect.catch((e) => Effect.succeed(e))
        )
        return yield* (reason !== undefined && reason._tag === "ChainRevertError"
          ? Effect.fail(reason)
          : Effect.fail(new ValidationError({ message: `${functionName} ${hash} reverted on chain` })))
      }
      return receipt
    })

  const readRound = (roundId: bigint) =>
    rpc(`reading round ${roundId}`, () =>
      client.readContract({ address: registry, abi: miningRegistryAbi, functionName: "getRound", args: [roundId] }))

  // A round's spec is immutable once opened: read it from RoundOpened once.
  const specs = new Map<bigint, string>()
  const roundSpec = (roundId: bigint) =>
    specs.has(roundId) ? Effect.succeed(specs.get(roundId)!) : rpc(`reading the spec of round ${roundId}`, () =>
      client.getContractEvents({
        address: registry,
        abi: miningRegistryAbi,
        eventName: "RoundOpened",
        args: { roundId },
        fromBlock: 0n,
        strict: true
      })).pipe(
        Effect.flatMap((logs) => {
          const spec = logs[0]?.args.spec
          if (spec === undefined) {
            return Effect.fail(new ValidationError({ message: `no RoundOpened event for round ${roundId}` }))
          }
          specs.set(roundId, spec)
          return Effect.succeed(spec)
        })
      )

  const getRound = Effect.fn("Chain.getRound")(function*(roundId: bigint) {
    const [modelCid, specHash, chunkCount, difficulty, deadline, nextChunk, submittedCount, exists] = yield* readRound(
      roundId
    )
    if (!exists) return Option.none<RoundInfo>()
    return Option.some(
      new RoundInfo({
        roundId,
        modelCid,
        spec: yield* roundSpec(roundId),
        specHash,
        chunkCount,
        difficulty,
        deadline: Number(deadline),
        nextChunk,
        submittedCount
      })
    )
  })

  /**
   * Rounds that can no longer change, by index: every chunk submitted (nothing left to claim or submit), or past
   * the deadline by the newest block `now` has seen (the contract refuses both after it). The task source reads the
   * rounds before every claim; re-reading settled ones cost two calls per round ever opened, so on a devnet opening a
   * round every 256 chunks each claim got slower as the miner ran (measured: 7 eth_calls a transaction on a fresh
   * devnet, 15 after six rounds). Now only the open rounds are read.
   */
  const settledRounds = new Map<bigint, RoundInfo>()
  let newestBlockTime = 0
  const settled = (round: RoundInfo) => round.submittedCount >= round.chunkCount || round.deadline < newestBlockTime

  const rounds = Effect.gen(function*() {
    const count = yield* rpc("reading the round count", () =>
      client.readContract({ address: registry, abi: miningRegistryAbi, functionName: "roundCount" }))
    const result: Array<RoundInfo> = []
    for (let i = 0n; i < count; i++) {
      const known = settledRounds.get(i)
      if (known !== undefined) {
        result.push(known)
        continue
      }
      const roundId = yield* rpc(`reading round #${i}`, () =>
        client.readContract({ address: registry, abi: miningRegistryAbi, functionName: "roundIdAt", args: [i] }))
      const round = yield* getRound(roundId)
      if (Option.isSome(round)) {
        result.push(round.value)
        if (settled(round.value)) settledRounds.set(i, round.value)
      }
    }
    return result as ReadonlyArray<RoundInfo>
  }).pipe(Effect.withSpan("Chain.rounds"))

  const eventOf = <N extends "ChunkClaimed" | "GradientSubmitted">(receipt: TransactionReceipt, eventName: N) =>
    parseEventLogs({ abi: miningRegistryAbi, logs: receipt.logs, eventName, strict: true }).find(
      (log) => log.address.toLowerCase() === registry.toLowerCase()
    )

  const claimChunk = Effect.fn("Chain.claimChunk")(function*(roundId: bigint) {
    const receipt = yield* write("claimChunk", [roundId])
    const event = eventOf(receipt, "ChunkClaimed")
    if (event === undefined) {
      return yield* new ValidationError({ message: `claimChunk ${receipt.transactionHash} emitted no ChunkClaimed` })
    }
    return new ChunkClaim({
      roundId,
      chunkId: event.args.chunkId,
      miner: event.args.miner,
      leaseExpiry: Number(event.args.leaseExpiry),
      txHash: receipt.transactionHash
    })
  })

  /** Our earlier submission of the same chunk and gradient: success for an idempotent re-submission. */
  /** The receipt of the transaction that put our submission of this chunk on chain (from its event). */
  const receiptOfSubmission = (submission: Submission) =>
    Effect.gen(function*() {
      const logs = yield* rpc("finding our earlier submission", () =>
        client.getContractEvents({
          address: registry,
          abi: miningRegistryAbi,
          eventName: "GradientSubmitted",
          args: { roundId: submission.roundId, chunkId: submission.chunkId },
          fromBlock: 0n,
          strict: true
        }))
      const log = logs[0]
      if (log === undefined) {
        return yield* new ValidationError({
          message: `no GradientSubmitted event for round ${submission.roundId} chunk ${submission.chunkId}`
        })
      }
      return new SubmissionReceipt({ txHash: log.transactionHash, blockNumber: log.blockNumber, alreadySubmitted: true })
    })

  /** AlreadySubmitted by us with the same gradient is success: the earlier transaction's receipt. */
  const ourEarlierSubmission = (submission: Submission, revert: ChainRevertError) => {
    const [, , miner, gradientHash] = revert.args
    return miner?.toLowerCase() === account.address.toLowerCase() &&
        gradientHash?.toLowerCase() === submission.gradientHash.toLowerCase()
      ? receiptOfSubmission(submission)
      : Effect.fail(revert)
  }

  const submitGradient = Effect.fn("Chain.submitGradient")(function*(
    submission: Submission,
    beforeBroadcast?: (signed: SignedTransaction) => Effect.Effect<void, MiningError>
  ) {
    yield* Effect.annotateCurrentSpan({
      "r3mes.round_id": submission.roundId.toString(),
      "r3mes.chunk_id": submission.chunkId,
      "r3mes.cid": submission.cid
    })
    return yield* write("submitGradient", [
      submission.roundId,
      submission.chunkId,
      submission.cid,
      submission.gradientHash,
      submission.powNonce
    ], beforeBroadcast).pipe(
      Effect.map((receipt) =>
        new SubmissionReceipt({
          txHash: receipt.transactionHash,
          blockNumber: receipt.blockNumber,
          alreadySubmitted: false
        })
      ),
      Effect.catchTag("ChainRevertError", (revert) =>
        revert.errorName === "AlreadySubmitted" ? ourEarlierSubmission(submission, revert) : Effect.fail(revert))
    )
  })

  /** Our submission of this chunk and gradient, if the chain has it (whatever transaction put it there). */
  const findOurSubmission = (submission: Submission) =>
    getSubmission(submission.roundId, submission.chunkId).pipe(
      Effect.map((found) =>
        Option.filter(found, (s) =>
          s.miner.toLowerCase() === account.address.toLowerCase() &&
          s.gradientHash.toLowerCase() === submission.gradientHash.toLowerCase())
      )
    )

  const resumeSubmission = Effect.fn("Chain.resumeSubmission")(function*(
    submission: Submission,
    signed: SignedTransaction
  ) {
    const hash = signed.hash as Hex
    const receiptOf = (receipt: TransactionReceipt) =>
      receipt.status === "success"
        ? Effect.succeed(
          new SubmissionReceipt({ txHash: receipt.transactionHash, blockNumber: receipt.blockNumber, alreadySubmitted: false })
        )
        : settled
    // Whatever happened to our transaction, the chain's record of the chunk is the final word.
    const settled: Effect.Effect<SubmissionReceipt, MiningError> = Effect.gen(function*() {
      const ours = yield* findOurSubmission(submission)
      if (Option.isNone(ours)) {
        return yield* new ValidationError({
          message: `signed submission ${hash} was not mined and the chain holds no submission of ours for round ${submission.roundId} chunk ${submission.chunkId}`,
          hint: "its nonce was used by another transaction; the chunk has to be submitted again"
        })
      }
      return yield* receiptOfSubmission(submission)
    })
    const existing = yield* rpc(`reading the receipt of ${hash}`, () => client.getTransactionReceipt({ hash })).pipe(
      Effect.map(Option.some),
      Effect.catch(() => Effect.succeed(Option.none<TransactionReceipt>()))
    )
    if (Option.isSome(existing)) return yield* receiptOf(existing.value)
    const ours = yield* findOurSubmission(submission)
    if (Option.isSome(ours)) return yield* settled
    nextNonce = undefined
    const sent = yield* rpc(`re-broadcasting ${hash}`, () =>
      client.sendRawTransaction({ serializedTransaction: signed.raw as Hex })).pipe(Effect.exit)
    if (sent._tag === "Failure") {
      // "already known" means it is in the pool; a used nonce means it never will be: the chain decides which.
      const mined = yield* waitForReceipt("submitGradient", hash).pipe(
        Effect.timeoutOption("3 seconds"),
        Effect.catch(() => Effect.succeedNone)
      )
      if (Option.isSome(mined)) return yield* receiptOf(mined.value)
      return yield* settled
    }
    return yield* receiptOf(yield* waitForReceipt("submitGradient", hash))
  })

  const completeChunk = Effect.fn("Chain.completeChunk")(function*(roundId: bigint, chunkId: number) {
    yield* write("completeChunk", [roundId, chunkId])
    return true
  })

  const getSubmission = Effect.fn("Chain.getSubmission")(function*(roundId: bigint, chunkId: number) {
    const [miner, cid, gradientHash, powNonce, blockNumber, completed] = yield* rpc(
      `reading the submission of round ${roundId} chunk ${chunkId}`,
      () =>
        client.readContract({
          address: registry,
          abi: miningRegistryAbi,
          functionName: "getSubmission",
          args: [roundId, chunkId]
        })
    )
    if (miner === zeroAddress) return Option.none<OnChainSubmission>()
    return Option.some(
      new OnChainSubmission({ roundId, chunkId, miner, cid, gradientHash, powNonce, blockNumber, completed })
    )
  })

  const now = rpc("reading the latest block", () => client.getBlock({ blockTag: "latest" })).pipe(
    Effect.map((block) => {
      const time = Number(block.timestamp)
      newestBlockTime = Math.max(newestBlockTime, time)
      return time
    })
  )

  return Chain.of({
    identity: Effect.succeed(identity),
    rounds,
    getRound,
    claimChunk,
    submitGradient,
    resumeSubmission,
    completeChunk,
    getSubmission,
    now
  })
})

export const ViemChain = {
  /** The Chain port on a MiningRegistry reached over JSON-RPC. Fails to build when the registry is not there. */
  layer: (options: ViemChainOptions): Layer.Layer<Chain, MiningError> => Layer.effect(Chain, make(options))
} as const

/** For tests and tools that need the revert decoder on its own. */
export { decodeRevert }
