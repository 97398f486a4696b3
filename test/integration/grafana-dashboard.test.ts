import { spawnSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Logger, Metric } from "effect"
import { NetworkError } from "../../src/domain/errors.ts"
import { verdictNames } from "../../src/domain/verification.ts"
import { MonitoringApi } from "../../src/layers/http/MonitoringApi.ts"
import { MiningCoordinator } from "../../src/services/MiningCoordinator.ts"
import { makeVerifierStats } from "../../src/services/verification/VerifierStats.ts"
import { TestGradientStore } from "../../src/testing/TestGradientStore.ts"
import { testTask } from "../../src/testing/TestTaskSource.ts"
import { harness } from "../support/harness.ts"

/**
 * deploy/grafana/r3mes-miner.json and deploy/prometheus/prometheus.yml against the metrics the miner really exports:
 * a dashboard whose query names a renamed or misspelt metric shows "No data" forever without a word, so every
 * metric, every label a query matches on and every suffix it reads (_bucket, _sum, _count) is checked against
 * /metrics of a running monitoring API (the miner's registry and an embedded verifier's).
 */

const deployFile = (path: string) => fileURLToPath(new URL(`../../deploy/${path}`, import.meta.url))
const dashboardPath = deployFile("grafana/r3mes-miner.json")
const prometheusPath = deployFile("prometheus/prometheus.yml")
const dashboard = JSON.parse(readFileSync(dashboardPath, "utf8"))

/** Labels Prometheus adds at scrape time, and the bucket bound: never in the exporter's label sets. */
const scrapeLabels = new Set(["instance", "job", "le"])

interface Family {
  readonly type: string
  /** Every label name of its samples, with the values seen. */
  readonly labels: Map<string, Set<string>>
}

/** `# TYPE` lines and the label sets of the samples under them, keyed by family. */
const parseExposition = (text: string): Map<string, Family> => {
  const families = new Map<string, Family>()
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type !== null) {
      families.set(type[1]!, { type: type[2]!, labels: new Map() })
      continue
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$/.exec(line)
    if (sample === null) continue
    const family = families.get(sample[1]!) ?? families.get(familyOf(sample[1]!))
    for (const [, name, value] of (sample[2] ?? "").matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) {
      const values = family?.labels.get(name!) ?? new Set<string>()
      values.add(value!)
      family?.labels.set(name!, values)
    }
  }
  return families
}

const familyOf = (name: string) => name.replace(/_(bucket|sum|count)$/, "")

interface Panel {
  readonly id: number
  readonly type: string
  readonly title: string
  readonly gridPos: { readonly h: number; readonly w: number; readonly x: number; readonly y: number }
  readonly datasource?: { readonly uid: string }
  readonly targets?: ReadonlyArray<{ readonly expr: string; readonly refId: string; readonly legendFormat?: string; readonly datasource?: { readonly uid: string } }>
  readonly panels?: ReadonlyArray<Panel>
}

/** Every panel, those inside rows (collapsed rows hold theirs) included. */
const allPanels = (panels: ReadonlyArray<Panel>): Array<Panel> => panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])])

/** Every PromQL expression of the dashboard, with where it is: panel targets and query variables. */
const queriesOf = (d: any): Array<{ readonly where: string; readonly expr: string; readonly legend?: string }> => [
  ...allPanels(d.panels).flatMap((p) =>
    (p.targets ?? []).map((t) => ({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr, legend: t.legendFormat }))
  ),
  ...d.templating.list.filter((v: any) => v.type === "query").map((v: any) => ({
    where: `variable $${v.name}`,
    expr: typeof v.query === "string" ? v.query : v.query.query
  }))
]

/**
 * What is wrong with one expression against the exported families: an unknown metric, a suffix its type has not,
 * a label matcher on a label (or an equality on a value) no series has, a `by`/legend label none of its metrics has.
 */
const problemsOf = (expr: string, legend: string | undefined, exported: Map<string, Family>): Array<string> => {
  const problems: Array<string> = []
  const names = [...expr.matchAll(/r3mes_[a-z0-9_]+/g)].map((m) => m[0])
  const used = new Set<string>()
  for (const name of names) {
    const family = exported.has(name) ? name : familyOf(name)
    const known = exported.get(family)
    if (known === undefined) {
      problems.push(`${name}: no such metric in /metrics`)
      continue
    }
    used.add(family)
    if (name.endsWith("_bucket") && family !== name && known.type !== "histogram") problems.push(`${name}: ${family} is a ${known.type}`)
    if (/_(sum|count)$/.test(name) && family !== name && !["histogram", "summary"].includes(known.type)) {
      problems.push(`${name}: ${family} is a ${known.type}`)
    }
  }
  // Matchers of every selector: `name{label op "value", …}`.
  for (const [, name, body] of expr.matchAll(/(r3mes_[a-z0-9_]+)\{([^}]*)\}/g)) {
    const known = exported.get(exported.has(name!) ? name! : familyOf(name!))
    if (known === undefined) continue
    for (const [, label, op, value] of body!.matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)) {
      if (scrapeLabels.has(label!)) continue
      const values = known.labels.get(label!)
      if (values === undefined) problems.push(`${name}: no series has a label "${label}"`)
      else if (op === "=" && !values.has(value!)) problems.push(`${name}: no series has ${label}="${value}" (only ${[...values].join(", ")})`)
    }
  }
  const labelsOfUsed = new Set([...used].flatMap((f) => [...exported.get(f)!.labels.keys()]))
  const grouped = [...expr.matchAll(/\bby\s*\(([^)]*)\)/g)].flatMap((m) => m[1]!.split(",").map((l) => l.trim()))
  const legendLabels = [...(legend ?? "").matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!)
  for (const label of [...grouped, ...legendLabels]) {
    if (!scrapeLabels.has(label) && !labelsOfUsed.has(label)) problems.push(`label "${label}": none of ${[...used].join(", ")} has it`)
  }
  return problems
}

const problemsOfDashboard = (d: any, exported: Map<string, Family>) =>
  queriesOf(d).flatMap((q) => problemsOf(q.expr, q.legend, exported).map((p) => `${q.where}: ${p}`))

/** The miner on the in-memory ports with an embedded verifier, as `mine` on the devnet with --verify serves it. */
const verifier = makeVerifierStats()
const monitoring = MonitoringApi.layer({
  verifier: { snapshot: Effect.sync(verifier.snapshot), metricRegistry: verifier.registry }
}).pipe(
  Layer.provideMerge(harness({ config: { maxRetries: 1 } })),
  Layer.provideMerge(Layer.sync(Metric.MetricRegistry, () => new Map())),
  Layer.provideMerge(Logger.layer([]))
)

/** Two commits, one rollback after a retry (IPFS refuses), and a verdict of each kind: every labelled series exists. */
const exportedMetrics = Effect.gen(function*() {
  const coordinator = yield* MiningCoordinator
  yield* coordinator.mine(testTask(1))
  yield* coordinator.mine(testTask(2))
  const store = yield* TestGradientStore
  yield* store.setFaults({ add: { alwaysFail: new NetworkError({ message: "connect ECONNREFUSED" }) } })
  const failed = yield* coordinator.mine(testTask(3))
  assert.notStrictEqual(failed.state, "committed")
  yield* store.setFaults({})
  for (const name of verdictNames) verifier.verdict(name)
  verifier.recomputed(0.25)
  const { url } = yield* MonitoringApi
  const text = yield* Effect.promise(() => fetch(`${url}/metrics`).then((r) => r.text()))
  return parseExposition(text)
})

describe("deploy/grafana/r3mes-miner.json", () => {
  it("is a dashboard Grafana imports: uid, title, schema ≥ 36, laid-out panels, a query and refId per target", () => {
    assert.isString(dashboard.uid)
    assert.isAbove(dashboard.uid.length, 0)
    assert.isString(dashboard.title)
    assert.isAtLeast(dashboard.schemaVersion, 36)
    const panels = allPanels(dashboard.panels)
    assert.isAbove(panels.length, 10)
    const ids = panels.map((p) => p.id)
    assert.strictEqual(new Set(ids).size, ids.length, "panel ids are unique")
    for (const p of panels) {
      const { h, w, x, y } = p.gridPos
      for (const n of [h, w, x, y]) assert.isTrue(Number.isInteger(n) && n >= 0, `panel "${p.title}" gridPos`)
      assert.isAtMost(x + w, 24, `panel "${p.title}" fits the 24-column grid`)
      if (p.type === "row") continue
      assert.isAbove(p.targets?.length ?? 0, 0, `panel "${p.title}" has targets`)
      assert.strictEqual(p.datasource?.uid, "${DS_PROMETHEUS}", `panel "${p.title}" uses the datasource variable`)
      const refIds = p.targets!.map((t) => t.refId)
      assert.strictEqual(new Set(refIds).size, refIds.length, `panel "${p.title}" refIds are unique`)
      for (const t of p.targets!) {
        assert.isString(t.expr, `panel "${p.title}" ${t.refId} has an expr`)
        assert.isAbove(t.expr.trim().length, 0)
        assert.match(t.refId, /^[A-Z]$/)
        assert.strictEqual(t.datasource?.uid, "${DS_PROMETHEUS}")
      }
    }
    const overlapping = panels.flatMap((a, i) =>
      panels.slice(i + 1).filter((b) =>
        a.gridPos.x < b.gridPos.x + b.gridPos.w && b.gridPos.x < a.gridPos.x + a.gridPos.w &&
        a.gridPos.y < b.gridPos.y + b.gridPos.h && b.gridPos.y < a.gridPos.y + a.gridPos.h
      ).map((b) => `"${a.title}" and "${b.title}"`)
    )
    assert.deepStrictEqual(overlapping, [], "no two panels overlap")
    const variables = new Map<string, any>(dashboard.templating.list.map((v: any) => [v.name, v]))
    assert.strictEqual(variables.get("DS_PROMETHEUS")?.type, "datasource")
    assert.strictEqual(variables.get("DS_PROMETHEUS")?.query, "prometheus")
    assert.strictEqual(variables.get("instance")?.definition, "label_values(r3mes_active_transactions, instance)")
    // Every miner query is narrowed to the chosen miners, so two miners on one Prometheus never add up silently.
    for (const q of queriesOf(dashboard).filter((q) => q.where.startsWith("panel"))) {
      assert.match(q.expr, /instance=~"\$(instance|verifier)"/, q.where)
    }
  })

  it.live("names only metrics, suffixes and labels the miner and its verifier export", () =>
    Effect.gen(function*() {
      const exported = yield* exportedMetrics
      assert.strictEqual(exported.get("r3mes_step_duration_seconds")?.type, "histogram")
      assert.strictEqual(exported.get("r3mes_verifications_total")?.type, "counter")
      assert.deepStrictEqual(problemsOfDashboard(dashboard, exported), [])

      // The check has teeth: a misspelt metric, a wrong suffix, a label value no series has are each caught.
      const broken = structuredClone(dashboard)
      const target = allPanels(broken.panels).find((p) => p.type !== "row")!.targets![0] as { expr: string }
      target.expr = `sum(rate(r3mes_transactions_committed_total[5m])) + r3mes_pins_bucket + r3mes_errors_total{category="cosmic_ray"}`
      const found = problemsOfDashboard(broken, exported)
      assert.strictEqual(found.length, 3, found.join("\n"))
      assert.match(found[0]!, /r3mes_transactions_committed_total: no such metric/)
      assert.match(found[1]!, /r3mes_pins_bucket: r3mes_pins is a gauge/)
      assert.match(found[2]!, /category="cosmic_ray"/)
    }).pipe(Effect.provide(monitoring)))
})

/** Debian's prometheus package ships promtool; nothing installs it for this test. */
const promtool = spawnSync("promtool", ["--version"], { encoding: "utf8" }).error === undefined

describe("deploy/prometheus/prometheus.yml", () => {
  const text = readFileSync(prometheusPath, "utf8")

  it("scrapes the miner on 127.0.0.1:8080 every 15 s, with a commented verifier job", async () => {
    // `yaml` comes with vite (a dev dependency's dependency): used when present, never added for this test.
    const yaml = await import("yaml" as string).catch(() => undefined) as { parse: (s: string) => any } | undefined
    if (yaml !== undefined) {
      const config = yaml.parse(text)
      assert.strictEqual(config.global.scrape_interval, "15s")
      assert.strictEqual(config.scrape_configs.length, 1)
      const [miner] = config.scrape_configs
      assert.strictEqual(miner.job_name, "r3mes-miner")
      assert.strictEqual(miner.metrics_path ?? "/metrics", "/metrics")
      assert.deepStrictEqual(miner.static_configs, [{ targets: ["127.0.0.1:8080"] }])
    } else {
      assert.match(text, /^global:\n(?:\s+.*\n)*?\s+scrape_interval: 15s$/m)
      assert.match(text, /^\s+- job_name: r3mes-miner$/m)
      assert.match(text, /^\s+- targets: \["127\.0\.0\.1:8080"\]$/m)
    }
    assert.match(text, /^\s*#\s*- job_name: r3mes-verifier$/m)
    assert.match(text, /^\s*#\s+- targets: \["127\.0\.0\.1:\d+"\]$/m)
  })

  it.skipIf(!promtool)("passes promtool check config", () => {
    const check = spawnSync("promtool", ["check", "config", prometheusPath], { encoding: "utf8" })
    assert.strictEqual(check.status, 0, `${check.stdout}${check.stderr}`)
  })
  if (!promtool) console.log("promtool not found (Debian: apt install prometheus): skipping `promtool check config`")
})
