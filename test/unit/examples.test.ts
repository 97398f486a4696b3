import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { program } from "../../examples/custom-harness.ts"

describe("examples", () => {
  it.live("custom-harness composes the miner with swapped layers and mines through injected IPFS faults", () =>
    Effect.gen(function*() {
      const summary = yield* program
      assert.strictEqual(summary.transactions, 8)
      assert.strictEqual(summary.committed, 8)
      assert.isAbove(summary.records.reduce((n, r) => n + r.attempts.ipfs_upload, 0), 8)
    }))
})
