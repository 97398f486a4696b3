import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type Context, Duration, Effect, Layer, Logger, Option, Redacted, type Scope } from "effect"
import { keccak256, toHex } from "viem"
import { privateKeyToAccount } from "viem/accounts"
import { devnetRoundPlan } from "../../src/app/devnetRoundPlan.ts"
import { type MinerAdapters, minerLayer } from "../../src/app/minerLayer.ts"
import { classify } from "../../src/domain/classify.ts"
import type { MiningError } from "../../src/domain/errors.ts"
import type { TransactionRecord } from "../../src/domain/TransactionRecord.ts"
import { verdictName, type VerdictName } from "../../src/domain/verification.ts"
import { ChainTaskSource } from "../../src/layers/chain/ChainTaskSource.ts"
import { type RunningDevnet, startDevnet } from "../../src/layers/chain/devnet/Devnet.ts"
import { ViemChain } from "../../src/layers/chain/ViemChain.ts"
import { HeliaStore } from "../../src/layers/ipfs/HeliaStore.ts"
import { OnnxTrainer } from "../../src/layers/onnx/OnnxTrainer.ts"
import { ReferencePowSolver } from "../../src/layers/pow/ReferencePowSolver.ts"
import { sha256Hex } from "../../src/layers/sha256Hex.ts"
import { Chain } from "../../src/services/Chain.ts"
import { GradientStore } from "../../src/services/GradientStore.ts"
import { MiningLoop } from "../../src/services/MiningLoop.ts"
import { Settings } from "../../src/services/Settings.ts"
import { Trainer } from "../../src/services/Trainer.ts"
import { Verifier, type VerifierRunSummary } from "../../src/services/Verifier.ts"
import { reportFormat } from "../../src/services/verification/report.ts"
import { Cheater, type CheaterKind } from "../../src/testing/Cheaters.ts"
import { InMemoryJournal } from "../../src/testing/InMemoryJournal.ts"
import { testMinerConfig } from "../../src/testing/testConfig.ts"

/**
 * Issue 13's honest/dishonest run, in this process on one real devnet: honest miners (OnnxTrainer) and one miner
 * per cheater kind (src/testing/Cheaters.ts around the same OnnxTrainer) each mine a few chunks, one after the
 * other, with the whole miner core (`minerLayer`: ViemChain on its own key, ChainTaskSource, an in-memory journal);
 * then the devnet's verifier account runs `Verifier.runOnce` with an honest OnnxTrainer, and every submission's
 * verdict is read back from the chain beside the report the verifier pinned. Used by
 * test/integration/verification-run.test.ts (small) and bench/verify.ts (bigger, with the cost ratio).
 *
 * Every miner and the verifier share ONE embedded Helia store instance: content reachability across nodes is the
 * e2e test's business (test/e2e/verify.test.ts); here only the judging is under test, so no IPFS networking.
 */

export type MinerKind = "honest" | CheaterKind

export interface VerificationRunPlan {
  readonly honestMiners: number
  /** Chunks each honest miner mines. */
  readonly honestChunks: number
  /** Chunks each cheater mines. */
  readonly cheaterChunks: number
  /** Default: every kind of `Cheater.kinds`. */
  readonly kinds?: ReadonlyArray<CheaterKind>
  /** Called when a miner starts and when the verifier starts (progress on a long bench). */
  readonly onProgress?: (line: string) => void
}

/** One submission on chain, what it should have got and what the verifier recorded. */
export interface JudgedSubmission {
  readonly kind: MinerKind
  readonly miner: string
  readonly round_id: string
  readonly chunk_id: number
  readonly expected: VerdictName
  /** The verdict on chain; null when the verifier recorded none. */
  readonly verdict: VerdictName | null
  /** The raw code on chain (a code this client does not name shows here only). */
  readonly verdict_code: number | null
  /** From the verifier's pinned report (found by the on-chain reportHash); null when not found. */
  readonly reason: string | null
  readonly distances: ReadonlyArray<{ readonly name: string; readonly relative_l2: number | null }> | null
  readonly recomputed: { readonly loss_before: number | null; readonly loss_after: number | null } | null
  /** The miner's training step for this chunk (TransactionRecord.step_ms.training). */
  readonly training_ms: number | null
}

/** A transaction of a miner that did not commit: nothing of it is on chain to judge, so the run is void. */
export interface UncommittedTransaction {
  readonly kind: MinerKind
  readonly miner: string
  readonly state: string
  readonly error: string | null
}

export interface VerificationRunResult {
  readonly submissions: ReadonlyArray<JudgedSubmission>
  readonly uncommitted: ReadonlyArray<UncommittedTransaction>
  readonly verifier: VerifierRunSummary
  /** The verifier's recomputations (its Trainer's train calls), each in ms. */
  readonly recompute_ms: ReadonlyArray<number>
  /** The honest miners' Trainer.train calls, each in ms: the same measure as `recompute_ms`. */
  readonly honest_train_call_ms: ReadonlyArray<number>
  /** The verifier's whole pass (fetch, checks, recomputation, report, chain), ms. */
  readonly verify_pass_ms: number
  /** Warnings and errors logged during the run (the rest is dropped: a test's output stays readable). */
  readonly warnings: ReadonlyArray<string>
}

export const expectedVerdict = (kind: MinerKind): VerdictName =>
  kind === "honest" ? "accepted_exact" : Cheater.expectedVerdict[kind]

/** Miners and verifier train alike: the same provider and defaults, so honest work is bit-identical. */
const honestTrainer = () => OnnxTrainer.layerWithModelStore({ executionProvider: "cpu" })

/** A report is a few kB; anything larger among the pins (the ~200 kB envelopes) is not fetched when looking for them. */
const reportMaxBytes = 64 << 10

/** The devnet's funded accounts the miners use: 0 owns the registry (and the keeper's nonces), 2 is the verifier. */
const devnetMinerAccounts = [3, 4, 5, 6, 7, 8, 9, 1]

const ether1000 = "0x3635c9adc5dea00000"

/**
 * A key for miner `index`: the devnet's accounts first, then keys derived from the index and funded with anvil's
 * `anvil_setBalance` (anvil has only ten accounts; a bench wants more miners than that).
 */
const minerKey = Effect.fnUntraced(function*(devnet: RunningDevnet, index: number) {
  const account = devnetMinerAccounts[index]
  if (account !== undefined) return devnet.accounts[account]!.privateKey
  const key = keccak256(toHex(`r3mes verification run miner ${index}`))
  const address = privateKeyToAccount(key).address
  yield* Effect.tryPromise({
    try: async () => {
      const response = await fetch(devnet.rpcUrl, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "anvil_setBalance", params: [address, ether1000] })
      })
      const body = (await response.json()) as { readonly error?: { readonly message: string } }
      if (body.error !== undefined) throw new Error(body.error.message)
    },
    catch: (e) => classify(e, `funding miner ${index} (${address}) on the devnet`)
  })
  return key
})

/** The run's temporary directory (the store's repository, the data dirs named in configs), removed with the scope. */
const runDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "r3mes-verification-run-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

interface Shared {
  readonly dir: string
  readonly devnet: RunningDevnet
  readonly store: Layer.Layer<GradientStore>
}

const freshDir = (shared: Pick<Shared, "dir">, what: string) => mkdtempSync(join(shared.dir, `${what}-`))

/** One miner on its own key and journal, mining `iterations` chunks one at a time; its final records. */
const mine = Effect.fn("verificationRun.mine")(function*(
  shared: Shared,
  miner: { readonly kind: MinerKind; readonly key: `0x${string}`; readonly iterations: number },
  honestTrainMs: Array<number>
) {
  // One transaction at a time: its training time is then a chunk's alone, comparable with the verifier's.
  const config = testMinerConfig({
    dataDir: freshDir(shared, "miner"),
    transactionTimeout: Duration.minutes(5),
    maxActiveTransactions: 1
  })
  const adapters: MinerAdapters = {
    chain: ViemChain.layer({ rpcUrl: shared.devnet.rpcUrl, registry: shared.devnet.registry, privateKey: Redacted.make(miner.key) }),
    taskSource: ChainTaskSource.layer(),
    gradientStore: shared.store,
    trainer: miner.kind === "honest" ? timed(honestTrainMs, honestTrainer()) : Cheater.layer(miner.kind, honestTrainer()),
    journal: InMemoryJournal.layer(),
    // Difficulty 16: the pure-TS reference solves it in ~0.1 s, no worker threads needed.
    powSolver: ReferencePowSolver.layer
  }
  return yield* Effect.gen(function*() {
    const summary = yield* (yield* MiningLoop).run({ iterations: miner.iterations })
    return summary.records
  }).pipe(Effect.provide(minerLayer(config, adapters)))
})

/** A Trainer timing each `train` call into `samples` (ms): the verifier's recomputations, honest miners' training. */
const timed = <E, R>(samples: Array<number>, layer: Layer.Layer<Trainer, E, R>): Layer.Layer<Trainer, E, R> =>
  Layer.effect(
    Trainer,
    Effect.gen(function*() {
      const trainer = yield* Trainer
      return Trainer.of({
        profile: trainer.profile,
        train: (task, miner, reproduce) =>
          Effect.suspend(() => {
            const started = performance.now()
            return trainer.train(task, miner, reproduce).pipe(
              Effect.tap(() => Effect.sync(() => samples.push(performance.now() - started)))
            )
          })
      })
    })
  ).pipe(Layer.provide(layer))

interface Report {
  readonly format: string
  readonly reason: string
  readonly distances: JudgedSubmission["distances"]
  readonly recomputed: { readonly loss_before: number | null; readonly loss_after: number | null } | null
}

/** The verifier's reports among the store's pins, by sha256 (the on-chain reportHash). */
const reportsByHash = Effect.fnUntraced(function*(store: GradientStore["Service"]) {
  const reports = new Map<string, Report>()
  for (const cid of yield* store.pins) {
    const bytes = yield* Effect.option(store.get(cid, reportMaxBytes))
    if (Option.isNone(bytes)) continue
    try {
      const parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.value)) as Report
      if (parsed.format === reportFormat) reports.set(sha256Hex(bytes.value), parsed)
    } catch {
      // a gradient envelope, not a report
    }
  }
  return reports
})

/** The verifier on the devnet's verifier account: one pass over every submission, then each verdict read back. */
const verify = Effect.fn("verificationRun.verify")(function*(
  shared: Shared,
  mined: ReadonlyArray<{ readonly kind: MinerKind; readonly miner: string; readonly record: TransactionRecord }>
) {
  const recomputeMs: Array<number> = []
  const ports = Layer.mergeAll(
    ViemChain.layer({
      rpcUrl: shared.devnet.rpcUrl,
      registry: shared.devnet.registry,
      privateKey: Redacted.make(shared.devnet.verifier.privateKey)
    }),
    timed(recomputeMs, honestTrainer()).pipe(Layer.provide(shared.store)),
    shared.store,
    InMemoryJournal.layer(),
    // The content is in the shared store: a window that runs out would be a bug, not a slow network.
    Settings.layerOf(testMinerConfig({ dataDir: freshDir(shared, "verifier"), verifyWindow: Duration.seconds(20) }))
  )
  return yield* Effect.gen(function*() {
    const started = performance.now()
    const summary = yield* (yield* Verifier).runOnce
    const passMs = performance.now() - started
    const chain = yield* Chain
    const self = (yield* chain.identity).miner
    const reports = yield* reportsByHash(yield* GradientStore)
    const submissions: Array<JudgedSubmission> = []
    for (const { kind, miner, record } of mined) {
      const onChain = yield* chain.getVerdict(BigInt(record.round_id), record.chunk_id, self)
      const code = Option.isSome(onChain) ? onChain.value.verdict : null
      const report = Option.isSome(onChain) ? reports.get(onChain.value.reportHash.toLowerCase()) : undefined
      submissions.push({
        kind,
        miner,
        round_id: record.round_id,
        chunk_id: record.chunk_id,
        expected: expectedVerdict(kind),
        verdict: code === null ? null : verdictName(code) ?? null,
        verdict_code: code,
        reason: report?.reason ?? null,
        distances: report?.distances ?? null,
        recomputed: report?.recomputed ?? null,
        training_ms: record.step_ms.training
      })
    }
    return { summary, passMs, submissions, recomputeMs }
  }).pipe(Effect.provide(Verifier.layer.pipe(Layer.provideMerge(ports))))
})

/** Keeps warnings and errors for the result; drops the rest (every state change of every miner logs). */
const warningCollector = (warnings: Array<string>) =>
  Logger.layer([
    Logger.make(({ logLevel, message }) => {
      if (logLevel !== "Warn" && logLevel !== "Error" && logLevel !== "Fatal") return
      if (warnings.length < 200) warnings.push(`${logLevel}: ${Array.isArray(message) ? message.join(" ") : String(message)}`)
    })
  ])

/**
 * Runs the plan on a fresh devnet (`mine`'s round plan at difficulty 16, round keeper every 100 ms) and a fresh
 * shared store, all gone when the scope closes. Miners mine one after the other, so each training has the machine.
 */
export const verificationRun = Effect.fn("verificationRun")(function*(
  plan: VerificationRunPlan
): Effect.fn.Return<VerificationRunResult, MiningError, Scope.Scope> {
  const warnings: Array<string> = []
  return yield* Effect.gen(function*() {
    // Acquired first, so released last: after the store and the devnet have stopped.
    const dir = yield* runDir
    // The embedded devnet's rounds (`mine`'s): real model CIDs, which every trainer here checks against the spec.
    const devnet = yield* startDevnet({ keeperInterval: "100 millis", difficulty: 16, roundPlan: devnetRoundPlan(16) })
    const store: Context.Context<GradientStore> = yield* Layer.build(HeliaStore.layer({ dataDir: freshDir({ dir }, "store") }))
    const shared: Shared = { dir, devnet, store: Layer.succeedContext(store) }

    const miners: Array<{ readonly kind: MinerKind; readonly iterations: number }> = [
      ...Array.from({ length: plan.honestMiners }, () => ({ kind: "honest" as const, iterations: plan.honestChunks })),
      ...(plan.kinds ?? Cheater.kinds).map((kind) => ({ kind, iterations: plan.cheaterChunks }))
    ]
    const mined: Array<{ readonly kind: MinerKind; readonly miner: string; readonly record: TransactionRecord }> = []
    const uncommitted: Array<UncommittedTransaction> = []
    const honestTrainMs: Array<number> = []
    for (const [index, { iterations, kind }] of miners.entries()) {
      const key = yield* minerKey(devnet, index)
      const miner = privateKeyToAccount(key).address
      plan.onProgress?.(`miner ${index + 1}/${miners.length} (${kind}, ${miner}): ${iterations} chunks`)
      for (const record of yield* mine(shared, { kind, key, iterations }, honestTrainMs)) {
        if (record.state === "committed") mined.push({ kind, miner, record })
        else uncommitted.push({ kind, miner, state: record.state, error: record.error_message })
      }
    }

    plan.onProgress?.(`verifier (${devnet.verifier.address}): ${mined.length} submissions`)
    const verified = yield* verify(shared, mined)
    return {
      submissions: verified.submissions,
      uncommitted,
      verifier: verified.summary,
      recompute_ms: verified.recomputeMs,
      honest_train_call_ms: honestTrainMs,
      verify_pass_ms: verified.passMs,
      warnings
    }
  }).pipe(Effect.provide(warningCollector(warnings)))
})

// ---------------------------------------------------------------------------------------------------------------
// The tally: the confusion table by kind and the cost ratio (bench/results/verify.json's shape)

export interface KindTally {
  readonly submissions: number
  readonly expected: VerdictName
  /** Verdicts got, by name ("none" when the verifier recorded none). */
  readonly verdicts: Readonly<Record<string, number>>
  /** Submissions that got exactly the expected verdict. */
  readonly as_expected: number
}

export interface VerificationTally {
  readonly honest: number
  readonly honest_accepted: number
  readonly dishonest: number
  readonly dishonest_rejected: number
  /** Dishonest submissions rejected with their kind's own code (rejected for another reason counts above only). */
  readonly dishonest_rejected_as_expected: number
  readonly by_kind: Readonly<Record<string, KindTally>>
  /**
   * Verifier recompute seconds per chunk ÷ honest miners' training seconds per chunk, medians: each miner builds its
   * ONNX sessions on its first chunk and the verifier once for the run, so means would weigh those cold starts
   * differently on each side.
   */
  readonly cost_ratio: number | null
  readonly recompute_ms: { readonly count: number; readonly p50: number | null; readonly mean: number | null }
  readonly honest_training_ms: { readonly count: number; readonly p50: number | null; readonly mean: number | null }
  /**
   * The same ratio with both sides timed alike (Trainer.train calls): the training step of a mining transaction also
   * holds its journal writes and shares the event loop with the miner's other fibers.
   */
  readonly cost_ratio_train_calls: number | null
  readonly honest_train_call_ms: { readonly count: number; readonly p50: number | null; readonly mean: number | null }
  readonly verify_pass_ms_per_submission: number | null
}

const isAccepted = (verdict: VerdictName | null) => verdict === "accepted_exact" || verdict === "accepted_within_tolerance"

const summary = (values: ReadonlyArray<number>) => {
  if (values.length === 0) return { count: 0, p50: null, mean: null }
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  const p50 = sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
  return { count: values.length, p50, mean: values.reduce((a, b) => a + b, 0) / values.length }
}

export const tally = (result: VerificationRunResult): VerificationTally => {
  const honest = result.submissions.filter((s) => s.kind === "honest")
  const dishonest = result.submissions.filter((s) => s.kind !== "honest")
  const byKind: Record<string, KindTally> = {}
  for (const s of result.submissions) {
    const entry = byKind[s.kind] ?? { submissions: 0, expected: s.expected, verdicts: {}, as_expected: 0 }
    const got = s.verdict ?? (s.verdict_code === null ? "none" : `code ${s.verdict_code}`)
    byKind[s.kind] = {
      ...entry,
      submissions: entry.submissions + 1,
      verdicts: { ...entry.verdicts, [got]: (entry.verdicts[got] ?? 0) + 1 },
      as_expected: entry.as_expected + (s.verdict === s.expected ? 1 : 0)
    }
  }
  const recompute = summary(result.recompute_ms)
  const training = summary(honest.flatMap((s) => (s.training_ms === null ? [] : [s.training_ms])))
  const trainCalls = summary(result.honest_train_call_ms)
  const ratio = (a: number | null, b: number | null) => (a === null || b === null || b === 0 ? null : a / b)
  return {
    honest: honest.length,
    honest_accepted: honest.filter((s) => isAccepted(s.verdict)).length,
    dishonest: dishonest.length,
    dishonest_rejected: dishonest.filter((s) => s.verdict !== null && !isAccepted(s.verdict)).length,
    dishonest_rejected_as_expected: dishonest.filter((s) => s.verdict === s.expected).length,
    by_kind: byKind,
    cost_ratio: ratio(recompute.p50, training.p50),
    recompute_ms: recompute,
    honest_training_ms: training,
    cost_ratio_train_calls: ratio(recompute.p50, trainCalls.p50),
    honest_train_call_ms: trainCalls,
    verify_pass_ms_per_submission: result.submissions.length === 0 ? null : result.verify_pass_ms / result.submissions.length
  }
}
