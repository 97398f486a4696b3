import { defineConfig } from "vitest/config"

/**
 * Tests in tiers a newcomer can run alone (`npm run test:<tier>`); `npm test` runs them all, as CI does.
 * - unit: the core and the domain on the in-memory layers of src/testing, pure functions; seconds.
 * - integration: each adapter against its real component (anvil, Helia, a Kubo-RPC daemon, ONNX Runtime, SQLite).
 * - e2e: the CLI as a child process, on the embedded devnet and IPFS node, with faults from outside.
 * - chaos: the miner SIGKILLed at every crash point, for minutes.
 */
const tier = (name: string, options: { readonly isolate?: boolean } = {}) => ({
  extends: true,
  test: { name, include: [`test/${name}/**/*.test.ts`], ...options }
})

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Unit files share their workers' module cache: they hold no process-wide state (each miner has its own metric
    // registry, each test its own layers), and loading effect, viem and the adapters once per worker instead of
    // once per file halves the tier's time.
    projects: [tier("unit", { isolate: false }), tier("integration"), tier("e2e"), tier("chaos")]
  }
})
