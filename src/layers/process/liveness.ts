import { readFileSync } from "node:fs"

/**
 * Whether a process with this pid exists. Signal 0 checks without signalling; EPERM means it exists but belongs to
 * another user, which still makes it a live holder of whatever it locked.
 */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * Whether a live `pid` was started with `argument` on its command line. Only Linux's /proc tells; elsewhere a live
 * pid is taken to match, which errs on the side of waiting for it.
 */
export const runsWithArgument = (pid: number, argument: string): boolean => {
  if (!isAlive(pid)) return false
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(argument)
  } catch {
    return process.platform !== "linux"
  }
}
