import { readFileSync } from "node:fs"
import { createRequire } from "node:module"

/**
 * The dashboard's files, read once when the monitoring API starts: the page, its own scripts and stylesheet (beside
 * this file: plain browser JS and CSS, no build step) and uPlot from the installed package, so the page works
 * offline and behind any firewall (no CDN).
 */

export interface DashboardAsset {
  readonly contentType: string
  readonly body: string
}

export interface DashboardFiles {
  readonly page: string
  /** By name, as served under /assets/. */
  readonly assets: ReadonlyMap<string, DashboardAsset>
}

const javascript = "text/javascript; charset=utf-8"
const css = "text/css; charset=utf-8"

const own = (name: string) => readFileSync(new URL(name, import.meta.url), "utf8")

export const loadDashboardFiles = (): DashboardFiles => {
  const resolve = createRequire(import.meta.url).resolve
  const uplot = (name: string) => readFileSync(resolve(`uplot/dist/${name}`), "utf8")
  return {
    page: own("./index.html"),
    assets: new Map([
      ["uplot.min.js", { contentType: javascript, body: uplot("uPlot.iife.min.js") }],
      ["uplot.min.css", { contentType: css, body: uplot("uPlot.min.css") }],
      ["charts.js", { contentType: javascript, body: own("./charts.js") }],
      ["render.js", { contentType: javascript, body: own("./render.js") }],
      ["network.js", { contentType: javascript, body: own("./network.js") }],
      ["fleet.js", { contentType: javascript, body: own("./fleet.js") }],
      ["dashboard.js", { contentType: javascript, body: own("./dashboard.js") }],
      ["dashboard.css", { contentType: css, body: own("./dashboard.css") }]
    ])
  }
}
