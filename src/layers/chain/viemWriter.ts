import { Clock, Duration, Effect, Option, Schedule, Semaphore } from "effect"
import {
  type Abi,
  type Chain as ViemChainDefinition,
  encodeFunctionData,
  type Hex,
  keccak256,
  parseTransaction,
  type PrivateKeyAccount,
  type PublicClient,
  type TransactionReceipt,
  type WalletClient
} from "viem"
import { isRetryable, type MiningError, RetryableError, TimeoutError, ValidationError } from "../../domain/errors.ts"
import { SignedTransaction, SubmissionReceipt, type TransactionStatus } from "../../domain/mining.ts"
import { type AccountSigning, type CallToSign, lendPatienceMs } from "../../services/AccountSigning.ts"
import type { NonceLedger } from "../../services/NonceLedger.ts"
import { fromViemError } from "./viemErrors.ts"
import { read, rpc } from "./viemRpc.ts"

export interface WriterOptions {
  readonly client: PublicClient
  readonly wallet: WalletClient
  readonly chain: ViemChainDefinition
  readonly account: PrivateKeyAccount
  readonly registry: Hex
  readonly abi: Abi
  /** How long a write waits for its receipt. */
  readonly receiptTimeout: Duration.Duration
  /** Receipt polling interval once the quick looks missed. */
  readonly pollingInterval: Duration.Duration
  /**
   * The account's nonce ledger, when other processes may sign for the account (a fleet): every signed transaction
   * is reserved there before it is journaled or sent, and a nonce another holder reserved first is never broadcast
   * over. `holder` names this writer (runner and boot) in the ledger.
   */
  readonly nonces?: { readonly ledger: NonceLedger["Service"]; readonly holder: string } | undefined
  /**
   * The account's signer elsewhere (a fleet on Effect's cluster: layers/fleet/accountSigner.ts): this writer then
   * signs nothing itself. It asks the signer for the signed bytes of each call (reserved in the ledger and lent to
   * it), journals its intent, and broadcasts them; gap fills go to the signer too. Requires `nonces`' ledger to be
   * the signer's (the same Postgres).
   */
  readonly remote?: AccountSigning | undefined
}

/**
 * Signing again after the ledger said another holder took the nonce. Two signers writing at once race for the same
 * next nonce every time (the winner goes on to the next one at once, where the loser looks next): the loser waits a
 * random moment first, growing with each loss, so the winner's next reservation is usually in the ledger by then.
 */
const maxNonceRaces = 10
const raceBackoff = (race: number) => Duration.millis(Math.random() * Math.min(100, 5 * 2 ** race))

/** The quick receipt looks: 0, 5, 10, 20, 40 and 80 ms (see `deliver`). */
const quickLooks = [0, 5, 5, 10, 20, 40]
/** A node still without anything at a nonce below ours this long after a write lost earlier transactions. */
const gapPatienceMs = 1_500
/** Re-sent while waiting: the node may never have received the bytes (a request lost on the way). */
const resendEveryMs = 1_000

/** A node's answer to bytes it already has, or to a nonce already mined: not a failure of the send. */
const alreadyThere = (error: unknown): boolean => {
  const texts: Array<string> = []
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    texts.push(e.message, (e as { details?: string }).details ?? "", e.name)
  }
  return /already known|already imported|nonce too low|nonce has already been used|replacement transaction underpriced|known transaction|NonceTooLowError/i
    .test(texts.join(" "))
}

export const receiptOf = (receipt: TransactionReceipt, alreadySubmitted = false) =>
  new SubmissionReceipt({
    txHash: receipt.transactionHash,
    blockNumber: receipt.blockNumber,
    blockHash: receipt.blockHash,
    alreadySubmitted
  })

/**
 * Writes to the registry from one account: simulated first (a revert is decoded without spending gas), then signed
 * locally with an explicit nonce — so the hash is known before the chain sees it — and broadcast as raw bytes.
 *
 * One nonce writer per account: nonce allocation, signing, the caller's intent (`beforeBroadcast`) and the first
 * broadcast happen under one permit, so this miner's transactions never collide. A nonce is spent once its
 * transaction was handed to the node or journaled: a lost answer is followed by the same bytes again, never by another
 * transaction on the same nonce. The nonce is read from the chain again only when the node proves it lost earlier
 * transactions (a restarted devnet) or another writer used it, or when bytes this writer let go unsent are re-sent.
 */
export const makeViemWriter = (options: WriterOptions) => {
  const { abi, account, chain, client, registry, wallet } = options
  const permit = Semaphore.makeUnsafe(1)
  let nextNonce: number | undefined

  const nonceAt = (blockTag: "latest" | "pending") =>
    read(`reading the account nonce (${blockTag})`, () => client.getTransactionCount({ address: account.address, blockTag }))

  const signLocally = (request: object): Promise<Hex> => {
    const { account: _account, chain: _chain, ...transaction } = request as Record<string, unknown>
    return account.signTransaction({ ...transaction, chainId: chain.id } as never)
  }

  /** The receipt of `hash`, none while it is not mined. */
  const findReceipt = (hash: Hex) =>
    Effect.tryPromise({
      try: () => client.getTransactionReceipt({ hash }).then(Option.some),
      catch: (e) => e
    }).pipe(
      Effect.catch((e) =>
        e instanceof Error && e.name === "TransactionReceiptNotFoundError"
          ? Effect.succeed(Option.none<TransactionReceipt>())
          : Effect.fail(fromViemError(e, `reading the receipt of ${hash}`))
      )
    )

  /** Sends the bytes; "already known" and "nonce too low" mean the node has them or mined that nonce: fine here. */
  const send = (signed: SignedTransaction) =>
    Effect.tryPromise({
      try: () => client.sendRawTransaction({ serializedTransaction: signed.raw as Hex }),
      catch: (e) => e
    }).pipe(
      Effect.asVoid,
      Effect.catch((e) => (alreadyThere(e) ? Effect.void : Effect.fail(fromViemError(e, `broadcasting ${signed.hash}`, { account: account.address }))))
    )

  const transactionStatus = Effect.fn("Chain.transactionStatus")(function*(signed: SignedTransaction) {
    const hash = signed.hash as Hex
    const mined = (receipt: TransactionReceipt): TransactionStatus => ({
      _tag: "Mined",
      success: receipt.status === "success",
      receipt: receiptOf(receipt)
    })
    const first = yield* findReceipt(hash)
    if (Option.isSome(first)) return mined(first.value)
    if ((yield* nonceAt("latest")) <= signed.nonce) return { _tag: "Pending" } as TransactionStatus
    // Its nonce is used: by this very transaction if it was mined between the two looks, else by another one.
    const again = yield* findReceipt(hash)
    return Option.isSome(again) ? mined(again.value) : ({ _tag: "Dropped" } as TransactionStatus)
  })

  /**
   * Waits for the receipt: asked at 0, 5, 10, 20, 40 and 80 ms first (a node that mines as it receives, like anvil's
   * automine, has it within milliseconds, while viem's watcher waited a whole polling interval after its first miss:
   * measured on the devnet, one write in ten paid 250 ms that way), then every polling interval. Failed looks are
   * retried (an answer lost on the way is not a lost transaction); the same bytes are re-sent every second; a
   * transaction dropped for good, or stuck behind a nonce the node lost, fails as retryable.
   */
  const deliver = Effect.fnUntraced(function*(what: string, signed: SignedTransaction) {
    const hash = signed.hash as Hex
    const started = yield* Clock.currentTimeMillis
    let lastSend = started
    let gapSince: number | undefined
    let failures = 0
    for (let look = 0;; look++) {
      const delay = look < quickLooks.length ? quickLooks[look]! : Duration.toMillis(options.pollingInterval)
      if (delay > 0) yield* Effect.sleep(Duration.millis(delay))
      const now = yield* Clock.currentTimeMillis
      if (now - started > Duration.toMillis(options.receiptTimeout)) {
        return yield* new TimeoutError({
          message: `no receipt for ${what} ${hash} within ${Duration.format(options.receiptTimeout)}`,
          hint: "the transaction may still be mined; its hash is known"
        })
      }
      const found = yield* Effect.result(findReceipt(hash))
      if (found._tag === "Success" && Option.isSome(found.success)) return found.success.value
      if (found._tag === "Failure") {
        if (!isRetryable(found.failure) || ++failures > 20) return yield* found.failure
        continue
      }
      if (look < quickLooks.length) continue
      const status = yield* Effect.result(transactionStatus(signed))
      if (status._tag === "Success" && status.success._tag === "Mined") return yield* findReceiptOrFail(hash)
      if (status._tag === "Success" && status.success._tag === "Dropped") {
        // Another writer of the account used the nonce: ours is stale.
        nextNonce = undefined
        return yield* new RetryableError({
          message: `${what} ${hash} was dropped: another transaction used its nonce ${signed.nonce}`,
          hint: "sent again with a new nonce"
        })
      }
      const pending = yield* Effect.result(nonceAt("pending"))
      if (pending._tag === "Success" && pending.success < signed.nonce) {
        gapSince ??= now
        if (now - gapSince > gapPatienceMs && options.nonces !== undefined) {
          // With a ledger every nonce below ours is reserved by someone: the node gets those bytes (or fillers).
          yield* (options.remote === undefined
            ? Semaphore.withPermit(permit)(fillGapBelow(signed.nonce))
            : options.remote.fillGapBelow(signed.nonce)).pipe(Effect.ignore)
          gapSince = undefined
        } else if (now - gapSince > gapPatienceMs) {
          // The node has nothing at some nonce below ours (it lost transactions, e.g. a devnet restarted from an
          // older state): later writes start again from the chain's nonce.
          nextNonce = undefined
          return yield* new RetryableError({
            message: `${what} ${hash} waits behind nonce ${pending.success}, which the node does not have`,
            hint: "the node lost earlier transactions; writing again from the chain's nonce"
          })
        }
      } else {
        gapSince = undefined
      }
      if (now - lastSend >= resendEveryMs) {
        lastSend = now
        yield* send(signed).pipe(Effect.ignore)
      }
    }
  })

  const findReceiptOrFail = (hash: Hex) =>
    findReceipt(hash).pipe(
      Effect.flatMap(Option.match({
        onSome: Effect.succeed,
        onNone: () => Effect.fail(new RetryableError({ message: `the receipt of ${hash} vanished` }))
      }))
    )

  /**
   * Nonces this writer reserved in the ledger and never handed to a node (their `beforeBroadcast` failed, or the
   * node refused them outright), with the hash reserved: the next transaction at that nonce replaces the row
   * (compare-and-set on hash and holder) instead of losing to its own reservation.
   */
  const unsent = new Map<number, string>()
  /** Nonces whose bytes this writer, as the account's signer, lent to a caller: hash, and until when (`lendPatienceMs`). */
  const lent = new Map<number, { readonly hash: string; readonly until: number }>()

  /** The nonce to sign at when this writer has none in hand: the chain's, or past every reserved one. */
  const freshNonce = Effect.gen(function*() {
    const pending = yield* nonceAt("pending")
    if (options.nonces === undefined) return pending
    // A nonce of ours the node never got comes first: skipping it would leave a gap every later write waits behind.
    const ownUnsent = [...unsent.keys()].filter((n) => n >= pending).sort((a, b) => a - b)[0]
    if (ownUnsent !== undefined) return ownUnsent
    const reserved = yield* options.nonces.ledger.next(account.address, chain.id)
    return Math.max(pending, reserved ?? 0)
  })

  /** Records the signed bytes at their nonce in the ledger (a no-op without one); NonceTaken when another holds it. */
  const reserve = (signed: SignedTransaction) => {
    const fence = options.nonces
    if (fence === undefined) return Effect.void
    const reservation = { transactionHash: signed.hash, signedBytes: signed.raw, holder: fence.holder }
    const ours = unsent.get(signed.nonce)
    return (ours === undefined
      ? fence.ledger.reserve(account.address, chain.id, signed.nonce, reservation)
      : fence.ledger.replace(account.address, chain.id, signed.nonce, { transactionHash: ours, holder: fence.holder }, reservation)
    ).pipe(Effect.tap(() => Effect.sync(() => unsent.set(signed.nonce, signed.hash))))
  }

  /**
   * A transaction of the account with these very call data, reserved in the ledger at a nonce not mined yet and not
   * ours to replace: another signer's (a runner that died, this runner's previous boot) that the node has or will be
   * given by the next gap fill. For a call its arguments name (a submission), that is this write already.
   */
  const reservedSameCall = Effect.fnUntraced(function*(data: Hex) {
    const fence = options.nonces
    if (fence === undefined) return undefined
    const latest = yield* nonceAt("latest")
    const rows = yield* fence.ledger.list(account.address, chain.id, { fromNonce: latest, limit: 256 })
    for (const row of rows) {
      if (unsent.has(row.nonce)) continue
      const parsed = yield* Effect.try({
        try: () => parseTransaction(row.signedBytes as Hex),
        catch: () => undefined
      }).pipe(Effect.orElseSucceed(() => undefined))
      if (parsed?.to?.toLowerCase() === registry.toLowerCase() && parsed.data?.toLowerCase() === data.toLowerCase()) {
        return new SignedTransaction({ hash: row.transactionHash, raw: row.signedBytes, nonce: row.nonce })
      }
    }
    return undefined
  })

  /**
   * A reservation whose intent (`beforeBroadcast`) failed: its transaction is about to be undone (its gradient
   * unpinned), but its bytes sit in the ledger, and any signer of the account filling a gap would send them — a
   * submission on chain whose transaction was rolled back. So the nonce is filled at once with a no-op (fillNonce,
   * as for bytes of ours the node never got), and the intent's failure goes back to the caller. When another signer
   * took the row over first, the bytes are the account's and will be sent: the intent is journaled again and the
   * write goes on. Without a ledger nobody else sends them: the next write signs over them. When the ledger cannot be
   * reached either (the fleet's Postgres down), the row stays; this writer's next write replaces it.
   */
  const unreserve = Effect.fnUntraced(function*(
    candidate: SignedTransaction,
    beforeBroadcast: (signed: SignedTransaction) => Effect.Effect<void, MiningError>,
    failure: MiningError
  ): Effect.fn.Return<void, MiningError> {
    const fence = options.nonces
    if (fence === undefined) return yield* failure
    const filled = yield* Effect.result(
      fillNonce(candidate.nonce).pipe(
        Effect.andThen(fence.ledger.get(account.address, chain.id, candidate.nonce)),
        Effect.retry({ schedule: Schedule.exponential("100 millis", 2), times: 4, while: isRetryable })
      )
    )
    if (filled._tag === "Failure") {
      yield* Effect.logWarning(
        `nonce ${candidate.nonce}: the intent of ${candidate.hash} failed (${failure.message}) and its reservation ` +
          `could not be filled with a no-op (${filled.failure.message}); the next write of this signer replaces it`
      )
      return yield* failure
    }
    nextNonce = undefined
    if (filled.success?.transactionHash.toLowerCase() !== candidate.hash.toLowerCase()) return yield* failure
    unsent.delete(candidate.nonce)
    yield* beforeBroadcast(candidate)
  })

  /**
   * Signs the call at the account's next free nonce and reserves it (with a ledger), then `afterReserve` under the
   * same uninterruptible step; a nonce another holder took is signed over at a later one. Under the nonce permit.
   */
  const signAndReserve = Effect.fnUntraced(function*(
    functionName: string,
    data: Hex,
    gas: bigint | undefined,
    afterReserve: (candidate: SignedTransaction) => Effect.Effect<void, MiningError>
  ) {
    for (let race = 0;; race++) {
      const nonce = nextNonce ?? (yield* freshNonce)
      const request = yield* read(`preparing ${functionName}`, () =>
        wallet.prepareTransactionRequest({ account, chain, to: registry, data, nonce, gas } as never))
      // Signed with the local key: the wallet action would first ask the node for its chain id (one more round trip
      // per write) to compare it with the one this client was built for.
      const raw = yield* rpc(`signing ${functionName}`, () => signLocally(request))
      const candidate = new SignedTransaction({ hash: keccak256(raw), raw, nonce })
      // From here the nonce belongs to this transaction: reserved, it is the account's whoever sends it; journaled,
      // it may be re-sent by recovery; sent, the node may have it even when its answer is lost.
      const taken = yield* Effect.uninterruptible(
        reserve(candidate).pipe(
          Effect.andThen(afterReserve(candidate)),
          Effect.andThen(Effect.sync(() => (nextNonce = nonce + 1))),
          Effect.as(undefined),
          Effect.catchTag("NonceTaken", (e) => Effect.succeed(e))
        )
      )
      if (taken === undefined) return candidate
      // Another signer of the account holds that nonce: its bytes are the account's, ours are never broadcast. A
      // nonce of ours it took over is not ours to fill any more (else every later write would pick it first again).
      unsent.delete(candidate.nonce)
      nextNonce = undefined
      if (race + 1 >= maxNonceRaces) {
        return yield* new RetryableError({
          message: `${functionName}: ${maxNonceRaces} nonces in a row were taken by another signer of ${account.address} (last: ${taken.message})`,
          hint: "two processes sign for this account: run one signer per account (the fleet's) or give each miner its own key"
        })
      }
      yield* Effect.sleep(raceBackoff(race))
    }
  })

  /** Bytes refused outright by the node (e.g. insufficient funds): it holds nothing at their nonce. */
  const refusedByNode = (signed: SignedTransaction) =>
    Effect.sync(() => {
      lent.delete(signed.nonce)
      if (nextNonce === signed.nonce + 1) nextNonce = signed.nonce
      if (options.nonces !== undefined) unsent.set(signed.nonce, signed.hash)
    })

  /**
   * The writer's side as the account's signer for other writers (`AccountSigning`), under the same nonce permit as its
   * own writes: a lend is a reservation whose intent is the caller's; a release is `unreserve` without the intent.
   */
  const signer: AccountSigning = {
    lend: Effect.fnUntraced(function*(call: CallToSign) {
      const already = call.idempotent ? yield* reservedSameCall(call.data) : undefined
      if (already !== undefined) {
        yield* Effect.logWarning(
          `${call.functionName}: the account's transaction ${already.hash} at nonce ${already.nonce} is this very ` +
            `call, signed before: lending it rather than signing a second one`
        )
        return { signed: already, reservedBefore: true }
      }
      const signed = yield* signAndReserve(call.functionName, call.data, call.gas, (candidate) =>
        Clock.currentTimeMillis.pipe(Effect.map((now) => {
          unsent.delete(candidate.nonce)
          lent.set(candidate.nonce, { hash: candidate.hash, until: now + lendPatienceMs })
        })))
      return { signed, reservedBefore: false }
    }, Semaphore.withPermit(permit)),
    release: Effect.fnUntraced(function*(signed: SignedTransaction) {
      const lend = lent.get(signed.nonce)
      // Past its patience the lend is over: a gap fill may have sent the bytes, so they are the account's.
      if (lend === undefined || lend.hash.toLowerCase() !== signed.hash.toLowerCase()) return "kept" as const
      lent.delete(signed.nonce)
      unsent.set(signed.nonce, signed.hash)
      const filled = yield* fillNonce(signed.nonce).pipe(
        Effect.andThen(options.nonces === undefined ? Effect.succeed(undefined) : options.nonces.ledger.get(account.address, chain.id, signed.nonce)),
        Effect.retry({ schedule: Schedule.exponential("100 millis", 2), times: 4, while: isRetryable })
      )
      nextNonce = undefined
      if (filled !== undefined && filled.transactionHash.toLowerCase() === signed.hash.toLowerCase()) {
        unsent.delete(signed.nonce)
        return "kept" as const
      }
      return "undone" as const
    }, Semaphore.withPermit(permit)),
    refused: (signed) => Semaphore.withPermit(permit)(refusedByNode(signed)),
    fillGapBelow: (nonce) => Semaphore.withPermit(permit)(fillGapBelow(nonce))
  }

  /**
   * A write whose bytes the account's signer elsewhere signs (`options.remote`): lent, the intent journaled here, an
   * intent that failed given back (and journaled again if the signer says the bytes are the account's by now).
   */
  const signRemotely = Effect.fnUntraced(function*(
    remote: AccountSigning,
    call: CallToSign,
    beforeBroadcast: ((signed: SignedTransaction) => Effect.Effect<void, MiningError>) | undefined
  ) {
    const intent = beforeBroadcast ?? (() => Effect.void)
    const { reservedBefore, signed } = yield* remote.lend(call)
    const journaled = yield* Effect.result(intent(signed))
    if (journaled._tag === "Failure") {
      if (reservedBefore) return yield* journaled.failure
      const released = yield* Effect.result(remote.release(signed))
      if (released._tag === "Failure") {
        yield* Effect.logWarning(
          `nonce ${signed.nonce}: the intent of ${signed.hash} failed (${journaled.failure.message}) and the signer ` +
            `could not be told (${released.failure.message}); it sends the bytes once their lend ends`
        )
        return yield* journaled.failure
      }
      if (released.success === "undone") return yield* journaled.failure
      yield* intent(signed)
    }
    return signed
  })

  const signAndSend = Effect.fnUntraced(function*(
    functionName: string,
    data: Hex,
    gas: bigint | undefined,
    beforeBroadcast: ((signed: SignedTransaction) => Effect.Effect<void, MiningError>) | undefined,
    idempotent: boolean
  ) {
    const already = idempotent ? yield* reservedSameCall(data) : undefined
    if (already !== undefined) {
      // Signed before by another signer of the account and reserved: the caller's intent is those bytes, sent as
      // they are. Signing again would put a second, reverting transaction of the same call on chain.
      yield* Effect.logWarning(
        `${functionName}: the account's transaction ${already.hash} at nonce ${already.nonce} is this very call, ` +
          `signed before by another signer: sending it rather than a second one`
      )
      yield* Effect.uninterruptible(beforeBroadcast === undefined ? Effect.void : beforeBroadcast(already))
      yield* send(already).pipe(Effect.retry({ schedule: Schedule.exponential("20 millis", 3), times: 2, while: isRetryable }), Effect.ignore)
      return already
    }
    const signed = yield* signAndReserve(functionName, data, gas, (candidate) =>
      beforeBroadcast === undefined
        ? Effect.void
        : beforeBroadcast(candidate).pipe(Effect.catch((failure) => unreserve(candidate, beforeBroadcast, failure))))
    unsent.delete(signed.nonce)
    return yield* sendSigned(signed, refusedByNode)
  }, Semaphore.withPermit(permit))

  /**
   * The first broadcast of signed bytes, retried briefly. Refused outright by the node (e.g. insufficient funds): it
   * holds nothing at this nonce, `refused` is told; a journaled transaction is then the chain's to judge (pending
   * while its nonce is free, dropped once reused).
   */
  const sendSigned = Effect.fnUntraced(function*(
    signed: SignedTransaction,
    refused: (signed: SignedTransaction) => Effect.Effect<void, MiningError>
  ) {
    const sent = yield* Effect.result(send(signed).pipe(
      Effect.retry({ schedule: Schedule.exponential("20 millis", 3), times: 2, while: isRetryable })
    ))
    if (sent._tag === "Failure" && !isRetryable(sent.failure)) {
      yield* refused(signed).pipe(Effect.ignore)
      return yield* sent.failure
    }
    return signed
  })

  /** Signs (here or at the account's signer), runs the intent, broadcasts. */
  const signIntendAndSend = (
    functionName: string,
    data: Hex,
    gas: bigint | undefined,
    beforeBroadcast: ((signed: SignedTransaction) => Effect.Effect<void, MiningError>) | undefined,
    idempotent: boolean
  ) => {
    const remote = options.remote
    if (remote === undefined) return signAndSend(functionName, data, gas, beforeBroadcast, idempotent)
    // Uninterruptible from the lend to the intent's outcome: a lent nonce is either journaled or given back.
    return Effect.uninterruptible(signRemotely(remote, { functionName, data, gas, idempotent }, beforeBroadcast)).pipe(
      Effect.flatMap((signed) => sendSigned(signed, remote.refused))
    )
  }

  /**
   * Simulates, signs, runs `beforeBroadcast` (the caller's intent), broadcasts and returns the receipt. A mined
   * revert is replayed to decode its reason.
   */
  const write = Effect.fnUntraced(function*(
    functionName: string,
    args: ReadonlyArray<unknown>,
    beforeBroadcast?: (signed: SignedTransaction) => Effect.Effect<void, MiningError>,
    /** The arguments name the transaction (a submission, a completion; not a claim): see `reservedSameCall`. */
    idempotent = false
  ) {
    const call = { address: registry, abi, functionName, args, account } as never
    const simulated = yield* read(`simulating ${functionName}`, () => client.simulateContract(call))
    const data = encodeFunctionData({ abi, functionName, args } as never)
    const gas = (simulated as { request: { gas?: bigint } }).request.gas
    const signed = yield* signIntendAndSend(functionName, data, gas, beforeBroadcast, idempotent)
    const receipt = yield* deliver(functionName, signed)
    if (receipt.status !== "success") {
      // Mined but reverted (state changed between simulation and inclusion): replay it to learn why.
      const reason = yield* rpc(`replaying ${functionName}`, () => client.simulateContract(call)).pipe(
        Effect.as(undefined),
        Effect.catch((e) => Effect.succeed(e))
      )
      return yield* (reason !== undefined && reason._tag === "ChainRevertError"
        ? Effect.fail(reason)
        : Effect.fail(new ValidationError({ message: `${functionName} ${signed.hash} reverted on chain` })))
    }
    return receipt
  })

  /**
   * Sends the nonces below `nonce` that the node does not have as empty transfers to ourselves, once the node has
   * lacked them for `gapPatienceMs`: a node that lost transactions (a devnet restarted without its last seconds)
   * queues ours behind nonces nobody will send again, and a journaled submission queued there would wait for the
   * round's deadline. Runs under the nonce permit (see `rebroadcast`), so no write of ours takes those nonces meanwhile.
   */
  const gapSince = new Map<number, number>()

  /**
   * One missing nonce filled. Without a ledger: an empty transfer to ourselves. With one, the ledger says whose the
   * nonce is: another holder's reserved bytes are sent as they are (they are the account's: its signer may have
   * journaled them before it died); bytes of ours the node never got (unjournaled, or refused) are replaced by the
   * filler; a nonce nobody reserved gets the filler, reserved first.
   */
  const fillNonce = Effect.fnUntraced(function*(n: number) {
    const lend = lent.get(n)
    if (lend !== undefined) {
      // Its caller is journaling its intent, or giving the nonce back: wait for it, unless it has gone silent.
      if ((yield* Clock.currentTimeMillis) < lend.until) return
      lent.delete(n)
    }
    const fence = options.nonces
    const row = fence === undefined ? undefined : yield* fence.ledger.get(account.address, chain.id, n)
    if (row !== undefined && !unsent.has(n)) {
      // Another holder's bytes: taken over (same bytes, this holder) before they are sent, so that holder, believing
      // them unsent (its intent failed, its send was refused, it was stopped), cannot replace what a node may now
      // hold — its compare-and-set fails and it moves on. Whatever holds the row after that is what is sent.
      const sending = row.holder === fence!.holder ? row : yield* fence!.ledger.replace(
        account.address,
        chain.id,
        n,
        { transactionHash: row.transactionHash, holder: row.holder },
        { transactionHash: row.transactionHash, signedBytes: row.signedBytes, holder: fence!.holder }
      ).pipe(
        Effect.as(row),
        Effect.catchTag("NonceTaken", () => fence!.ledger.get(account.address, chain.id, n).pipe(Effect.map((now) => now ?? row)))
      )
      return yield* send(new SignedTransaction({ hash: sending.transactionHash, raw: sending.signedBytes, nonce: n }))
    }
    const request = yield* read(`preparing a filler at nonce ${n}`, () =>
      wallet.prepareTransactionRequest({ account, chain, to: account.address, value: 0n, nonce: n, gas: 21_000n } as never))
    const raw = yield* rpc(`signing a filler at nonce ${n}`, () => signLocally(request))
    const filler = new SignedTransaction({ hash: keccak256(raw), raw, nonce: n })
    const taken = yield* reserve(filler).pipe(Effect.as(undefined), Effect.catchTag("NonceTaken", (e) => Effect.succeed(e)))
    if (taken !== undefined) {
      // Taken meanwhile: whatever holds it now is what the nonce carries.
      unsent.delete(n)
      const now = yield* fence!.ledger.get(account.address, chain.id, n)
      if (now !== undefined) yield* send(new SignedTransaction({ hash: now.transactionHash, raw: now.signedBytes, nonce: n }))
      return
    }
    unsent.delete(n)
    yield* send(filler)
  })
  const fillGapBelow = Effect.fnUntraced(function*(nonce: number) {
    const pending = yield* nonceAt("pending")
    if (pending >= nonce) {
      gapSince.delete(nonce)
      return
    }
    const now = yield* Clock.currentTimeMillis
    const since = gapSince.get(nonce) ?? now
    gapSince.set(nonce, since)
    if (now - since < gapPatienceMs) return
    yield* Effect.logWarning(`the node lacks nonces ${pending}..${nonce - 1} of the account: filling them`)
    for (let n = pending; n < nonce; n++) yield* fillNonce(n)
    gapSince.delete(nonce)
    if (nextNonce !== undefined && nextNonce < nonce) nextNonce = undefined
  })

  /**
   * The same bytes again, and the nonces below them the node lost (see `fillGapBelow`), under the nonce permit. Bytes
   * at or past the nonce this writer would use next are ones it let go without sending (their `beforeBroadcast`
   * failed, or a process before this one signed them): once the node may hold them, the next write reads the nonce
   * from the node again, or it would sign over theirs, be told "nonce too low", and fail as dropped.
   */
  const rebroadcastHere = Effect.fnUntraced(function*(signed: SignedTransaction) {
    yield* send(signed).pipe(
      Effect.ensuring(Effect.sync(() => {
        if (nextNonce !== undefined && signed.nonce >= nextNonce) nextNonce = undefined
      }))
    )
    yield* fillGapBelow(signed.nonce)
  }, Semaphore.withPermit(permit))

  const rebroadcast = (signed: SignedTransaction) =>
    options.remote === undefined
      ? rebroadcastHere(signed)
      : send(signed).pipe(Effect.andThen(options.remote.fillGapBelow(signed.nonce)))

  return { write, transactionStatus, rebroadcast, signer }
}
