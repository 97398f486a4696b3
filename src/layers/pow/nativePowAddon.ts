import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"

/**
 * The native proof-of-work addon (native/pow/r3mes_pow.c), built by `scripts/build-native.ts` at install. It is
 * optional: a machine without a compiler installs without it and the solver hashes in TypeScript.
 */
export interface NativePowAddon {
  /**
   * The smallest nonce in [from, to] (inclusive, 0 ≤ from ≤ to < 2^64) whose pow hash has at least `difficulty`
   * (0..64) leading zero bits, or -1n. Synchronous; `engine` forces one implementation (throws when unavailable).
   */
  readonly search: (
    challenge: Uint8Array,
    from: bigint,
    to: bigint,
    difficulty: number,
    engine?: NativePowEngine | "portable-baseline"
  ) => bigint
  /** Whether the CPU has the SHA extensions (CPUID, at load). */
  readonly shaNi: boolean
  /** The engine `search` uses by default. */
  readonly engine: NativePowEngine
}

/** "sha-ni": the x86 SHA extensions; "portable": plain C (SIMD through the compiler's vector types). */
export type NativePowEngine = "sha-ni" | "portable"

export type NativePowLoad =
  | { readonly _tag: "Loaded"; readonly addon: NativePowAddon; readonly path: string }
  | { readonly _tag: "Unavailable"; readonly reason: string }

/** Where node-gyp leaves the addon (`native/pow/build/Release`), from the package root. */
export const nativePowAddonPath: string = fileURLToPath(
  new URL("../../../native/pow/build/Release/r3mes_pow.node", import.meta.url)
)

const loaded = new Map<string, NativePowLoad>()

/**
 * Loads the addon once per thread (each worker thread loads its own instance: Node-API addons are per-environment).
 * Never throws: a missing or unloadable addon is `Unavailable` with the reason.
 */
export const loadNativePowAddon = (path: string = nativePowAddonPath): NativePowLoad => {
  let result = loaded.get(path)
  if (result !== undefined) return result
  if (!existsSync(path)) {
    result = { _tag: "Unavailable", reason: `the native addon is not built (${path} is missing)` }
  } else {
    try {
      const addon = createRequire(import.meta.url)(path) as NativePowAddon
      if (typeof addon.search !== "function") throw new Error("it exports no search function")
      result = { _tag: "Loaded", addon, path }
    } catch (cause) {
      const detail = cause instanceof Error ? cause.message : String(cause)
      result = { _tag: "Unavailable", reason: `the native addon at ${path} does not load: ${detail}` }
    }
  }
  loaded.set(path, result)
  return result
}
