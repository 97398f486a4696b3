/**
 * Issue 18's fleet benchmark: how many machines one account carries. Two measurements in one run, side by side:
 *
 * 1. **Runners**: 1, 2 and 3 fleet runner processes of one account (bench/fleetRunner.ts: `mine` as the CLI runs it,
 *    with a simulated GPU trainer that takes `--training-ms` per chunk, one chunk at a time) on one anvil devnet, one
 *    Kubo-RPC store (js-ipfs) and one Postgres — a fresh devnet and database for each count. Committed transactions
 *    per minute are counted from the fleet's journal over `--window` seconds, once every runner has committed
 *    `--warmup` transactions.
 *    The runners form Effect's cluster (R3MES_FLEET_ADDRESS) and sign through the account's signer entity, unless
 *    `--ledger` (each runner signs for itself through the nonce ledger).
 * 2. **The signer's capacity**: what one account sustains on the chain alone — this process claims, submits and
 *    completes chunks (the three registry writes of a mining transaction) through the fleet's signing path (viem,
 *    every nonce reserved in the Postgres nonce ledger), with no training and a trivial proof of work, each writer
 *    with `--concurrency` transactions in flight, side by side: one signer alone; as many signers as the most runners
 *    measured, racing for nonces (the `--ledger` fleet); and as many cluster runners writing through the one signer
 *    entity among them (the cluster fleet). Transactions per second, and per minute to compare.
 *
 * Capacity ÷ one runner's rate is how many runners of this training time one account carries before the chain side
 * is the bottleneck. Writes bench/results/fleet.json. Figures, not assertions: tests never time.
 *
 *   npm run bench:fleet [-- --training-ms 2000 --runners 1,2,3 --window 60 --warmup 2 --concurrency 10 --keep]
 *
 * Needs Debian's postgresql binaries (as test/support/postgres.ts finds them); the runners share the machine's cores,
 * so a training time well above the real one (the default spec trains in well under a second here) keeps the CPU
 * out of the figure.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { cpus, tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { Context, Duration, Effect, Layer, Redacted } from "effect"
import { devnetRoundPlan } from "../src/app/devnetRoundPlan.ts"
import { fleetChainLayer } from "../src/app/fleet.ts"
import { isRetryable } from "../src/domain/errors.ts"
import { PowInput, Submission } from "../src/domain/mining.ts"
import { startDevnet } from "../src/layers/chain/devnet/Devnet.ts"
import { computeCid } from "../src/layers/ipfs/importOptions.ts"
import { FastPowSolver } from "../src/layers/pow/WorkerPowSolver.ts"
import { sha256Hex } from "../src/layers/sha256Hex.ts"
import { Chain } from "../src/services/Chain.ts"
import { PowSolver } from "../src/services/PowSolver.ts"
import { freePort } from "../test/support/children.ts"
import { startJsIpfs } from "../test/support/jsipfs.ts"
import { findPostgres, type PostgresServer, startPostgres, withSql } from "../test/support/postgres.ts"

const { values: args } = parseArgs({
  options: {
    "training-ms": { type: "string", default: "2000" },
    runners: { type: "string", default: "1,2,3" },
    window: { type: "string", default: "60" },
    warmup: { type: "string", default: "2" },
    difficulty: { type: "string", default: "16" },
    concurrency: { type: "string", default: "10" },
    "capacity-transactions": { type: "string", default: "200" },
    keep: { type: "boolean", default: false },
    ledger: { type: "boolean", default: false }
  }
})
const trainingMs = Number(args["training-ms"])
const runnerCounts = args.runners.split(",").map(Number)
const windowSeconds = Number(args.window)
const warmup = Number(args.warmup)
const difficulty = Number(args.difficulty)
const concurrency = Number(args.concurrency)
const capacityTransactions = Number(args["capacity-transactions"])
const maxRunners = Math.max(...runnerCounts)
const onCluster = !args.ledger

const postgres = findPostgres()
if ("skip" in postgres) {
  console.error(`bench:fleet needs Postgres: ${postgres.skip}`)
  process.exit(1)
}
const dir = mkdtempSync(join(tmpdir(), "r3mes-bench-fleet-"))
const log = (line: string) => process.stderr.write(`${line}\n`)

/** Committed transactions in the fleet's journal, by runner. */
const committedByRunner = (url: string) =>
  withSql(url, (sql) =>
    sql.unsafe<{ readonly owner: string; readonly n: string }>(
      "SELECT owner, count(*)::text AS n FROM r3mes_transactions WHERE state = 'committed' GROUP BY owner"
    ).pipe(
      // The runners create the tables at their start.
      Effect.orElseSucceed(() => [])
    )).pipe(Effect.map((rows) => new Map(rows.map((r) => [r.owner, Number(r.n)]))))

const sum = (m: ReadonlyMap<string, number>) => [...m.values()].reduce((a, b) => a + b, 0)

const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.once("exit", () => resolve())
  })

/** Stops the runners as an operator would (SIGTERM: in-flight work finishes), then for good after a minute. */
const stopRunners = (children: ReadonlyArray<ChildProcess>) =>
  Effect.promise(async () => {
    for (const c of children) c.kill("SIGTERM")
    const late = setTimeout(() => children.forEach((c) => c.kill("SIGKILL")), 60_000)
    await Promise.all(children.map(exited))
    clearTimeout(late)
  })

interface RunnersFigure {
  readonly runners: number
  readonly committed_per_minute: number
  readonly per_runner_per_minute: ReadonlyArray<number>
  readonly window_seconds: number
}

/** `count` runners of one account on a fresh devnet and database: committed per minute in the window. */
const measureRunners = (server: PostgresServer, ipfsUrl: string, count: number) =>
  Effect.scoped(Effect.gen(function*() {
    const here = join(dir, `runners-${count}`)
    const devnet = yield* startDevnet({ dataDir: join(here, "devnet"), difficulty, roundPlan: devnetRoundPlan(difficulty) })
    const url = yield* Effect.promise(() => server.freshDatabase())
    const names = Array.from({ length: count }, (_, i) => `runner-${i + 1}`)
    const ports: Array<number> = []
    for (const _ of names) ports.push(yield* Effect.promise(freePort))
    const children = names.map((name, i) => {
      const dataDir = join(here, name)
      mkdirSync(dataDir, { recursive: true })
      const child = spawn(process.execPath, [join(import.meta.dirname, "fleetRunner.ts"), "--training-ms", String(trainingMs)], {
        env: {
          // This shell's settings are not the bench's: only the R3MES_* below configure the runner.
          ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("R3MES_"))),
          R3MES_RPC_URL: devnet.rpcUrl,
          R3MES_REGISTRY_ADDRESS: devnet.registry,
          R3MES_PRIVATE_KEY: devnet.accounts[1]!.privateKey,
          R3MES_IPFS_API: ipfsUrl,
          R3MES_FLEET_DATABASE_URL: url,
          R3MES_FLEET_RUNNER: name,
          R3MES_DATA_DIR: dataDir,
          R3MES_LOG_FILE: join(dataDir, "miner.log"),
          R3MES_STATS_PORT: "0",
          R3MES_POW_DIFFICULTY: String(difficulty),
          ...(onCluster ? { R3MES_FLEET_ADDRESS: `127.0.0.1:${ports[i]}` } : {})
        },
        stdio: ["ignore", "pipe", "pipe"]
      })
      child.stderr.on("data", (d: Buffer) => log(`  ${name}: ${d.toString().trimEnd()}`))
      return child
    })
    yield* Effect.addFinalizer(() => stopRunners(children))

    // Warm-up: every runner has committed `warmup` transactions (model compiled, first round fetched, pipeline full).
    const warmedUp = Effect.gen(function*() {
      while (true) {
        const counts = yield* committedByRunner(url)
        if (names.every((n) => (counts.get(n) ?? 0) >= warmup)) return counts
        if (children.some((c) => c.exitCode !== null)) return yield* Effect.die(new Error(`a runner exited; logs in ${here}`))
        yield* Effect.sleep("500 millis")
      }
    })
    const before = yield* warmedUp.pipe(Effect.timeout("5 minutes"), Effect.orDie)
    const from = performance.now()
    log(`  ${count} runner(s) warmed up (${sum(before)} committed); measuring for ${windowSeconds} s`)
    yield* Effect.sleep(Duration.seconds(windowSeconds))
    const after = yield* committedByRunner(url)
    const minutes = (performance.now() - from) / 60_000
    yield* stopRunners(children)
    const figure: RunnersFigure = {
      runners: count,
      committed_per_minute: round1((sum(after) - sum(before)) / minutes),
      per_runner_per_minute: names.map((n) => round1(((after.get(n) ?? 0) - (before.get(n) ?? 0)) / minutes)),
      window_seconds: round1(minutes * 60)
    }
    log(`  ${count} runner(s): ${figure.committed_per_minute} committed/min (${figure.per_runner_per_minute.join(", ")})`)
    return figure
  }))

const round1 = (x: number) => Math.round(x * 10) / 10

/**
 * The chain side alone, through the fleet's signing path: `capacityTransactions` chunks claimed, submitted and
 * completed by `signers` writers of the account, `concurrency` at a time each, on a fresh devnet at difficulty 1 (the
 * proof of work is not the signer's). Without `cluster` each writer signs through the nonce ledger (they race for
 * nonces); with it the writers are cluster runners (in this process, on their own ports) and the account's signer
 * entity on one of them signs for all. The writers share this process's one thread, so the figure is a floor of what
 * separate machines would sign.
 */
const measureSigner = (server: PostgresServer, signers: number, cluster: boolean) =>
  Effect.scoped(Effect.gen(function*() {
    const devnet = yield* startDevnet({
      dataDir: join(dir, `signer-${signers}${cluster ? "-cluster" : ""}`, "devnet"),
      difficulty: 1,
      roundPlan: devnetRoundPlan(1)
    })
    const url = yield* Effect.promise(() => server.freshDatabase())
    const endpoint = {
      rpcUrl: devnet.rpcUrl,
      registry: devnet.registry,
      privateKey: Redacted.make(devnet.accounts[1]!.privateKey),
      devnet: false
    }
    const pow = Context.get(yield* Layer.build(FastPowSolver.layer()), PowSolver)
    const chains: Array<Chain["Service"]> = []
    for (let i = 1; i <= signers; i++) {
      const address = cluster ? `127.0.0.1:${yield* Effect.promise(freePort)}` : undefined
      const layer = fleetChainLayer(endpoint, {
        databaseUrl: Redacted.make(url),
        runner: `signer-${i}`,
        cluster: address === undefined ? undefined : { address, maySign: true, lease: Duration.seconds(35) }
      })
      chains.push(Context.get(yield* Layer.build(layer), Chain))
    }
    const id = yield* chains[0]!.identity
    const roundId = yield* Effect.gen(function*() {
      while (true) {
        const open = yield* chains[0]!.rounds
        if (open[0] !== undefined) return open[0].roundId
        yield* Effect.sleep("500 millis")
      }
    })
    /** One mining transaction's three writes, with a gradient nobody trained (the chain cannot tell). */
    const one = (chain: Chain["Service"], i: number) =>
      Effect.gen(function*() {
        const claim = yield* chain.claimChunk(roundId)
        const bytes = new TextEncoder().encode(`bench:fleet gradient ${i} ${claim.chunkId}`)
        const cid = yield* computeCid(bytes)
        const gradientHash = sha256Hex(bytes)
        const { nonce } = yield* pow.solve(
          new PowInput({
            chainId: id.chainId,
            registry: id.registry,
            miner: id.miner,
            roundId,
            chunkId: claim.chunkId,
            gradientHash,
            cid,
            difficulty: 1
          })
        )
        yield* chain.submitGradient(new Submission({ roundId, chunkId: claim.chunkId, cid, gradientHash, powNonce: nonce }))
        yield* chain.completeChunk(roundId, claim.chunkId)
      }).pipe(
        // As a miner's retries would: signers racing for nonces may lose ten in a row (a retryable error).
        Effect.retry({ while: (e) => isRetryable(e), times: 5 })
      )
    // One each first, off the clock: viem's and the ledger's first calls.
    yield* Effect.forEach(chains, (chain, i) => one(chain, -1 - i), { discard: true })
    const each = Math.ceil(capacityTransactions / signers)
    const from = performance.now()
    yield* Effect.forEach(
      chains,
      (chain, s) =>
        Effect.forEach(Array.from({ length: each }, (_, i) => s * each + i), (i) => one(chain, i), {
          concurrency,
          discard: true
        }),
      { concurrency: "unbounded", discard: true }
    )
    const seconds = (performance.now() - from) / 1000
    const done = each * signers
    const perSecond = done / seconds
    log(`  ${signers} ${cluster ? "cluster runner(s), one signer entity" : "signer(s)"}: ${done} transactions (${3 * done} writes) in ${seconds.toFixed(1)} s`)
    return {
      signers,
      cluster,
      in_flight_each: concurrency,
      transactions_per_second: round1(perSecond),
      writes_per_second: round1(3 * perSecond),
      committed_per_minute: round1(perSecond * 60)
    }
  }))

const main = Effect.scoped(Effect.gen(function*() {
  const server = yield* Effect.acquireRelease(
    Effect.promise(() => startPostgres(postgres)),
    (s) => Effect.promise(() => s.close())
  )
  const ipfs = yield* startJsIpfs.pipe(Effect.orDie)
  log(
    `bench:fleet: simulated GPU training ${trainingMs} ms per chunk; runners ${runnerCounts.join(", ")}` +
      `${onCluster ? " on Effect's cluster" : ", each signing through the ledger"}; ${cpus().length} cores`
  )
  const runners: Array<RunnersFigure> = []
  for (const count of runnerCounts) runners.push(yield* measureRunners(server, ipfs.url, count))
  log("  signer capacity: claim + submit + complete, through the nonce ledger")
  const signers = [
    yield* measureSigner(server, 1, false),
    yield* measureSigner(server, maxRunners, false),
    yield* measureSigner(server, maxRunners, true)
  ]
  return { runners, signers }
}))

const { runners, signers } = await Effect.runPromise(main)
// The account's capacity with as many writers as the most runners measured, signing as the measured fleet does.
const signer = signers.find((c) => c.signers === maxRunners && c.cluster === onCluster)!
const single = runners.find((r) => r.runners === 1)
const carried = single === undefined || single.committed_per_minute === 0
  ? null
  : Math.floor(signer.committed_per_minute / single.committed_per_minute)
const results = {
  training_ms: trainingMs,
  cluster: onCluster,
  difficulty,
  window_seconds: windowSeconds,
  cores: cpus().length,
  runners: runners.map((r) => ({
    ...r,
    speedup: single === undefined ? null : Math.round((r.committed_per_minute / single.committed_per_minute) * 100) / 100
  })),
  signers,
  runners_one_account_carries: carried
}
mkdirSync(join(import.meta.dirname, "results"), { recursive: true })
writeFileSync(join(import.meta.dirname, "results", "fleet.json"), `${JSON.stringify(results, null, 2)}\n`)

console.log(
  `\nfleet of one account${onCluster ? " on Effect's cluster" : ""}, simulated GPU training ${trainingMs} ms per chunk ` +
    `(${cpus().length} cores)`
)
console.log("runners  committed/min  per runner          ×1 runner")
for (const r of results.runners) {
  console.log(
    `${String(r.runners).padStart(7)}  ${String(r.committed_per_minute).padStart(13)}  ${
      r.per_runner_per_minute.join(", ").padEnd(18)
    }  ${r.speedup ?? "-"}`
  )
}
for (const c of signers) {
  console.log(
    `signer capacity, ${c.signers} ${c.cluster ? "cluster runners through one signer entity" : c.signers === 1 ? "signer alone" : "signers racing"}, ` +
      `${c.in_flight_each} in flight each: ${c.transactions_per_second} ` +
      `transactions/s (${c.writes_per_second} writes/s, ${c.committed_per_minute}/min)`
  )
}
if (carried !== null) {
  console.log(
    `one account carries about ${carried} runners of this training time before signing is the bottleneck`
  )
}
if (args.keep) console.log(`kept ${dir}`)
else rmSync(dir, { recursive: true, force: true })
