import { describe, expect, it } from "vitest"
import { ResourceError } from "../../src/domain/errors.ts"
import { decideDevice, type DeviceCheck, pickAuto } from "../../src/layers/onnx/devices.ts"

const cpu: DeviceCheck = { device: "cpu", installed: true, initialises: true, stepMs: 2 }
const cudaMissing: DeviceCheck = { device: "cuda", installed: false, initialises: false, reason: "not installed" }
const cudaBroken: DeviceCheck = { device: "cuda", installed: true, initialises: false, reason: "file too short" }
const cudaWorks: DeviceCheck = { device: "cuda", installed: true, initialises: true, stepMs: 5 }
const webgpuMissing: DeviceCheck = { device: "webgpu", installed: false, initialises: false, reason: "no Vulkan driver" }
const webgpu = (stepMs: number): DeviceCheck => ({ device: "webgpu", installed: true, initialises: true, stepMs })

describe("auto's choice of device", () => {
  it("CUDA when it initialises, whatever its step time on the probe's small model", () => {
    expect(pickAuto([cpu, cudaWorks, webgpu(1)]).device).toBe("cuda")
  })

  it("WebGPU only when it steps no slower than the CPU: a software Vulkan driver is refused, saying so", () => {
    expect(pickAuto([cpu, cudaMissing, webgpu(1.5)]).device).toBe("webgpu")
    const slow = pickAuto([cpu, cudaBroken, webgpu(45)])
    expect(slow.device).toBe("cpu")
    expect(slow.reason).toContain("webgpu initialises but steps slower than the CPU (45.0 vs 2.0 ms")
    expect(slow.reason).toContain("cuda did not initialise: file too short")
  })

  it("the CPU when no GPU device trains, with each one's reason", () => {
    const selection = pickAuto([cudaMissing, webgpuMissing])
    expect(selection).toMatchObject({ requested: "auto", device: "cpu" })
    expect(selection.reason).toBe("no GPU device trains here: cuda: not installed; webgpu: no Vulkan driver")
  })
})

describe("an explicit device", () => {
  it("trains when it initialises", () => {
    expect(decideDevice("webgpu", [webgpu(40)])).toMatchObject({ requested: "webgpu", device: "webgpu" })
    expect(decideDevice("cpu", [])).toMatchObject({ device: "cpu", reason: "as configured" })
  })

  it("is a ResourceError naming the device, the reason and the fix when it does not", () => {
    const error = decideDevice("cuda", [cudaBroken])
    expect(error).toBeInstanceOf(ResourceError)
    expect(error).toMatchObject({ resource: "cuda", message: "--device cuda (R3MES_DEVICE) cannot train: file too short" })
    expect((error as ResourceError).hint).toContain("ONNXRUNTIME_NODE_INSTALL=cuda12")
    const webgpuError = decideDevice("webgpu", [webgpuMissing]) as ResourceError
    expect(webgpuError.hint).toContain("apt-get install libvulkan1")
  })
})
