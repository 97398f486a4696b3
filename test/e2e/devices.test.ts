import { existsSync, mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { type Spawned, spawnCli, statsUrlInLog, waitFor } from "../support/audit.ts"
import { brokenCudaRuntime } from "../support/brokenCuda.ts"
import { cli } from "../support/cli.ts"

/**
 * Compute devices (issue 16, DESIGN.md "Compute devices") on a machine whose CUDA install went wrong: onnxruntime-node
 * (a copy, loaded through a resolution hook in NODE_OPTIONS) has CUDA provider libraries that are not libraries. This
 * machine has no GPU driver either way, so a broken library and a missing driver both end in the loader's failure.
 */
describe("r3mes-miner devices and --device, with a broken CUDA library", () => {
  let dir: string
  let env: Record<string, string>

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "r3mes-devices-"))
    env = { NODE_OPTIONS: brokenCudaRuntime(join(dir, "runtime")).nodeOptions }
  })

  it("devices: cuda is installed but does not initialise (the loader's reason), cpu trains, auto picks cpu", async () => {
    const run = await cli(["devices", "--json"], { env, timeoutMs: 120_000 })
    assert.strictEqual(run.status, 0, run.stderr)
    const answer = JSON.parse(run.stdout) as {
      devices: Array<{ device: string; installed: boolean; initialises: boolean; step_ms: number | null; reason: string | null; profile: { ep: string } }>
      auto: { device: string; reason: string }
      configured: { requested: string; device: string }
    }
    const byDevice = new Map(answer.devices.map((d) => [d.device, d]))
    assert.deepStrictEqual([...byDevice.keys()], ["cpu", "cuda", "webgpu"])
    assert.isTrue(byDevice.get("cpu")!.initialises)
    assert.isAbove(byDevice.get("cpu")!.step_ms!, 0)
    const cuda = byDevice.get("cuda")!
    assert.isTrue(cuda.installed)
    assert.isFalse(cuda.initialises)
    assert.match(cuda.reason!, /Failed to load shared library: .*libonnxruntime_providers_(shared|cuda)\.so: (file too short|invalid ELF header)/)
    assert.strictEqual(cuda.profile.ep, "cuda")
    assert.strictEqual(answer.auto.device, "cpu")
    assert.include(answer.auto.reason, "cuda did not initialise")
    assert.deepStrictEqual(answer.configured.device, "cpu")
  }, 150_000)

  it("devices --device cuda: exit 1, the reason and the fix", async () => {
    const run = await cli(["devices", "--device", "cuda"], { env, timeoutMs: 120_000 })
    assert.strictEqual(run.status, 1, run.stderr)
    assert.include(run.stdout, "--device cuda (configured) cannot train")
    assert.include(run.stdout, "hint: install onnxruntime-node's CUDA 12 provider")
  }, 150_000)

  it("mine --device cuda stops at start, before a devnet or a journal exists, with one line and a hint", async () => {
    const dataDir = join(dir, "explicit")
    const run = await cli(["mine", "--iterations", "1", "--device", "cuda", "--data-dir", dataDir, "--stats-port", "0"], {
      env,
      timeoutMs: 120_000
    })
    assert.strictEqual(run.status, 1, run.stderr)
    const error = run.stderrLines.find((line) => line.includes("--device cuda (R3MES_DEVICE) cannot train"))
    assert.isDefined(error, run.stderr)
    assert.include(error!, "Failed to load shared library")
    assert.isTrue(run.stderrLines.some((line) => line.startsWith("hint: ") && line.includes("r3mes-miner devices")), run.stderr)
    assert.isFalse(existsSync(join(dataDir, "journal.sqlite")), "nothing started")
  }, 150_000)

  it("R3MES_DEVICE with an unknown device is refused with the values it takes", async () => {
    const run = await cli(["mine", "--print-config"], { env: { ...env, R3MES_DEVICE: "tpu" }, timeoutMs: 60_000 })
    assert.strictEqual(run.status, 2, run.stderr)
    assert.include(run.stderr, "R3MES_DEVICE")
    assert.include(run.stderr, "one of auto, cpu, cuda, webgpu")
  }, 90_000)

  describe("mine with --device auto", () => {
    let miner: Spawned | undefined
    afterAll(async () => {
      miner?.signal("SIGKILL")
      await miner?.exited
    })

    it("falls back to the CPU once, logged with the reason; /stats and the gradients' profile say cpu", async () => {
      const dataDir = join(dir, "auto")
      const logFile = join(dataDir, "miner.log")
      miner = spawnCli(["mine", "--data-dir", dataDir, "--stats-port", "0", "--log-file", logFile], { env, timeoutMs: 150_000 })
      await waitFor(() => statsUrlInLog(logFile) !== undefined, 90_000, "the monitoring API")
      const api = statsUrlInLog(logFile)!
      let stats: { miner: { device: { requested: string; ep: string; reason: string } }; atomic_coordinator: { committed: number } }
      for (;;) {
        stats = await (await fetch(`${api}/stats`)).json() as typeof stats
        if (stats.atomic_coordinator.committed >= 2) break
        await new Promise((resolve) => setTimeout(resolve, 250))
      }
      assert.deepStrictEqual({ requested: stats.miner.device.requested, ep: stats.miner.device.ep }, { requested: "auto", ep: "cpu" })
      assert.include(stats.miner.device.reason, "cuda did not initialise")
      // Once per process, though the miner and the embedded verifier each build a trainer; on the console too.
      const logged = readFileSync(logFile, "utf8").split("\n").filter((line) => line.includes("training device:"))
      assert.strictEqual(logged.length, 1, logged.join("\n"))
      assert.include(logged[0]!, "\"level\":\"WARN\"")
      assert.strictEqual(miner.stderr().split("\n").filter((line) => line.includes("training device: cpu (auto:")).length, 1, miner.stderr())
      const listed = await (await fetch(`${api}/transactions?state=committed&limit=1`)).json() as { transactions: Array<{ ipfs_hash: string }> }
      miner.signal("SIGTERM")
      assert.strictEqual((await miner.exited).code, 0, miner.stderr())
      // The gradient's envelope names the device that computed it.
      const inspected = await cli(["gradient", "inspect", listed.transactions[0]!.ipfs_hash, "--data-dir", dataDir], { env, timeoutMs: 60_000 })
      assert.strictEqual(inspected.status, 0, inspected.stderr)
      assert.strictEqual((JSON.parse(inspected.stdout) as { header: { profile: { ep: string } } }).header.profile.ep, "cpu")
    }, 180_000)
  })
})
