import { spawnSync } from "node:child_process"
import { accessSync, constants, existsSync, mkdirSync } from "node:fs"
import { tmpdir, userInfo } from "node:os"
import { join } from "node:path"
import * as ort from "onnxruntime-node"

/**
 * Where onnxruntime-node's WebGPU provider can run on a machine without a GPU (STACK-NOTES.md "GPU code paths without
 * a GPU"): Dawn over Vulkan, with SwiftShader's Vulkan driver from Debian's Chromium (package chromium-common) and the
 * Vulkan loader (libvulkan1). Dawn also wants a writable XDG_RUNTIME_DIR. Used by the WebGPU integration test and the
 * benches, which skip (saying why) where this returns a reason instead of an environment.
 */

export interface WebgpuEnvironment {
  /** The Vulkan driver manifest (VK_ICD_FILENAMES). */
  readonly icd: string
  /** A writable XDG_RUNTIME_DIR. */
  readonly runtimeDir: string
}

export type WebgpuAvailability = WebgpuEnvironment | { readonly skip: string }

const install = "install the Vulkan loader and SwiftShader's driver with `apt-get install -y libvulkan1 chromium` (as root; .ci/run does)"

/** Where Debian's chromium-common puts SwiftShader's manifest (the dpkg lookup below finds it wherever it moved). */
const knownIcd = "/usr/lib/chromium/vk_swiftshader_icd.json"

const loaderDirs = [
  "/lib/x86_64-linux-gnu",
  "/usr/lib/x86_64-linux-gnu",
  "/lib/aarch64-linux-gnu",
  "/usr/lib/aarch64-linux-gnu",
  "/usr/lib64",
  "/lib64",
  "/usr/lib",
  "/usr/local/lib"
]

const run = (command: string, args: ReadonlyArray<string>): string | undefined => {
  const out = spawnSync(command, args, { encoding: "utf8" })
  return out.status === 0 ? out.stdout : undefined
}

/** The dynamic linker's cache first (ldconfig lives in /sbin, off a user's PATH on Debian), then the usual dirs. */
const vulkanLoaderFound = (): boolean => {
  const cache = run("ldconfig", ["-p"]) ?? run("/sbin/ldconfig", ["-p"])
  if (cache !== undefined && /\blibvulkan\.so\.1\b/.test(cache)) return true
  return loaderDirs.some((dir) => existsSync(join(dir, "libvulkan.so.1")))
}

/** VK_ICD_FILENAMES when every file it lists exists, else SwiftShader's manifest from any installed package. */
const findIcd = (): { readonly icd?: string; readonly note?: string } => {
  const configured = process.env["VK_ICD_FILENAMES"]
  let note: string | undefined
  if (configured !== undefined && configured !== "") {
    const files = configured.split(":").filter((f) => f !== "")
    if (files.length > 0 && files.every((f) => existsSync(f))) return { icd: configured }
    note = `VK_ICD_FILENAMES=${configured} names a file that does not exist`
  }
  const owned = run("dpkg", ["-S", "vk_swiftshader_icd.json"])
    ?.split("\n")
    .map((line) => line.slice(line.indexOf(":") + 1).trim())
    .find((file) => file.endsWith("/vk_swiftshader_icd.json") && existsSync(file))
  if (owned !== undefined) return { icd: owned }
  if (existsSync(knownIcd)) return { icd: knownIcd }
  return note === undefined ? {} : { note }
}

const writable = (dir: string): boolean => {
  try {
    accessSync(dir, constants.W_OK)
    return true
  } catch {
    return false
  }
}

/** XDG_RUNTIME_DIR when it is writable, else a per-user directory under the OS tmp dir (0700, as XDG asks). */
const runtimeDirectory = (): string | undefined => {
  const configured = process.env["XDG_RUNTIME_DIR"]
  if (configured !== undefined && configured !== "" && writable(configured)) return configured
  const own = join(tmpdir(), `r3mes-xdg-runtime-${userInfo().uid}`)
  try {
    mkdirSync(own, { recursive: true, mode: 0o700 })
  } catch {
    return undefined
  }
  return writable(own) ? own : undefined
}

/** What the WebGPU provider needs on this machine, or why it cannot run here and how to fix that. */
export const webgpuEnvironment = (): WebgpuAvailability => {
  if (!ort.listSupportedBackends().some((b) => b.name === "webgpu")) {
    return { skip: `onnxruntime-node ${ort.env.versions.node} on ${process.platform}-${process.arch} has no WebGPU provider` }
  }
  if (process.platform !== "linux") {
    return { skip: `only the Linux set-up (SwiftShader over Vulkan) is known, and this is ${process.platform}` }
  }
  if (!vulkanLoaderFound()) return { skip: `no Vulkan loader (libvulkan.so.1); ${install}` }
  const { icd, note } = findIcd()
  if (icd === undefined) {
    return { skip: `${note ?? "no VK_ICD_FILENAMES and no SwiftShader Vulkan driver (vk_swiftshader_icd.json)"}; ${install}, or point VK_ICD_FILENAMES at a Vulkan driver's manifest` }
  }
  const runtimeDir = runtimeDirectory()
  if (runtimeDir === undefined) {
    return { skip: `no writable XDG_RUNTIME_DIR and none could be made under ${tmpdir()}; set XDG_RUNTIME_DIR to a writable directory` }
  }
  return { icd, runtimeDir }
}

export const isWebgpuEnvironment = (a: WebgpuAvailability): a is WebgpuEnvironment => !("skip" in a)

/**
 * Sets VK_ICD_FILENAMES and XDG_RUNTIME_DIR in process.env. Node writes them through to the native environment, so
 * ONNX Runtime sessions created afterwards (in this process or a child that inherits it) find the driver.
 */
export const applyWebgpuEnvironment = (env: WebgpuEnvironment): void => {
  process.env["VK_ICD_FILENAMES"] = env.icd
  process.env["XDG_RUNTIME_DIR"] = env.runtimeDir
}

/** `webgpuEnvironment()`, applied to process.env when available. */
export const useWebgpu = (): WebgpuAvailability => {
  const found = webgpuEnvironment()
  if (isWebgpuEnvironment(found)) applyWebgpuEnvironment(found)
  return found
}
