import { Cache, Duration, Effect, Layer, Option } from "effect"
import { type Hex, keccak256, parseEventLogs, type TransactionReceipt, zeroAddress } from "viem"
import { type MiningError, ValidationError } from "../../domain/errors.ts"
import {
  ChainFingerprint,
  ChunkClaim,
  MinerIdentity,
  OnChainSubmission,
  RoundInfo,
  type SignedTransaction,
  type Submission
} from "../../domain/mining.ts"
import { Chain } from "../../services/Chain.ts"
import { miningRegistryAbi } from "./MiningRegistryArtifact.ts"
import { connectRegistry, type ViemEndpointOptions } from "./viemConnection.ts"
import { decodeRevert } from "./viemErrors.ts"
import { makeViemFinalization } from "./viemFinalization.ts"
import { read as readRpc } from "./viemRpc.ts"
import { makeViemVerification } from "./viemVerification.ts"
import { makeViemWriter, receiptOf, type WriterOptions } from "./viemWriter.ts"

/** Where the adapter reaches the registry, with which key, and how patiently. */
export interface ViemChainOptions extends ViemEndpointOptions {
  /** The account's nonce ledger, when other processes sign for the same account (viemWriter.ts `nonces`). */
  readonly nonces?: WriterOptions["nonces"]
  /** The account's signer elsewhere (viemWriter.ts `remote`): this chain's writes are signed there. */
  readonly remote?: WriterOptions["remote"]
}

/**
 * The Chain port on viem against a MiningRegistry: reads translated into domain values, writes through one nonce
 * writer per account (viemWriter.ts), reverts decoded into ChainRevertErrors (viemErrors.ts). It decides nothing
 * about mining transactions: what a revert or a dropped transaction means is the core's call.
 */
export const make = (options: ViemChainOptions) => makeWithSigner(options).pipe(Effect.map(({ port }) => port))

/**
 * The Chain port and its writer's signing side (`AccountSigning`), which a fleet's account signer entity serves to the
 * other runners (layers/fleet/accountSigner.ts).
 */
export const makeWithSigner = Effect.fnUntraced(function*(options: ViemChainOptions) {
  const receiptTimeout = Duration.fromInputUnsafe(options.receiptTimeout ?? "60 seconds")
  const pollingInterval = Duration.fromInputUnsafe(options.pollingInterval ?? "250 millis")

  const { account, chain, chainId, client, registry, wallet } = yield* connectRegistry({
    rpcUrl: options.rpcUrl,
    registry: options.registry,
    privateKey: options.privateKey,
    pollingInterval,
    registryField: "R3MES_REGISTRY_ADDRESS",
    rpcField: "R3MES_RPC_URL",
    keyHint: "R3MES_PRIVATE_KEY must be 0x followed by 64 hex digits",
    ...(options.rpcTimeout === undefined ? {} : { rpcTimeout: options.rpcTimeout })
  })
  const identity = new MinerIdentity({ chainId, registry, miner: account.address })
  const isOurs = (address: string) => address.toLowerCase() === account.address.toLowerCase()

  const writer = makeViemWriter({
    client,
    wallet,
    chain,
    account,
    registry,
    abi: miningRegistryAbi,
    receiptTimeout,
    pollingInterval,
    nonces: options.nonces,
    remote: options.remote
  })

  const read = <F extends string>(functionName: F, args: ReadonlyArray<unknown> = []) =>
    readRpc(`calling ${functionName}(${args.join(", ")})`, () =>
      client.readContract({ address: registry, abi: miningRegistryAbi, functionName, args } as never)) as Effect.Effect<
        any,
        MiningError
      >

  const events = <N extends "RoundOpened" | "ChunkClaimed" | "GradientSubmitted" | "ChunkCompleted">(
    eventName: N,
    args: Record<string, unknown>,
    blocks: { readonly fromBlock: bigint; readonly toBlock?: bigint } = { fromBlock: 0n }
  ) =>
    readRpc(`reading ${eventName} events`, () =>
      client.getContractEvents({ address: registry, abi: miningRegistryAbi, eventName, args, strict: true, ...blocks } as never)
    ) as Effect.Effect<ReadonlyArray<any>, MiningError>

  /** Block `blockNumber`, none past the head (a failure to answer is a failure, not a "none"). */
  const blockOrNone = (blockNumber: bigint) =>
    readRpc(`reading block ${blockNumber}`, () => client.getBlock({ blockNumber })).pipe(
      Effect.map(Option.some),
      Effect.catch((error) =>
        /BlockNotFound|could not be found/i.test(error.message) ? Effect.succeed(Option.none()) : Effect.fail(error)
      )
    )

  // A block's timestamp never changes (a block of another fork has another hash), and a verifier meets many
  // submissions per block: each block is read once. Entries are a few bytes; the capacity spans a long catch-up.
  const blockTimes = yield* Cache.makeWith(
    (hash: Hex) =>
      readRpc(`reading block ${hash}`, () => client.getBlock({ blockHash: hash })).pipe(
        Effect.map((block) => Number(block.timestamp))
      ),
    { capacity: 65_536, timeToLive: (exit) => (exit._tag === "Success" ? Duration.infinity : Duration.zero) }
  )

  /** A GradientSubmitted log (viem's, strict) as the domain's submission, with its block's timestamp. */
  const submissionOf = Effect.fnUntraced(function*(log: any, completed: boolean) {
    return new OnChainSubmission({
      roundId: log.args.roundId,
      chunkId: Number(log.args.chunkId),
      miner: log.args.miner,
      cid: log.args.cid,
      gradientHash: log.args.gradientHash,
      powNonce: log.args.powNonce,
      blockNumber: log.blockNumber,
      completed,
      txHash: log.transactionHash,
      blockHash: log.blockHash,
      blockTime: yield* Cache.get(blockTimes, log.blockHash as Hex)
    })
  })

  // The genesis hash as block 1 names its parent: anvil regenerates block 0 (with a new timestamp, so a new hash)
  // each time it loads a saved state, while the blocks it saved keep theirs. On any other chain the two agree.
  const fingerprint = Effect.gen(function*() {
    const first = yield* blockOrNone(1n)
    const genesisHash = Option.isSome(first)
      ? first.value.parentHash
      : (yield* readRpc("reading the genesis block", () => client.getBlock({ blockNumber: 0n }))).hash!
    const current = yield* readRpc("reading the registry's code", () => client.getCode({ address: registry }))
    return new ChainFingerprint({ genesisHash, registryCodeHash: keccak256(current ?? "0x") })
  }).pipe(Effect.withSpan("Chain.fingerprint"))

  // A round's spec is immutable once opened: read it from RoundOpened once, and again only after a failure. The
  // capacity holds far more rounds than a miner works on (a devnet opens one every 256 chunks).
  const specs = yield* Cache.makeWith(
    Effect.fnUntraced(function*(roundId: bigint) {
      const logs = yield* events("RoundOpened", { roundId })
      const spec = logs[0]?.args.spec as string | undefined
      if (spec === undefined) {
        return yield* new ValidationError({ message: `no RoundOpened event for round ${roundId}` })
      }
      return spec
    }),
    { capacity: 4096, timeToLive: (exit) => (exit._tag === "Success" ? Duration.infinity : Duration.zero) }
  )
  const roundSpec = (roundId: bigint) => Cache.get(specs, roundId)

  const getRound = Effect.fn("Chain.getRound")(function*(roundId: bigint) {
    const [modelCid, specHash, chunkCount, difficulty, deadline, nextChunk, submittedCount, exists] = yield* read(
      "getRound",
      [roundId]
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

  /**
   * The head when a settled round was last cached. A chain that no longer holds that block lost state (a devnet
   * restarted from an older dump, a reorg): what it says of those rounds may have changed (a lost submission makes a
   * full round open again), so the cache is dropped — one block read per call while anything is cached.
   */
  let settledAt: { readonly number: bigint; readonly hash: string } | undefined

  const rounds = Effect.gen(function*() {
    if (settledAt !== undefined && Option.getOrUndefined(yield* blockHash(settledAt.number)) !== settledAt.hash) {
      settledRounds.clear()
      settledAt = undefined
    }
    const count: bigint = yield* read("roundCount")
    const result: Array<RoundInfo> = []
    for (let i = 0n; i < count; i++) {
      const known = settledRounds.get(i)
      if (known !== undefined) {
        result.push(known)
        continue
      }
      const round = yield* getRound(yield* read("roundIdAt", [i]))
      if (Option.isSome(round)) {
        result.push(round.value)
        if (settled(round.value)) {
          // The newest caching point: a chain that still holds it holds every older one.
          settledAt = yield* head
          settledRounds.set(i, round.value)
        }
      }
    }
    return result as ReadonlyArray<RoundInfo>
  }).pipe(Effect.withSpan("Chain.rounds"))

  const claimOf = (roundId: bigint, receipt: TransactionReceipt) =>
    Effect.gen(function*() {
      const event = parseEventLogs({ abi: miningRegistryAbi, logs: receipt.logs, eventName: "ChunkClaimed", strict: true })
        .find((log) => log.address.toLowerCase() === registry.toLowerCase())
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

  const claimChunk = Effect.fn("Chain.claimChunk")(function*(roundId: bigint) {
    return yield* claimOf(roundId, yield* writer.write("claimChunk", [roundId]))
  })

  const submitGradient = Effect.fn("Chain.submitGradient")(function*(
    submission: Submission,
    beforeBroadcast?: (signed: SignedTransaction) => Effect.Effect<void, MiningError>
  ) {
    yield* Effect.annotateCurrentSpan({
      "r3mes.round_id": submission.roundId.toString(),
      "r3mes.chunk_id": submission.chunkId,
      "r3mes.cid": submission.cid
    })
    const receipt = yield* writer.write("submitGradient", [
      submission.roundId,
      submission.chunkId,
      submission.cid,
      submission.gradientHash,
      submission.powNonce
    ], beforeBroadcast, true)
    return receiptOf(receipt)
  })

  const completeChunk = Effect.fn("Chain.completeChunk")(function*(roundId: bigint, chunkId: number) {
    yield* writer.write("completeChunk", [roundId, chunkId], undefined, true)
    return true
  })

  const getSubmission = Effect.fn("Chain.getSubmission")(function*(roundId: bigint, chunkId: number) {
    const [miner, cid, gradientHash, powNonce, blockNumber, completed] = yield* read("getSubmission", [roundId, chunkId])
    if (miner === zeroAddress) return Option.none<OnChainSubmission>()
    // The transaction and block come from the event, in the very block the registry recorded.
    const logs = yield* events("GradientSubmitted", { roundId, chunkId }, { fromBlock: blockNumber, toBlock: blockNumber })
    const log = logs[0]
    if (log === undefined) {
      return yield* new ValidationError({
        message: `round ${roundId} chunk ${chunkId} is submitted in block ${blockNumber}, which has no GradientSubmitted for it`
      })
    }
    return Option.some(
      new OnChainSubmission({
        roundId,
        chunkId,
        miner,
        cid,
        gradientHash,
        powNonce,
        blockNumber,
        completed,
        txHash: log.transactionHash,
        blockHash: log.blockHash,
        blockTime: yield* Cache.get(blockTimes, log.blockHash as Hex)
      })
    )
  })

  const ownSubmissions = Effect.gen(function*() {
    const submitted = yield* events("GradientSubmitted", { miner: account.address })
    const completed = new Set(
      (yield* events("ChunkCompleted", { miner: account.address })).map((l) => `${l.args.roundId}:${l.args.chunkId}`)
    )
    return (yield* Effect.forEach(submitted, (l) =>
      submissionOf(l, completed.has(`${l.args.roundId}:${l.args.chunkId}`)))) as ReadonlyArray<OnChainSubmission>
  }).pipe(Effect.withSpan("Chain.ownSubmissions"))

  const latest = readRpc("reading the latest block", () => client.getBlock({ blockTag: "latest" })).pipe(
    Effect.tap((block) => Effect.sync(() => (newestBlockTime = Math.max(newestBlockTime, Number(block.timestamp)))))
  )
  const now = Effect.map(latest, (block) => Number(block.timestamp))
  const head = Effect.map(latest, (block) => ({ number: block.number, hash: block.hash as string }))

  const finalization = makeViemFinalization({ read })

  /**
   * Leases of ours in rounds still open (not finalized), unexpired and unsubmitted: our ChunkClaimed events whose
   * lease has not run out, minus our GradientSubmitted events, each left confirmed in storage (one read per candidate,
   * not per claim).
   */
  const ownClaims = Effect.gen(function*() {
    const time = yield* now
    const open = (yield* rounds).filter((r) => r.deadline >= time && r.submittedCount < r.chunkCount)
    const claims: Array<ChunkClaim> = []
    for (const round of open) {
      const submitted = new Set(
        (yield* events("GradientSubmitted", { roundId: round.roundId, miner: account.address })).map((l) => Number(l.args.chunkId))
      )
      const latest = new Map<number, any>()
      for (const log of yield* events("ChunkClaimed", { roundId: round.roundId, miner: account.address })) {
        latest.set(Number(log.args.chunkId), log)
      }
      // A finalized round takes no submission: its leases are worth nothing (read only when there are any).
      if (latest.size > 0 && Option.isSome(yield* finalization.getFinalization(round.roundId))) continue
      for (const [chunkId, log] of latest) {
        if (submitted.has(chunkId) || Number(log.args.leaseExpiry) < time) continue
        const [holder, leaseExpiry] = yield* read("getClaim", [round.roundId, chunkId])
        if (!isOurs(holder) || Number(leaseExpiry) < time) continue
        claims.push(
          new ChunkClaim({ roundId: round.roundId, chunkId, miner: holder, leaseExpiry: Number(leaseExpiry), txHash: log.transactionHash })
        )
      }
    }
    return claims as ReadonlyArray<ChunkClaim>
  }).pipe(Effect.withSpan("Chain.ownClaims"))

  const blockHash = Effect.fn("Chain.blockHash")(function*(blockNumber: bigint) {
    return Option.flatMap(yield* blockOrNone(blockNumber), (block) => Option.fromNullishOr(block.hash as string | null))
  })

  const verification = makeViemVerification({ read, events, writer, account, submissionOf })

  const port = Chain.of({
    identity: Effect.succeed(identity),
    fingerprint,
    rounds,
    getRound,
    claimChunk,
    ownClaims,
    submitGradient,
    transactionStatus: writer.transactionStatus,
    rebroadcast: writer.rebroadcast,
    completeChunk,
    getSubmission,
    ownSubmissions,
    ...verification,
    ...finalization,
    head,
    blockHash,
    now
  })
  return { port, signer: writer.signer }
})

export const ViemChain = {
  /**
   * The Chain port on a MiningRegistry reached over JSON-RPC (http(s) or ws(s)). Fails to build when the registry is
   * not there.
   */
  layer: (options: ViemChainOptions): Layer.Layer<Chain, MiningError> => Layer.effect(Chain, make(options))
} as const

/** For tests and tools that need the revert decoder on its own. */
export { decodeRevert }
