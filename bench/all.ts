/**
 * Every benchmark of issues 8, 11 and 13, one after the other, each in a process of its own: proof-of-work hashing
 * (bench/pow.ts), end-to-end mining (bench/mining.ts), gradient memory (bench/memory.ts), the 20,000-transaction
 * soak (bench/soak.ts), the honest/dishonest verification run (bench/verify.ts), the learning rounds next to
 * centralised training (bench/learning.ts), the useful-work ratio on a training-dominated spec
 * (bench/utilisation.ts). Their tables are printed together
 * at the end, with the targets next to the headline figures; each also writes its JSON in bench/results/.
 *
 *   npm run bench [-- --no-readme]
 *
 * bench/results/run.json says when the run started and finished, which benches failed, the load at the end and the
 * machine: scripts/update-readme-performance.ts takes only results written between its start and end. When no bench
 * failed, the run then rewrites README.md's performance table from its own results (`--no-readme` leaves it alone).
 *
 * Takes ~9 min (the soak alone ~2.5, learning ~2, utilisation ~3, verify ~15 s). Figures, not assertions: tests
 * never time.
 */
import { spawnSync } from "node:child_process"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { availableParallelism, cpus, loadavg } from "node:os"
import { parseArgs } from "node:util"
import { fileURLToPath } from "node:url"
import { type BenchRun, benches, regenerate } from "../scripts/update-readme-performance.ts"

const { values: args } = parseArgs({ options: { "no-readme": { type: "boolean", default: false } } })

const resultsDir = new URL("results/", import.meta.url)
mkdirSync(resultsDir, { recursive: true })
const writeRun = (run: BenchRun) => writeFileSync(new URL("run.json", resultsDir), `${JSON.stringify(run, null, 2)}\n`)
// Written at the start too: a run that dies half-way leaves a run.json without finished_at, which the README script
// refuses, instead of an older run's window that newer files would fall outside of.
const runStart: BenchRun = {
  started_at: new Date().toISOString(),
  finished_at: null,
  benches,
  failed: [],
  load_average_end: null,
  machine: { cores: availableParallelism(), cpu: cpus()[0]?.model ?? "unknown CPU", node: process.version }
}
writeRun(runStart)

const tables: Array<string> = []
const failed: Array<string> = []
for (const name of benches) {
  process.stderr.write(`bench ${name}…\n`)
  const started = performance.now()
  const run = spawnSync(process.execPath, [fileURLToPath(new URL(`${name}.ts`, import.meta.url))], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 16 << 20
  })
  process.stderr.write(`bench ${name} done in ${((performance.now() - started) / 1000).toFixed(0)} s\n`)
  if (run.status !== 0) failed.push(`${name} (exit ${run.status ?? run.signal})`)
  tables.push(run.stdout.trimEnd())
}
const loadAtEnd = loadavg()
writeRun({
  ...runStart,
  finished_at: new Date().toISOString(),
  failed,
  load_average_end: loadAtEnd.map((l) => Math.round(l * 100) / 100)
})

const read = (file: string): Record<string, unknown> | undefined => {
  try {
    return JSON.parse(readFileSync(new URL(file, resultsDir), "utf8")) as Record<string, unknown>
  } catch {
    return undefined
  }
}
const pow = read("pow.json")
const mining = read("mining.json")
const memory = read("memory.json")
const soak = read("soak.json")
const verify = read("verify.json")
const learning = read("learning.json")
const utilisation = read("utilisation.json")

console.log(tables.join("\n\n"))
console.log("\nTargets (issues 8, 11, 13, 14 and 17, this machine)")
const target = (label: string, value: string, met: boolean | undefined) =>
  console.log(`  ${label.padEnd(44)}${value.padStart(16)}  ${met === undefined ? "no result" : met ? "met" : "NOT met"}`)
const perCore = pow?.["hashes_per_second_per_core"] as number | undefined
target("PoW per core ≥ 15 MH/s", perCore === undefined ? "-" : `${(perCore / 1e6).toFixed(1)} MH/s`, perCore === undefined ? undefined : perCore >= 15e6)
const perMinute = mining?.["committed_per_minute"] as number | undefined
target("committed per minute ≥ 600 (difficulty 20)", perMinute === undefined ? "-" : perMinute.toFixed(0), perMinute === undefined ? undefined : perMinute >= 600)
const ratio = memory === undefined
  ? undefined
  : (memory["peak_rss_growth_bytes"] as number) / (memory["gradient_bytes"] as number)
target("peak RSS growth ≤ 1.3× a 100 MB gradient", ratio === undefined ? "-" : `${ratio.toFixed(2)}×`, ratio === undefined ? undefined : ratio <= 1.3)
const soakRatio = soak?.["peak_rss_ratio_q4_q2"] as number | undefined
target("soak peak RSS, last quarter / second ≤ 1.10", soakRatio === undefined ? "-" : soakRatio.toFixed(3), soakRatio === undefined ? undefined : soakRatio <= 1.1)
const verdicts = verify === undefined ? undefined : verify as Record<string, number>
const verdictsMet = verdicts === undefined
  ? undefined
  : verdicts["honest_accepted"] === verdicts["honest"] && verdicts["dishonest_rejected_as_expected"] === verdicts["dishonest"]
target(
  "verification: 0 false rejections, cheaters' codes",
  verdicts === undefined
    ? "-"
    : `${verdicts["honest_accepted"]}/${verdicts["honest"]}, ${verdicts["dishonest_rejected_as_expected"]}/${verdicts["dishonest"]}`,
  verdictsMet
)
const finalAccuracy = learning?.["final_test_accuracy"] as number | undefined
const accuracyRatio = learning?.["accuracy_ratio"] as number | undefined
target(
  "learning: test accuracy ≥ 90%, ÷ centralised ≥ 0.97",
  finalAccuracy === undefined || accuracyRatio === undefined
    ? "-"
    : `${(finalAccuracy * 100).toFixed(2)}%, ${accuracyRatio.toFixed(3)}`,
  finalAccuracy === undefined || accuracyRatio === undefined ? undefined : finalAccuracy >= 0.9 && accuracyRatio >= 0.97
)
// The miner as it runs in a network (verifiers are other machines), then with the devnet's embedded verifier
// recomputing every chunk on the same cores, whose CPU bound the utilisation bench prints.
const minerAlone = utilisation?.["verifier_off"] as Record<string, number> | undefined
for (
  const [label, figures] of [
    ["useful work, verifier elsewhere ≥ 0.95, busy ≥ 0.95", minerAlone],
    ["  same, embedded verifier on these cores", utilisation as Record<string, number> | undefined]
  ] as const
) {
  const usefulWork = figures?.["useful_work_ratio"]
  const trainerBusy = figures?.["trainer_busy_fraction"]
  target(
    label,
    usefulWork === undefined || trainerBusy === undefined ? "-" : `${usefulWork.toFixed(3)}, ${trainerBusy.toFixed(3)}`,
    usefulWork === undefined || trainerBusy === undefined ? undefined : usefulWork >= 0.95 && trainerBusy >= 0.95
  )
}
const bound = utilisation?.["verifier_on_cpu_bound"] as number | undefined
if (bound !== undefined) console.log(`    (with the embedded verifier the CPU allows at most ${bound.toFixed(2)} on this machine)`)
// Other work on a small machine moves these figures: the load says how quiet it was.
console.log(`  load average (1, 5, 15 min) at the end: ${loadAtEnd.map((l) => l.toFixed(2)).join(", ")}`)
if (failed.length > 0) {
  console.error(`failed: ${failed.join(", ")}; README.md's performance table left as it was`)
  process.exitCode = 1
} else if (!args["no-readme"]) {
  const readme = regenerate({ allowMixed: false })
  if (readme._tag === "Written") {
    console.log(`\n${readme.readme}: performance table ${readme.changed ? "rewritten" : "already up to date"} from this run`)
  } else {
    // Every bench exited 0, yet a result is missing or older than the run: a bench stopped writing its JSON.
    console.error(`README.md's performance table not rewritten:\n${readme.problems.map((p) => `  ${p}`).join("\n")}`)
    process.exitCode = 1
  }
}
