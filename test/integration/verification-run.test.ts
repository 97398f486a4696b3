import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Cheater } from "../../src/testing/Cheaters.ts"
import { type JudgedSubmission, tally, verificationRun } from "../support/verificationRun.ts"

/** Everything a failure needs to be reported precisely: kind, verdict got, reason, distances, losses. */
const describeSubmission = (s: JudgedSubmission) =>
  `${s.kind} (${s.miner}) round ${s.round_id} chunk ${s.chunk_id}: expected ${s.expected}, got ${s.verdict ?? s.verdict_code ?? "no verdict"}` +
  ` — ${s.reason ?? "no report"}; distances ${JSON.stringify(s.distances)}; recomputed ${JSON.stringify(s.recomputed)}`

describe("verification run: honest and dishonest miners against one devnet, one verifier", () => {
  it.live("every honest submission accepted_exact, every cheater's rejected with its kind's code", () =>
    Effect.gen(function*() {
      const result = yield* verificationRun({ honestMiners: 1, honestChunks: 2, cheaterChunks: 1 })
      const context = `warnings: ${result.warnings.join("\n")}`
      assert.deepStrictEqual(result.uncommitted, [], `every miner's transactions commit; ${context}`)
      assert.strictEqual(result.submissions.length, 2 + Cheater.kinds.length, context)
      assert.strictEqual(result.verifier.submissions, result.submissions.length, "the verifier saw every submission")

      const wrong = result.submissions.filter((s) => s.verdict !== s.expected)
      assert.deepStrictEqual(wrong.map(describeSubmission), [], "every verdict is its kind's")

      const t = tally(result)
      assert.strictEqual(t.honest, 2)
      assert.strictEqual(t.honest_accepted, 2, "no false rejection")
      assert.strictEqual(t.dishonest, Cheater.kinds.length)
      assert.strictEqual(t.dishonest_rejected, Cheater.kinds.length)
      assert.deepStrictEqual(Object.keys(t.by_kind).sort(), ["honest", ...Cheater.kinds].sort())
      // Every honest verdict came from a recomputation, and the report explains it.
      assert.strictEqual(result.recompute_ms.length, result.submissions.length)
      for (const s of result.submissions) assert.isNotNull(s.reason, describeSubmission(s))
    }).pipe(Effect.scoped), 240_000)
})
