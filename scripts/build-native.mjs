#!/usr/bin/env node
/**
 * Builds the native proof-of-work addon (native/pow, Node-API) with node-gyp. Run by npm at install
 * (`"install": "node scripts/build-native.mjs"`) and by `npm run build:native`.
 *
 * It never fails: without node-gyp, headers or a C compiler, or when the built addon does not load or gives a wrong
 * answer, it prints ONE warning line and exits 0; the miner then hashes in TypeScript worker threads. Plain
 * JavaScript (not .ts) so it runs on whatever Node npm starts, including one without type stripping.
 *
 * Headers: the addon uses only Node-API, whose ABI is stable across Node versions, so any Node's include/node with
 * node_api.h will do (npm's `nodedir`, the running Node's own, the system Node's). The build output is
 * native/pow/build/Release/r3mes_pow.node; the full log goes to native/pow/build-native.log.
 *
 *   R3MES_SKIP_NATIVE=1   skip the build (one line says so)
 *   R3MES_NODEDIR=DIR     headers directory to use (DIR/include/node/node_api.h)
 */
import { spawnSync } from "node:child_process"
import { existsSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const addonDir = join(root, "native", "pow")
const addonPath = join(addonDir, "build", "Release", "r3mes_pow.node")
const logPath = join(addonDir, "build-native.log")
const prefix = "r3mes-miner:"
const fallback = "proof of work will run in TypeScript worker threads (several times slower)"

const warn = (reason) => {
  console.warn(`${prefix} warning: native proof-of-work addon not built (${reason}); ${fallback}`)
}

const hasHeaders = (dir) => typeof dir === "string" && dir !== "" && existsSync(join(dir, "include", "node", "node_api.h"))

const findNodeGyp = () => {
  const require = createRequire(import.meta.url)
  const candidates = [
    process.env.npm_config_node_gyp,
    process.env.npm_execpath && join(dirname(process.env.npm_execpath), "..", "node_modules", "node-gyp", "bin", "node-gyp.js"),
    (() => {
      try {
        return require.resolve("node-gyp/bin/node-gyp.js")
      } catch {
        return undefined
      }
    })(),
    join(dirname(process.execPath), "..", "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
    "/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js",
    "/usr/local/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"
  ]
  return candidates.find((candidate) => typeof candidate === "string" && existsSync(candidate))
}

const findNodeDir = () =>
  [
    process.env.R3MES_NODEDIR,
    process.env.npm_config_nodedir,
    resolve(dirname(process.execPath), ".."),
    "/usr",
    "/usr/local"
  ].find(hasHeaders)

/** Loads the fresh addon in a child process (a crash there must not take this script down) and checks a vector. */
const verify = () => {
  const check = `
    const addon = require(${JSON.stringify(addonPath)});
    // Vector 1 of test/fixtures/pow-vectors.json: the smallest 16-bit nonce is 17915.
    const challenge = Buffer.from("2831fbd0e2615e6ed32d015966005fe916ab22dbedce8d36b6ebb9a88865efc2", "hex");
    const engines = addon.shaNi ? ["sha-ni", "portable"] : ["portable"];
    for (const engine of engines) {
      const nonce = addon.search(new Uint8Array(challenge), 0n, 100000n, 16, engine);
      if (nonce !== 17915n) throw new Error(engine + " engine found " + nonce + ", expected 17915");
    }
    process.stdout.write(addon.engine);
  `
  return spawnSync(process.execPath, ["-e", check], { encoding: "utf8", timeout: 60_000 })
}

const main = () => {
  if (process.env.R3MES_SKIP_NATIVE === "1") {
    console.warn(`${prefix} R3MES_SKIP_NATIVE=1: native proof-of-work addon not built; ${fallback}`)
    return
  }
  const nodeGyp = findNodeGyp()
  if (nodeGyp === undefined) return warn("node-gyp not found")
  const nodeDir = findNodeDir()
  const args = [nodeGyp, "rebuild", `--directory=${addonDir}`]
  // Without a local headers directory node-gyp downloads the running Node's headers (needs the network).
  if (nodeDir !== undefined) args.push(`--nodedir=${nodeDir}`)
  const started = Date.now()
  const build = spawnSync(process.execPath, args, { cwd: addonDir, encoding: "utf8", timeout: 180_000 })
  const log = [`$ ${process.execPath} ${args.join(" ")}`, build.stdout ?? "", build.stderr ?? ""].join("\n")
  try {
    writeFileSync(logPath, log)
  } catch {
    // The log is a convenience.
  }
  if (build.error !== undefined || build.status !== 0 || !existsSync(addonPath)) {
    const text = `${build.stderr ?? ""}\n${build.stdout ?? ""}`
    const missingTool =
      /not found: (make|cc|gcc|g\+\+|python)|command not found|No such file or directory.*(gcc|cc|make)|any Python/i
    const reason = build.error !== undefined
      ? build.error.message
      : missingTool.test(text)
      ? "no C compiler, make or python"
      : `node-gyp exited with ${build.status}`
    return warn(`${reason}; see ${logPath}`)
  }
  const check = verify()
  if (check.status !== 0) {
    rmSync(addonPath, { force: true })
    const output = (check.stderr || check.error?.message || "").trim().split("\n")
    const detail = output.find((line) => /Error/.test(line)) ?? "it does not load"
    return warn(`the built addon failed its self-check: ${detail}`)
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1)
  console.log(`${prefix} native proof-of-work addon built in ${seconds} s (engine: ${check.stdout.trim()})`)
}

try {
  main()
} catch (error) {
  warn(error instanceof Error ? error.message : String(error))
}
process.exitCode = 0
