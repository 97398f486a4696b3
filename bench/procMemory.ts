import { readFileSync, writeFileSync } from "node:fs"

/** This process's resident set (`VmRSS`) or its peak since the last reset (`VmHWM`), in bytes, from /proc. */
export const residentBytes = (field: "VmRSS" | "VmHWM"): number => {
  const match = readFileSync("/proc/self/status", "utf8").match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"))
  if (match === null) throw new Error(`no ${field} in /proc/self/status`)
  return Number(match[1]) * 1024
}

/** Resets the kernel's peak-RSS mark to the current resident set; false where that is not allowed. */
export const resetPeak = (): boolean => {
  try {
    writeFileSync("/proc/self/clear_refs", "5")
    return true
  } catch {
    return false
  }
}
