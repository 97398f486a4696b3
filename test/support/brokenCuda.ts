import { cpSync, mkdirSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { basename, dirname, join } from "node:path"
import { pathToFileURL } from "node:url"

/**
 * onnxruntime-node as it is after a CUDA install gone wrong: a copy of the installed package (its JS and this
 * platform's native libraries) whose directory holds CUDA provider libraries that are not libraries (a truncated
 * download). Returns NODE_OPTIONS that make a Node process — and the child processes it starts with this environment —
 * load `onnxruntime-node` from the copy, through a module resolution hook. The real package is left untouched.
 */
export const brokenCudaRuntime = (dir: string): { readonly nodeOptions: string; readonly binaryDir: string } => {
  const require = createRequire(import.meta.url)
  const packageDir = dirname(dirname(require.resolve("onnxruntime-node")))
  let commonDir = dirname(createRequire(join(packageDir, "package.json")).resolve("onnxruntime-common"))
  while (basename(commonDir) !== "onnxruntime-common") commonDir = dirname(commonDir)
  const copy = join(dir, "node_modules", "onnxruntime-node")
  const binaryDir = join(copy, "bin", "napi-v6", process.platform, process.arch)
  mkdirSync(binaryDir, { recursive: true })
  cpSync(join(packageDir, "package.json"), join(copy, "package.json"))
  cpSync(join(packageDir, "dist"), join(copy, "dist"), { recursive: true })
  cpSync(join(packageDir, "bin", "napi-v6", process.platform, process.arch), binaryDir, { recursive: true })
  cpSync(commonDir, join(dir, "node_modules", "onnxruntime-common"), { recursive: true })
  for (const library of ["libonnxruntime_providers_cuda.so", "libonnxruntime_providers_shared.so"]) {
    writeFileSync(join(binaryDir, library), "this is not an ELF file: the download was cut short\n")
  }
  const entry = pathToFileURL(join(copy, "dist", "index.js")).href
  const hooks = join(dir, "use-copied-onnxruntime.mjs")
  writeFileSync(
    hooks,
    `import { registerHooks } from "node:module"\n` +
      `registerHooks({ resolve: (specifier, context, next) => ` +
      `specifier === "onnxruntime-node" ? { url: ${JSON.stringify(entry)}, format: "commonjs", shortCircuit: true } : next(specifier, context) })\n`
  )
  return { nodeOptions: `--import ${pathToFileURL(hooks).href}`, binaryDir }
}
