import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"

/**
 * The CLI's process ends once its program is done, even when a library left a fiber running behind it (a fleet
 * runner whose cluster shutdown was given up, after a freeze past its lease, never exited): `endProcessOnceDone`.
 */
const program = fileURLToPath(new URL("../support/lingeringProgram.ts", import.meta.url))

const run = (args: ReadonlyArray<string>, waitMs: number) =>
  Effect.promise(() =>
    new Promise<{ code: number | null; stdoutBytes: number; ended: boolean }>((resolve) => {
      const child = spawn(process.execPath, [program, ...args], { stdio: ["ignore", "pipe", "inherit"] })
      let stdoutBytes = 0
      child.stdout.on("data", (d: Buffer) => (stdoutBytes += d.length))
      const timer = setTimeout(() => {
        child.kill("SIGKILL")
        resolve({ code: null, stdoutBytes, ended: false })
      }, waitMs)
      child.once("close", (code) => {
        clearTimeout(timer)
        resolve({ code, stdoutBytes, ended: true })
      })
    })
  )

describe("the process once the program is done", () => {
  it.live("ends with code 0 and all its output, though a fiber still runs", () =>
    Effect.gen(function*() {
      const result = yield* run([], 20_000)
      assert.deepStrictEqual(result, { code: 0, stdoutBytes: 1 << 20, ended: true })
    }), 30_000)

  it.live("ends with the program's exit code on a failure", () =>
    Effect.gen(function*() {
      const result = yield* run(["fail"], 20_000)
      assert.deepStrictEqual(result, { code: 3, stdoutBytes: 1 << 20, ended: true })
    }), 30_000)

  it.live("without it (NodeRuntime's own teardown), the lingering fiber holds the process", () =>
    Effect.gen(function*() {
      const result = yield* run(["natural"], 4_000)
      assert.isFalse(result.ended, "the process ended by itself: the test above proves nothing")
    }), 30_000)
})
