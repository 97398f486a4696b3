import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Logger, Metric } from "effect"
import puppeteer, { type Browser, type Page } from "puppeteer-core"
import { fleetSection } from "../../src/app/fleet.ts"
import { newRecord } from "../../src/domain/TransactionRecord.ts"
import type { TransactionState } from "../../src/domain/TransactionState.ts"
import { MonitoringApi } from "../../src/layers/http/MonitoringApi.ts"
import { FleetRoster } from "../../src/services/FleetRoster.ts"
import { Journal } from "../../src/services/Journal.ts"
import { TestFleetRoster } from "../../src/testing/TestFleetRoster.ts"
import { type Spawned, spawnCli, statsUrlInLog, waitFor } from "../support/audit.ts"
import { harness } from "../support/harness.ts"

/**
 * The dashboard (GET /) in a real browser: headless Chromium (Debian's `chromium`, driven by puppeteer-core) against
 * a running miner on the embedded devnet. The page loads without a console error or a failed request, every chart
 * has points, what it shows agrees with /stats, it fits a 360 px screen, and screenshots are saved for a human.
 */

const artifacts = fileURLToPath(new URL("../../test-artifacts/", import.meta.url))

/** CHROME_PATH, else the first Chromium on the PATH (.ci/run installs Debian's as root). */
const findBrowser = (): string | undefined => {
  const configured = process.env["CHROME_PATH"]
  if (configured !== undefined && configured !== "") return existsSync(configured) ? configured : undefined
  for (const name of ["chromium", "chromium-browser", "google-chrome"]) {
    const found = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" })
    if (found.status === 0 && found.stdout.trim() !== "") return found.stdout.trim()
  }
  return undefined
}

const browserPath = findBrowser()
if (browserPath === undefined) {
  const configured = process.env["CHROME_PATH"]
  const why = configured !== undefined && configured !== ""
    ? `CHROME_PATH=${configured} does not exist`
    : "no CHROME_PATH and no chromium, chromium-browser or google-chrome on the PATH"
  console.warn(
    `dashboard browser test skipped: ${why}; install Debian's Chromium with \`apt-get install -y chromium\` (as root; ` +
      ".ci/run does) or set CHROME_PATH to a Chrome or Chromium executable"
  )
}

interface StatsAnswer {
  readonly atomic_coordinator: { readonly committed: number; readonly failed: number }
  readonly network?: {
    readonly rounds: ReadonlyArray<{
      readonly round_id: string
      readonly test_accuracy: number
      readonly submitted: number
      readonly rejected: number
      readonly miners: ReadonlyArray<{ readonly miner: string; readonly submitted: number; readonly rejected: number }>
    }>
    readonly latest_finalized: { readonly round_id: string; readonly test_accuracy: number } | null
  }
}

const getStats = async (api: string): Promise<StatsAnswer> => (await fetch(`${api}/stats`)).json() as Promise<StatsAnswer>

/** What the page shows, read from its DOM, with the /stats answer it drew it from. */
const readPage = (page: Page) =>
  page.evaluate(() => {
    // Runs in the page: the test's types know no DOM (tsconfig lib es2024).
    const { document } = globalThis as any
    const text = (name: string) => document.querySelector(`[data-field="${name}"]`)?.textContent ?? ""
    const dashboard = (globalThis as any).__dashboard
    const rounds = [...document.querySelectorAll("#rounds-table tbody tr")]
      .map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent ?? ""))
      .filter((cells) => cells.length > 1)
      .map((cells) => ({ round_id: cells[0]!, accuracy: cells[5]! }))
    const miners = [...document.querySelectorAll("#miners-table tbody tr")]
      .map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent ?? ""))
      .filter((cells) => cells.length > 1)
      .map((cells) => ({ miner: cells[0]!, submitted: cells[1]! }))
    return {
      polls: dashboard.polls as number,
      points: dashboard.points() as Record<string, number>,
      drawnFrom: dashboard.stats as StatsAnswer,
      committed: text("committed"),
      failed: text("failed"),
      latestRound: text("latest_round"),
      latestAccuracy: text("latest_accuracy"),
      rounds,
      miners,
      networkShown: !document.getElementById("network").hidden
    }
  })

/** Three polls draw a line on every time chart; the network and loss charts have points from the first one. */
const chartsDrawn = (page: Page) =>
  page.waitForFunction(
    () => {
      const d = (globalThis as any).__dashboard
      return d.polls >= 3 && Object.values(d.points() as Record<string, number>).every((n) => n > 0)
    },
    { timeout: 20_000, polling: 250 }
  )

const launch = () =>
  puppeteer.launch({ executablePath: browserPath!, args: ["--no-sandbox", "--headless=new", "--disable-dev-shm-usage"] })

/** A new page that records every console error or warning, page error, failed request and HTTP error. */
const openPage = async (browser: Browser) => {
  const page = await browser.newPage()
  const problems: Array<string> = []
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warn") problems.push(`console ${message.type()}: ${message.text()}`)
  })
  page.on("pageerror", (error) => problems.push(`page error: ${String(error)}`))
  page.on("requestfailed", (request) => problems.push(`request failed: ${request.url()} ${request.failure()?.errorText}`))
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()}: ${response.url()}`)
  })
  return { page, problems }
}

const percent = (accuracy: number) => `${(accuracy * 100).toFixed(2)} %`
const integer = (shown: string) => Number(shown.replaceAll(",", ""))

/** The monitoring API of this process's layers in a browser, drawn twice (for tests on the test ports). */
const dashboardOfThisProcess = Effect.gen(function*() {
  const { url } = yield* MonitoringApi
  const browser = yield* Effect.acquireRelease(Effect.promise(launch), (b) => Effect.promise(() => b.close()))
  const { page, problems } = yield* Effect.promise(() => openPage(browser))
  yield* Effect.promise(() => page.goto(`${url}/`, { waitUntil: "load" }))
  yield* Effect.promise(() =>
    page.waitForFunction(() => (globalThis as any).__dashboard.polls >= 2, { timeout: 15_000, polling: 100 })
  )
  return { page, problems, url }
})

describe.skipIf(browserPath === undefined)("dashboard in a real browser", () => {
  it("a running miner's dashboard: no console error, every chart drawn, numbers equal to /stats, fits a phone", async () => {
    const dir = mkdtempSync(join(tmpdir(), "r3mes-dashboard-"))
    const logFile = join(dir, "miner.log")
    let miner: Spawned | undefined
    let browser: Browser | undefined
    try {
      miner = spawnCli(["mine", "--json", "--data-dir", dir, "--stats-port", "0", "--log-file", logFile], { timeoutMs: 180_000 })
      await waitFor(() => statsUrlInLog(logFile) !== undefined, 45_000, "the monitoring API")
      const api = statsUrlInLog(logFile)!
      // One learning round finalized (8 transactions) gives the network section its headline point.
      const deadline = Date.now() + 60_000
      let stats = await getStats(api)
      while ((stats.network?.rounds.length ?? 0) < 1 && Date.now() < deadline && miner.running()) {
        await new Promise((resolve) => setTimeout(resolve, 500))
        stats = await getStats(api)
      }
      assert.isAtLeast(stats.network?.rounds.length ?? 0, 1, `a round finalized; miner stderr: ${miner.stderr().slice(-2000)}`)

      browser = await launch()
      const { page, problems } = await openPage(browser)
      await page.setViewport({ width: 1280, height: 900 })
      const loaded = await page.goto(`${api}/`, { waitUntil: "load" })
      assert.strictEqual(loaded?.status(), 200)
      assert.match(await page.title(), /r3mes-miner/)

      await chartsDrawn(page)

      // Bracketed by two /stats answers: the page draws from a /stats it asked for after the first was answered and
      // before the second was asked for (one clock: the same machine), so what it shows lies between them.
      const before = await getStats(api)
      const since = Date.now()
      await page.waitForFunction(
        (t: number) => ((globalThis as any).__dashboard.statsRequestedAt ?? 0) > t,
        { timeout: 10_000, polling: 100 },
        since
      )
      const shown = await readPage(page)
      const after = await getStats(api)
      const committed = [before, after].map((answer) => answer.atomic_coordinator.committed)
      console.log(`dashboard: points per chart ${JSON.stringify(shown.points)}; committed ${committed[0]} ≤ ${shown.committed} ≤ ${committed[1]}`)
      for (const [name, points] of Object.entries(shown.points)) assert.isAbove(points, 0, `chart ${name} has points`)
      assert.strictEqual(integer(shown.committed), shown.drawnFrom.atomic_coordinator.committed, "committed as /stats said it")
      assert.isAtLeast(integer(shown.committed), before.atomic_coordinator.committed)
      assert.isAtMost(integer(shown.committed), after.atomic_coordinator.committed)
      assert.strictEqual(integer(shown.failed), shown.drawnFrom.atomic_coordinator.failed)
      assert.strictEqual(integer(shown.failed), after.atomic_coordinator.failed, "no failure in between")

      // The network section: each finalized round's test accuracy as /stats has it (a finalized round never changes).
      assert.isTrue(shown.networkShown)
      assert.isAtLeast(shown.rounds.length, 1)
      for (const row of shown.rounds) {
        const round = after.network!.rounds.find((r) => r.round_id === row.round_id)
        assert.isDefined(round, `round ${row.round_id} in /stats`)
        assert.strictEqual(row.accuracy, percent(round!.test_accuracy), `round ${row.round_id}'s test accuracy`)
      }
      const latest = shown.drawnFrom.network!.latest_finalized!
      assert.strictEqual(shown.latestRound, latest.round_id)
      assert.strictEqual(shown.latestAccuracy, percent(latest.test_accuracy))
      assert.isTrue(after.network!.rounds.some((r) => r.round_id === shown.rounds[0]!.round_id))
      // The per-miner breakdown adds up to each round's counts, and the table to the rounds shown.
      const drawnRounds = shown.drawnFrom.network!.rounds
      for (const r of drawnRounds) {
        assert.strictEqual(r.miners.reduce((n, m) => n + m.submitted, 0), r.submitted, `round ${r.round_id}: submitted`)
        assert.strictEqual(r.miners.reduce((n, m) => n + m.rejected, 0), r.rejected, `round ${r.round_id}: rejected`)
      }
      assert.isAtLeast(shown.miners.length, 1)
      assert.strictEqual(
        shown.miners.reduce((n, m) => n + integer(m.submitted), 0),
        drawnRounds.reduce((n, r) => n + r.submitted, 0)
      )
      assert.match(shown.miners[0]!.miner, /^0x[0-9a-fA-F]{40}$/)

      mkdirSync(artifacts, { recursive: true })
      const desktop = join(artifacts, "dashboard.png")
      await page.screenshot({ path: desktop, fullPage: true })

      // A phone, in dark mode: the charts stack, nothing wider than the screen. (Emulating a mobile device reloads the
      // page, so its charts start again from three polls.)
      await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: "dark" }])
      await page.setViewport({ width: 360, height: 780, isMobile: true, hasTouch: true })
      await chartsDrawn(page)
      const widths = await page.evaluate(() => {
        const { document, window } = globalThis as any
        return {
          page: document.documentElement.scrollWidth as number,
          viewport: window.innerWidth as number,
          widest: Math.max(...[...document.querySelectorAll(".chart")].map((c: any) => c.getBoundingClientRect().right as number))
        }
      })
      assert.isAtMost(widths.page, widths.viewport, `no horizontal overflow at 360 px: ${JSON.stringify(widths)}`)
      assert.isAtMost(widths.widest, widths.viewport)
      const phone = join(artifacts, "dashboard-phone.png")
      await page.screenshot({ path: phone, fullPage: true })
      console.log(`dashboard screenshots: ${desktop} (desktop, light), ${phone} (360 px, dark)`)

      assert.deepStrictEqual(problems, [], "no console error, failed request or HTTP error")
    } finally {
      await browser?.close()
      if (miner !== undefined) {
        miner.signal("SIGTERM")
        await miner.exited
      }
      rmSync(dir, { recursive: true, force: true })
    }
  }, 150_000)

  it.live("a miner with no transaction, no verifier and no network: the page draws without an error", () =>
    Effect.gen(function*() {
      const { page, problems } = yield* dashboardOfThisProcess
      const shown = yield* Effect.promise(() =>
        page.evaluate(() => {
          const { document } = globalThis as any
          return {
            network: document.getElementById("network").hidden,
            verifier: document.getElementById("verifier").hidden,
            committed: document.querySelector("[data-field=committed]")?.textContent,
            transactions: document.querySelector("#transactions-table tbody")?.textContent,
            connection: document.getElementById("connection")?.textContent
          }
        })
      )
      assert.deepStrictEqual(shown, {
        network: true,
        verifier: true,
        committed: "0",
        transactions: "no transactions yet",
        connection: "live"
      })
      assert.deepStrictEqual(problems, [])
    }).pipe(
      Effect.scoped,
      Effect.provide(MonitoringApi.layer({ port: 0 }).pipe(
        Layer.provideMerge(harness()),
        Layer.provideMerge(Layer.sync(Metric.MetricRegistry, () => new Map())),
        Layer.provideMerge(Logger.layer([]))
      ))
    ), 60_000)

  it.live("a fleet runner: the fleet's runners, running or gone, with their transactions, as /stats says", () =>
    Effect.gen(function*() {
      const journal = yield* Journal
      const record = (owner: string, chunkId: number, state: TransactionState) => {
        const r = newRecord({ transactionId: `tx-1-${chunkId}-${owner}`, key: `k:1:${chunkId}`, roundId: 1n, chunkId, nowMs: 0, owner })
        return journal.save({ ...r, state }, { at: r.created_at, state, event: "test", detail: "" })
      }
      for (const [owner, chunk, state] of [
        ["runner-a", 1, "committed"], ["runner-a", 2, "committed"], ["runner-a", 3, "training"],
        ["runner-b", 4, "committed"], ["runner-b", 5, "blockchain_submit"], ["runner-b", 6, "rolled_back"]
      ] as const) yield* record(owner, chunk, state)
      const { page, problems, url } = yield* dashboardOfThisProcess
      const shown = yield* Effect.promise(() =>
        page.evaluate(() => {
          const { document } = globalThis as any
          const text = (name: string) => document.querySelector(`[data-field="${name}"]`)?.textContent ?? ""
          return {
            hidden: document.getElementById("fleet").hidden,
            self: text("fleet_self"),
            running: text("fleet_running"),
            committed: text("fleet_committed"),
            unfinished: text("fleet_unfinished"),
            undone: text("fleet_undone"),
            rows: [...document.querySelectorAll("#fleet-table tbody tr")].map((tr: any) =>
              [...tr.querySelectorAll("td")].map((td: any) => td.textContent ?? "")
            )
          }
        })
      )
      const stats = yield* Effect.promise(() =>
        fetch(`${url}/stats`).then((r) => r.json()) as Promise<{ fleet: { runners: Array<{ runner: string; running: boolean }> } }>
      )
      assert.deepStrictEqual(stats.fleet.runners.map((r) => [r.runner, r.running]), [["runner-a", true], ["runner-b", false]])
      assert.deepStrictEqual(shown, {
        hidden: false,
        self: "runner-a",
        running: "1 of 2",
        committed: "3",
        unfinished: "2",
        undone: "1",
        rows: [
          ["runner-a (this one)", "running", "2", "1", "0", "0"],
          ["runner-b", "gone", "1", "1", "1", "0"]
        ]
      })
      mkdirSync(artifacts, { recursive: true })
      yield* Effect.promise(() => page.screenshot({ path: join(artifacts, "dashboard-fleet.png"), fullPage: true }))
      assert.deepStrictEqual(problems, [])
    }).pipe(
      Effect.scoped,
      Effect.provide(
        Layer.unwrap(Effect.gen(function*() {
          return MonitoringApi.layer({ port: 0, fleet: fleetSection(yield* FleetRoster) })
        })).pipe(
          Layer.provideMerge(TestFleetRoster.layer({ self: "runner-a" })),
          Layer.provideMerge(harness({ journal: { owner: "runner-a" } })),
          Layer.provideMerge(Layer.sync(Metric.MetricRegistry, () => new Map())),
          Layer.provideMerge(Logger.layer([]))
        )
      )
    ), 60_000)
})
