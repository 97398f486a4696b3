import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { Effect } from "effect"
import { ResourceError } from "../../../domain/errors.ts"

/** Where the anvil binary comes from: `@foundry-rs/anvil`'s platform package for this machine. */

const platformNames: Record<string, string> = { linux: "linux", darwin: "darwin", win32: "win32" }
const archNames: Record<string, string> = { x64: "amd64", arm64: "arm64" }

/** The npm package that ships anvil for this machine, as `@foundry-rs/anvil` names its optional dependencies. */
export const anvilPlatformPackage = (
  platform: string = process.platform,
  arch: string = process.arch
): string | undefined => {
  const os = platformNames[platform]
  const cpu = archNames[arch]
  return os === undefined || cpu === undefined ? undefined : `@foundry-rs/anvil-${os}-${cpu}`
}

/** The path of the anvil binary from this platform's npm package. */
export const resolveAnvilBinary: Effect.Effect<string, ResourceError> = Effect.suspend(() => {
  const pkg = anvilPlatformPackage()
  const hint = "install Foundry's anvil and pass its path as the anvil binary, or run on linux/darwin (x64, arm64) " +
    "or win32 (x64) where npm installs it"
  if (pkg === undefined) {
    return Effect.fail(
      new ResourceError({
        message: `no anvil npm package exists for ${process.platform}-${process.arch}`,
        resource: "anvil binary",
        hint
      })
    )
  }
  return Effect.try({
    try: () => {
      const manifest = createRequire(import.meta.url).resolve(`${pkg}/package.json`)
      return join(dirname(manifest), "bin", process.platform === "win32" ? "anvil.exe" : "anvil")
    },
    catch: (cause) =>
      new ResourceError({
        message: `${pkg} is not installed: the devnet needs its anvil binary`,
        resource: "anvil binary",
        cause: String(cause),
        hint: `run \`npm install\` (npm skips optional dependencies with --omit=optional), or ${hint}`
      })
  })
})
