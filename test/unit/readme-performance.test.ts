import { readFileSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import {
  type BenchResults,
  type BenchRun,
  benches,
  endMarker,
  notFromOneRun,
  performanceTable,
  startMarker,
  withPerformanceTable
} from "../../scripts/update-readme-performance.ts"

// Small, made-up bench results: only the fields the table reads, with round numbers to find in the output.
const run: BenchRun = {
  started_at: "2026-12-02T04:00:00.000Z",
  finished_at: "2026-12-02T04:09:30.000Z",
  benches,
  failed: [],
  load_average_end: [2.39, 2.1, 1.9],
  machine: { cores: 2, cpu: "AMD EPYC", node: "v24.21.0" }
}
const results: BenchResults = {
  pow: {
    solver: "native sha-ni on 2 worker threads",
    cores: 2,
    hashes_per_second_per_core: 60_700_000,
    hashes_per_second_total: 121_400_000,
    per_core_ratio_to_openssl_sha256_blocks: 0.882,
    single_thread_ratio_to_openssl_sha256_blocks: 2.242,
    baseline_node_crypto_per_second: 880_000,
    reference_solver_per_second: 4_000_000,
    typescript_workers_per_second_total: 8_600_000,
    pow20_ms: { min: 2.4, p50: 9, p95: 21, max: 30 }
  },
  mining: {
    difficulty: 20,
    committed_per_minute: 1583.4,
    p50_ms: 166.2,
    p95_ms: 247.9,
    committed: 180,
    warmup: 20,
    window_seconds: 6.8,
    committed_per_minute_by_fifth: [1600, 1590, 1580, 1570, 1560]
  },
  memory: {
    gradient_bytes: 100_000_000,
    peak_rss_growth_bytes: 101_000_000,
    peak_source: "VmHWM",
    phases: [{ phase: "encode (envelope)", ms: 400, peak_growth_bytes: 100_000_000 }]
  },
  soak: {
    faults: "mix",
    transactions: 20_000,
    rolled_back: 99,
    failed: 40,
    statistics: { retries: 605 },
    flat: true,
    peak_rss_ratio_q4_q2: 1.005,
    heap_slope_bytes_per_tx: 24.3,
    quarters: [
      { quarter: 2, peak_rss: 231_000_000, max_heap_used: 30_600_000 },
      { quarter: 4, peak_rss: 232_000_000, max_heap_used: 30_800_000 }
    ],
    journal_bytes: 58_000_000,
    tx_per_second: 119
  },
  verify: {
    honest: 12,
    honest_accepted: 11,
    dishonest: 12,
    dishonest_rejected_as_expected: 12,
    by_kind: { honest: {}, scaled: {}, random_tensors: {} },
    cost_ratio: 0.284,
    recompute_ms: { p50: 5.7 },
    honest_training_ms: { p50: 20 },
    verify_pass_ms_per_submission: 63.6,
    plan: { honest_miners: 3, honest_chunks: 4, cheater_chunks: 2 }
  },
  learning: {
    rounds: 30,
    chunks_per_round: 8,
    first_round_at_or_above_90: 14,
    final_test_accuracy: 0.927,
    centralised_test_accuracy: 0.9345,
    accuracy_ratio: 0.9919743,
    adversarial: { fraction: 0.2, verifier: false, final_test_accuracy: 0.917 }
  },
  utilisation: {
    spec: { dataset: "mnist", model: { family: "mlp", hidden: 256 }, steps: 3000, batch_size: 64, examples_per_chunk: 9600 },
    difficulty: 20,
    train_only_per_minute: 11.9,
    train_only_ms_per_chunk: 5042.3,
    committed_per_minute: 10.1,
    train_only_per_minute_around: 12,
    useful_work_ratio: 0.842,
    trainer_busy_fraction: 0.991,
    train_only_process_cores: 1.27,
    verifier_on_cpu_bound: 0.787,
    verifier_off: { committed_per_minute: 11.2, train_only_per_minute_around: 11.8, useful_work_ratio: 0.949, trainer_busy_fraction: 0.995 },
    machine: { intra_op_threads: 1, cores: 2 }
  }
}

/** The table's data rows as [what, figure, command], the header and separator left out. */
const rows = (markdown: string): ReadonlyArray<ReadonlyArray<string>> =>
  markdown.split("\n")
    .filter((line) => line.startsWith("| ") && !line.startsWith("| what |"))
    .map((line) => line.slice(2, -2).split(" | "))
const row = (markdown: string, command: string, what: string) => {
  const found = rows(markdown).find((r) => r[2] === `\`${command}\`` && r[0]!.includes(what))
  assert.isDefined(found, `no row for ${command} (${what}) in\n${markdown}`)
  return found![1]!
}

describe("performanceTable", () => {
  it("says which run the figures come from", () => {
    const table = performanceTable(run, results)
    assert.strictEqual(
      table.split("\n")[0],
      "From one `npm run bench` run, 2026-12-02 04:09 UTC, load average at the end 2.39 / 2.10 / 1.90 (1 / 5 / 15 min); " +
        "2 cores (AMD EPYC), Node v24.21.0."
    )
  })

  it("renders one row per headline figure with the numbers of the JSON", () => {
    const table = performanceTable(run, results)
    assert.strictEqual(rows(table).length, 8)
    const pow = row(table, "npm run bench:pow", "proof of work, fast solver")
    assert.include(pow, "60.7 M hashes/s per core, 121.4 M/s on 2 cores (69× node:crypto's SHA-256 at 0.88 M/s)")
    assert.include(pow, "0.88× per core on 2 cores, 2.24× on one thread")
    assert.strictEqual(row(table, "npm run bench:pow", "20-bit"), "min 2.4 ms, p50 9.0 ms, p95 21.0 ms, max 30.0 ms")
    const mining = row(table, "npm run bench:mining", "at difficulty 20")
    assert.include(mining, "1,583 per minute")
    assert.include(mining, "over each fifth: 1600, 1590, 1580, 1570, 1560")
    assert.include(mining, "latency p50 166 ms, p95 248 ms")
    assert.include(row(table, "npm run bench:memory", "100 MB gradient"), "1.01× the gradient size")
    const soak = row(table, "npm run bench:soak", "20,000 transactions")
    assert.include(soak, "peak RSS flat: last quarter / second quarter 1.005 (231 → 232 MB)")
    assert.include(soak, "V8 heap after GC 30.6 → 30.8 MB (24 B per transaction); journal 2.9 KB per transaction")
    assert.include(soak, "119 tx/s")
    const verify = row(table, "npm run bench:verify", "each of the 2 cheater kinds × 2")
    assert.include(verify, "honest 11/12 accepted (1 false rejections), dishonest 12/12 rejected")
    assert.include(verify, "recompute ÷ training per chunk 0.28×")
    assert.strictEqual(
      row(table, "npm run bench:learning", "after 30 rounds of 8 chunks"),
      "92.70% (≥ 90% from round 14), centralised 93.45%, ratio 0.992; 91.70% with 20% dishonest gradients and no verifier"
    )
    const utilisation = row(
      table,
      "npm run bench:utilisation",
      "(mlp 784-256-10, 3,000 steps of 64 over 9,600 examples, ~5,042 ms a chunk on one thread), difficulty 20"
    )
    assert.include(
      utilisation,
      "verifier on (the devnet's embedded verifier recomputing every chunk on the same cores): ratio 0.842, trainer busy " +
        "0.991, 10.1 committed per minute (trainer alone around the run: 12.0), at most 0.79 for the CPU (two trainers " +
        "of 1.27 cores each on 2)"
    )
    assert.include(
      utilisation,
      "verifier off (the miner as in a network: verifiers are other machines): ratio 0.949, trainer busy 0.995, 11.2 " +
        "committed per minute (trainer alone around the run: 11.8)"
    )
    assert.include(utilisation, "trainer alone 11.9 chunks per minute over the whole bench")
  })

  it("renders a missing file or field as - instead of throwing", () => {
    const { mining: _, ...withoutMining } = results
    const table = performanceTable(run, {
      ...withoutMining,
      soak: { ...(results.soak as object), quarters: undefined, flat: undefined },
      learning: { ...(results.learning as object), adversarial: null }
    })
    assert.strictEqual(rows(table).length, 8)
    assert.include(row(table, "npm run bench:mining", "at difficulty -"), "- per minute")
    assert.include(row(table, "npm run bench:soak", "transactions"), "peak RSS -: last quarter / second quarter 1.005 (- → - MB)")
    assert.include(row(table, "npm run bench:learning", "rounds"), "ratio 0.992; - with - dishonest gradients and verifier -")
    const empty = performanceTable(undefined, {})
    assert.strictEqual(rows(empty).length, 8)
    assert.include(empty.split("\n")[0]!, "From one `npm run bench` run, -, load average at the end -")
  })

  it("says above the table when the results are not from one run", () => {
    const table = performanceTable(run, results, ["bench/results/mining.json is missing"])
    assert.strictEqual(
      table.split("\n")[0],
      "NOT from one `npm run bench` run (generated with `--allow-mixed`, for development only): " +
        "bench/results/mining.json is missing."
    )
  })
})

describe("notFromOneRun", () => {
  const during = Date.parse("2026-12-02T04:05:00Z")
  const files = benches.map((name) => ({ name: `${name}.json`, mtimeMs: during }))

  it("accepts every file written during the finished run", () => {
    assert.deepStrictEqual(notFromOneRun(run, files), [])
  })

  it("names each file that is missing or was written outside the run", () => {
    const problems = notFromOneRun(run, [
      { name: "pow.json", mtimeMs: during },
      { name: "mining.json", mtimeMs: undefined },
      { name: "learning.json", mtimeMs: Date.parse("2026-12-01T22:28:32Z") }
    ])
    assert.deepStrictEqual(problems, [
      "bench/results/mining.json is missing",
      "bench/results/learning.json written 2026-12-01 22:28 UTC, outside the run of 2026-12-02 04:00 UTC to 2026-12-02 04:09 UTC"
    ])
  })

  it("refuses a run that did not finish, failed, or is missing", () => {
    assert.include(notFromOneRun({ ...run, finished_at: null }, files)[0]!, "has no finished_at")
    assert.include(notFromOneRun({ ...run, failed: ["verify (exit 1)"] }, files)[0]!, "failed benches: verify (exit 1)")
    assert.strictEqual(notFromOneRun(undefined, files)[0], "bench/results/run.json is missing")
  })
})

describe("README.md's performance section", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8")
  const section = readme.slice(readme.indexOf("## Performance"), readme.indexOf("## Development"))

  it("has the markers the script writes between", () => {
    const start = section.indexOf(startMarker)
    assert.isTrue(start >= 0 && section.indexOf(endMarker) > start, "README.md's Performance section lacks the performance-table markers")
    assert.doesNotThrow(() => withPerformanceTable(readme, "table"))
  })

  it("names an npm script of package.json in every command of its tables", () => {
    const scripts = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      readonly scripts: Record<string, string>
    }).scripts
    const commands = rows(section).map((r) => r.at(-1)!)
    assert.isAbove(commands.length, 2)
    // The generated rows too, in case the README's copy was last rendered before a command changed.
    for (const command of [...commands, ...rows(performanceTable(run, results)).map((r) => r[2]!)]) {
      const script = /^`npm run ([\w:-]+)(?: -- [^`]*)?`$/.exec(command)?.[1]
      assert.isDefined(script, `${command}: not an \`npm run <script>\` command`)
      assert.property(scripts, script!, `${command}: package.json has no script "${script}"`)
    }
  })
})
