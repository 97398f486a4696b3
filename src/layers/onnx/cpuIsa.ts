import { readFileSync } from "node:fs"

/**
 * The CPU kernel class ONNX Runtime's CPU provider dispatches to (MLAS picks its GEMM and activation kernels by
 * instruction set, so two machines of different classes may differ in the last bits). Part of the determinism
 * profile (DESIGN.md "Verification").
 */
export type CpuIsa = "avx512" | "avx2" | "sse" | "neon" | "generic"

/** Classifies from the architecture and, on x64, the `flags` line of /proc/cpuinfo (absent elsewhere: "generic"). */
export const classifyIsa = (arch: string, cpuinfo: string | undefined): CpuIsa => {
  if (arch === "arm64") return "neon"
  if (arch !== "x64" || cpuinfo === undefined) return "generic"
  const flagsLine = cpuinfo.split("\n").find((line) => /^flags\s*:/.test(line))
  if (flagsLine === undefined) return "generic"
  const flags = new Set(flagsLine.slice(flagsLine.indexOf(":") + 1).trim().split(/\s+/))
  if (flags.has("avx512f")) return "avx512"
  if (flags.has("avx2")) return "avx2"
  if (flags.has("sse4_1") || flags.has("sse2")) return "sse"
  return "generic"
}

const readCpuinfo = (): string | undefined => {
  try {
    return readFileSync("/proc/cpuinfo", "utf8")
  } catch {
    return undefined
  }
}

let detected: CpuIsa | undefined

/** This machine's kernel class (read once: it does not change while the process runs). */
export const hostIsa = (): CpuIsa => (detected ??= classifyIsa(process.arch, process.arch === "x64" ? readCpuinfo() : undefined))
