import { spawn } from "node:child_process"
import { existsSync, readdirSync } from "node:fs"
import { createRequire } from "node:module"
import { homedir } from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, Exit } from "effect"
import * as ort from "onnxruntime-node"
import { ResourceError } from "../../domain/errors.ts"
import { type Device, devices, type ExecutionProviderChoice } from "./ortSession.ts"

/**
 * Which compute device training runs on (DESIGN.md "Compute devices"). A device is first looked for (its provider
 * in this onnxruntime-node build, its libraries or driver on disk), then tried: a child process (deviceProbe.ts)
 * creates a training session on it and times training steps of the default MLP. `auto` takes CUDA when it initialises;
 * WebGPU when it initialises and its step is not slower than the CPU's (it may run on a software Vulkan driver such as
 * SwiftShader or lavapipe, ~20× slower than the CPU, and ONNX Runtime does not say which adapter it got); else the
 * CPU. Tried once per process: every trainer of the process shares the answer.
 */

export interface DeviceCheck {
  readonly device: Device
  /** The provider is in this build and what it needs is on disk (CUDA's provider library; a Vulkan driver). */
  readonly installed: boolean
  /** It created a training session and ran training steps (only looked at when installed). */
  readonly initialises: boolean
  /** Why it is not installed or does not initialise. */
  readonly reason?: string | undefined
  /** Median milliseconds of one training step of the default MLP at batch 32, when it initialises. */
  readonly stepMs?: number | undefined
}

export interface DeviceSelection {
  readonly requested: ExecutionProviderChoice
  /** The device training runs on. */
  readonly device: Device
  /** One line saying what was chosen and why the others were not. */
  readonly reason: string
  readonly checks: ReadonlyArray<DeviceCheck>
}

export interface ProbeOptions {
  /** How long the child may take for all its devices (a driver can hang). Default 90 s. */
  readonly timeoutMs?: number
}

const defaultProbeTimeoutMs = 90_000

/** onnxruntime-node's native directory, where its CUDA provider's libraries go once installed. */
const ortBinaryDir = (): string | undefined => {
  try {
    const dist = path.dirname(createRequire(import.meta.url).resolve("onnxruntime-node"))
    return path.join(dist, "..", "bin", "napi-v6", process.platform, process.arch)
  } catch {
    return undefined
  }
}

const listed = (device: Device): boolean => ort.listSupportedBackends().some((b) => b.name === device)

/**
 * The CUDA provider: onnxruntime-node lists "cuda" on linux/x64 whether or not its provider library was downloaded
 * at install time (`allowScripts` in package.json skips that download), so the listing and the file together.
 */
const cudaInstalled = (): { installed: boolean; reason?: string } => {
  if (!listed("cuda")) return { installed: false, reason: `this onnxruntime-node build has no CUDA provider on ${process.platform}-${process.arch}` }
  const dir = ortBinaryDir()
  const library = dir === undefined ? undefined : path.join(dir, "libonnxruntime_providers_cuda.so")
  return library !== undefined && existsSync(library)
    ? { installed: true }
    : { installed: false, reason: `onnxruntime-node's CUDA provider is not installed (no ${library ?? "libonnxruntime_providers_cuda.so"})` }
}

const vulkanLoaderDirs = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib", "/lib/x86_64-linux-gnu"]

/** The Vulkan loader's ICD search path on Linux (Vulkan-Loader's LoaderInterfaceArchitecture.md), or the override. */
const vulkanDriverManifests = (): ReadonlyArray<string> => {
  const override = process.env["VK_DRIVER_FILES"] ?? process.env["VK_ICD_FILENAMES"]
  if (override !== undefined && override !== "") return override.split(":").filter((f) => existsSync(f))
  const dataHome = process.env["XDG_DATA_HOME"] ?? path.join(homedir(), ".local", "share")
  const dataDirs = (process.env["XDG_DATA_DIRS"] ?? "/usr/local/share:/usr/share").split(":")
  const configDirs = (process.env["XDG_CONFIG_DIRS"] ?? "/etc/xdg").split(":")
  const dirs = [...configDirs, "/etc", dataHome, ...dataDirs].map((d) => path.join(d, "vulkan", "icd.d"))
  return dirs.flatMap((dir) => {
    try {
      return readdirSync(dir).filter((f) => f.endsWith(".json")).map((f) => path.join(dir, f))
    } catch {
      return []
    }
  })
}

/**
 * The WebGPU provider: bundled, and on Linux (Dawn over Vulkan) the Vulkan loader and at least one driver manifest.
 * Elsewhere Dawn uses D3D12 or Metal, which the system has: only trying tells.
 */
const webgpuInstalled = (): { installed: boolean; reason?: string } => {
  if (!listed("webgpu")) return { installed: false, reason: `this onnxruntime-node build has no WebGPU provider on ${process.platform}-${process.arch}` }
  if (process.platform !== "linux") return { installed: true }
  if (!vulkanLoaderDirs.some((dir) => existsSync(path.join(dir, "libvulkan.so.1")))) {
    return { installed: false, reason: "no Vulkan loader (libvulkan.so.1): WebGPU runs on Vulkan here" }
  }
  return vulkanDriverManifests().length > 0
    ? { installed: true }
    : { installed: false, reason: "no Vulkan driver (no ICD manifest in /usr/share/vulkan/icd.d, /etc/vulkan/icd.d, …; VK_ICD_FILENAMES unset)" }
}

/** Whether a device's provider is in this build with what it needs on disk (no session is tried), or why not. */
export const installation = (device: Device): { installed: boolean; reason?: string } =>
  device === "cpu" ? { installed: true } : device === "cuda" ? cudaInstalled() : webgpuInstalled()

/**
 * ONNX Runtime's failures name its source file and a lambda before the point; keep the point, and the library's
 * own complaint from stderr when there is one (a dlopen error says which file is missing).
 */
const explain = (error: string, stderr: string): string => {
  const point = (/was false\. (.*)$/s.exec(error)?.[1] ?? error).trim().split("\n")[0]!
  const detail = stderr.split("\n").map((line) => line.replace(/\x1b\[[0-9;]*m/g, "").trim())
    .filter((line) => /with error:|cannot open|not found|failed/i.test(line)).at(-1)
  const dlopen = detail === undefined ? undefined : /with error: (.*)$/.exec(detail)?.[1] ?? detail.replace(/^.*\] /, "")
  return (dlopen === undefined || point.includes(dlopen) ? point : `${point}: ${dlopen}`).slice(0, 400)
}

const probeScript = fileURLToPath(new URL("./deviceProbe.ts", import.meta.url))

/**
 * Tries the devices in one child process of this Node (with this process's flags, so loaders and hooks apply),
 * reading its JSON lines. A child that dies or outlives the timeout fails the devices it did not answer for.
 */
export const probeDevices = (
  devices: ReadonlyArray<Device>,
  options: ProbeOptions = {}
): Effect.Effect<ReadonlyArray<DeviceCheck>> =>
  Effect.callback<ReadonlyArray<DeviceCheck>>((resume) => {
    const timeoutMs = options.timeoutMs ?? defaultProbeTimeoutMs
    const child = spawn(process.execPath, [...process.execArgv, probeScript, ...devices], {
      stdio: ["ignore", "pipe", "pipe"],
      env: process.env
    })
    let stdout = ""
    let stderr = ""
    let timedOut = false
    let finished = false
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr = (stderr + chunk).slice(-16_384)))
    const timer = setTimeout(() => {
      timedOut = true
      child.kill("SIGKILL")
    }, timeoutMs)
    const finish = (ended: string) => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      const answers = new Map<string, { ok: boolean; error?: string; stepMs?: number }>()
      for (const line of stdout.split("\n")) {
        try {
          const answer = JSON.parse(line) as { device: string; ok: boolean; error?: string; stepMs?: number }
          answers.set(answer.device, answer)
        } catch {
          // not one of the probe's lines
        }
      }
      resume(Effect.succeed(devices.map((device): DeviceCheck => {
        const answer = answers.get(device)
        if (answer === undefined) {
          const why = timedOut ? `did not initialise within ${timeoutMs / 1000} s (a hung driver?)` : `the probe process ${ended}`
          const tail = stderr.trim().split("\n").at(-1)?.slice(0, 200)
          return { device, installed: true, initialises: false, reason: tail === undefined || tail === "" ? why : `${why}: ${tail}` }
        }
        return answer.ok
          ? { device, installed: true, initialises: true, stepMs: answer.stepMs }
          : { device, installed: true, initialises: false, reason: explain(answer.error ?? "failed", stderr) }
      })))
    }
    child.on("error", (e) => finish(`could not start (${e.message})`))
    child.on("exit", (code, signal) => finish(signal === null ? `exited with code ${code}` : `was killed by ${signal}`))
    return Effect.sync(() => {
      clearTimeout(timer)
      child.kill("SIGKILL")
    })
  })

const hints: Record<Exclude<Device, "cpu">, string> = {
  cuda: "install onnxruntime-node's CUDA 12 provider (README \"GPUs\": ONNXRUNTIME_NODE_INSTALL=cuda12 node " +
    "node_modules/onnxruntime-node/script/install.js) with CUDA 12 and cuDNN 9, check with `r3mes-miner devices`, " +
    "or set --device auto or cpu",
  webgpu: "install the Vulkan loader and your GPU's Vulkan driver (Debian: apt-get install libvulkan1 " +
    "mesa-vulkan-drivers, or the vendor's), check with `r3mes-miner devices`, or set --device auto or cpu"
}

const describe = (c: DeviceCheck): string =>
  !c.installed
    ? `${c.device}: ${c.reason}`
    : c.initialises
    ? `${c.device}: ${c.stepMs?.toFixed(1)} ms/step`
    : `${c.device} did not initialise: ${c.reason}`

/** `auto`'s pick from the checks of cpu and the GPU devices (see the module comment). */
export const pickAuto = (checks: ReadonlyArray<DeviceCheck>): DeviceSelection => {
  const of = (device: Device) => checks.find((c) => c.device === device)
  const cpu = of("cpu")
  const cuda = of("cuda")
  const webgpu = of("webgpu")
  const others = (chosen: Device) => checks.filter((c) => c.device !== chosen && c.device !== "cpu").map(describe).join("; ")
  const selection = (device: Device, why: string): DeviceSelection => ({ requested: "auto", device, reason: why, checks })
  if (cuda?.initialises === true) return selection("cuda", "cuda initialises")
  if (webgpu?.initialises === true) {
    if (cpu?.initialises !== true || (webgpu.stepMs ?? Infinity) <= (cpu.stepMs ?? Infinity)) {
      return selection("webgpu", `webgpu steps in ${webgpu.stepMs?.toFixed(1)} ms, the CPU in ${cpu?.stepMs?.toFixed(1) ?? "-"} ms; ${others("webgpu")}`)
    }
    return selection(
      "cpu",
      `webgpu initialises but steps slower than the CPU (${webgpu.stepMs?.toFixed(1)} vs ` +
        `${cpu.stepMs?.toFixed(1)} ms; a software Vulkan driver?)${cuda === undefined ? "" : `; ${describe(cuda)}`}`
    )
  }
  return selection("cpu", `no GPU device trains here: ${others("cpu")}`)
}

/**
 * The device for `requested` from the checks of the devices it involves (`auto`: cpu and the GPU devices; an explicit
 * device: itself). An explicit GPU device that is not installed or does not initialise is a ResourceError naming why
 * and how to fix it.
 */
export const decideDevice = (
  requested: ExecutionProviderChoice,
  checks: ReadonlyArray<DeviceCheck>
): DeviceSelection | ResourceError => {
  if (requested === "cpu") return { requested, device: "cpu", reason: "as configured", checks }
  if (requested === "auto") return pickAuto(checks)
  const check = checks.find((c) => c.device === requested)
  if (check?.initialises !== true) {
    return new ResourceError({
      message: `--device ${requested} (R3MES_DEVICE) cannot train: ${check?.reason ?? "no answer from the probe"}`,
      resource: requested,
      hint: hints[requested]
    })
  }
  return { requested, device: requested, reason: `as configured (${check.stepMs?.toFixed(1)} ms/step)`, checks }
}

/**
 * Looks for the devices and tries those installed, in one child process (none when nothing is installed); `also`
 * is tried with them when at least one is (auto's CPU, to compare with).
 */
const checkOnly = (wanted: ReadonlyArray<Device>, options: ProbeOptions, also: ReadonlyArray<Device> = []) =>
  Effect.gen(function*() {
    const found = wanted.map((device) => ({ device, ...installation(device) }))
    const installed = found.filter((f) => f.installed).map((f) => f.device)
    const tried = installed.length === 0 ? [] : yield* probeDevices([...also, ...installed], options)
    return [...tried.filter((t) => also.includes(t.device)), ...found.map((f): DeviceCheck =>
      tried.find((t) => t.device === f.device) ?? { device: f.device, installed: false, initialises: false, reason: f.reason }
    )]
  })

/** Every device: installed or why not, and for those installed whether they initialise and how fast they step. */
export const checkDevices = (options: ProbeOptions = {}): Effect.Effect<ReadonlyArray<DeviceCheck>> =>
  checkOnly(["cpu", "cuda", "webgpu"], options)

/**
 * The device for `requested`, after trying what it needs: nothing for `cpu` (part of every build); for `auto` the
 * installed GPU devices and, when there is one, the CPU to compare with (a machine without a GPU stack starts no
 * child process); an explicit GPU device alone.
 */
export const selectDevice = (
  requested: ExecutionProviderChoice,
  options: ProbeOptions = {}
): Effect.Effect<DeviceSelection, ResourceError> =>
  Effect.gen(function*() {
    const checks = requested === "cpu"
      ? []
      : yield* checkOnly(requested === "auto" ? ["cuda", "webgpu"] : [requested], options, requested === "auto" ? ["cpu"] : [])
    const decided = decideDevice(requested, checks)
    return decided instanceof ResourceError ? yield* decided : decided
  })

const selectionKey = (requested: ExecutionProviderChoice): string =>
  `${requested}|${process.env["VK_DRIVER_FILES"] ?? process.env["VK_ICD_FILENAMES"] ?? ""}`

/** One selection per request and Vulkan override for the process; a failed one is kept too (it fails the same). */
const selections = new Map<string, Promise<Exit.Exit<DeviceSelection, ResourceError>>>()
const reported = new Set<string>()

/**
 * `selectDevice`, tried once per process: the miner's trainer and the embedded verifier's share it. The choice is
 * logged once — a warning when an installed GPU device did not initialise (the fallback's reason), else info.
 */
export const sharedDeviceSelection = (
  requested: ExecutionProviderChoice,
  options: { readonly log?: boolean } = {}
): Effect.Effect<DeviceSelection, ResourceError> =>
  Effect.suspend(() => {
    const key = selectionKey(requested)
    let pending = selections.get(key)
    if (pending === undefined) {
      pending = Effect.runPromiseExit(selectDevice(requested))
      selections.set(key, pending)
    }
    const answer = pending
    return Effect.flatten(Effect.promise(() => answer)).pipe(
      Effect.tap((selection) => {
        if (options.log === false || reported.has(key)) return Effect.void
        reported.add(key)
        const fellBack = selection.checks.some((c) => c.device !== selection.device && c.device !== "cpu" && c.installed && !c.initialises)
        const message = `training device: ${selection.device} (${selection.requested}: ${selection.reason})`
        return fellBack ? Effect.logWarning(message) : Effect.logInfo(message)
      })
    )
  })

export const isDevice = (name: string): name is Device => (devices as ReadonlyArray<string>).includes(name)

/**
 * Takes a selection made elsewhere (a worker thread's parent) as this process's answer for its device, so the
 * device is not tried again.
 */
export const rememberDeviceSelection = (selection: DeviceSelection): void => {
  const key = selectionKey(selection.device)
  selections.set(key, Promise.resolve(Exit.succeed(selection)))
  reported.add(key)
}

/** Whether `device` trains in this process (tried once, like `sharedDeviceSelection`, without logging a choice). */
export const deviceTrains = (device: Device): Effect.Effect<boolean> =>
  sharedDeviceSelection(device, { log: false }).pipe(Effect.match({ onFailure: () => false, onSuccess: () => true }))

/** /stats's `device`: what was asked for, what training runs on, and why. */
export const deviceSection = (selection: DeviceSelection) => ({
  requested: selection.requested,
  ep: selection.device,
  reason: selection.reason
})
