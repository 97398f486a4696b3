import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { probeDevices, selectDevice } from "../../src/layers/onnx/devices.ts"

/** The child process that tries devices (devices.ts), on this machine's CPU provider. */
describe("the device probe", () => {
  it("runs training steps on the CPU in a child process and reports their time", async () => {
    const [cpu] = await Effect.runPromise(probeDevices(["cpu"]))
    expect(cpu).toMatchObject({ device: "cpu", installed: true, initialises: true })
    expect(cpu!.stepMs).toBeGreaterThan(0)
  }, 60_000)

  it("a probe that outlives its time (a hung driver) is killed, and the device does not initialise", async () => {
    const started = Date.now()
    const [cpu] = await Effect.runPromise(probeDevices(["cpu"], { timeoutMs: 50 }))
    expect(cpu).toMatchObject({ device: "cpu", initialises: false })
    expect(cpu!.reason).toContain("did not initialise within 0.05 s (a hung driver?)")
    expect(Date.now() - started).toBeLessThan(10_000)
  }, 60_000)

  it("a provider this build lacks answers with ONNX Runtime's reason, not a crash", async () => {
    const [tpu] = await Effect.runPromise(probeDevices(["tpu" as "cpu"]))
    expect(tpu).toMatchObject({ initialises: false })
    expect(tpu!.reason).toBeTruthy()
  }, 60_000)

  it("an explicit device that fails its probe stops selection with a ResourceError", async () => {
    const error = await Effect.runPromise(Effect.flip(selectDevice("webgpu", { timeoutMs: 50 })))
    expect(error._tag).toBe("ResourceError")
    expect(error.message).toMatch(/^--device webgpu \(R3MES_DEVICE\) cannot train: /)
  }, 60_000)
})
