import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { parseCid, readLimited, showCid } from "../../src/layers/ipfs/content.ts"

async function* stream(...parts: Array<Array<number>>) {
  for (const part of parts) yield Uint8Array.from(part)
}

describe("readLimited", () => {
  it("concatenates up to the limit, inclusive", async () => {
    assert.deepStrictEqual(await readLimited(stream([1, 2], [3]), 3), { bytes: Uint8Array.from([1, 2, 3]) })
    assert.deepStrictEqual(await readLimited(stream([1, 2], [3]), 3, 3), { bytes: Uint8Array.from([1, 2, 3]) })
    assert.deepStrictEqual(await readLimited(stream(), 0), { bytes: new Uint8Array(0) })
  })

  it("stops at the first chunk past the limit, without reading the rest", async () => {
    let pulled = 0
    async function* endless() {
      for (;;) {
        pulled++
        yield new Uint8Array(10)
      }
    }
    assert.deepStrictEqual(await readLimited(endless(), 25), { over: 30 })
    assert.strictEqual(pulled, 3)
  })

  it("a declared size that lies is still bounded by the limit", async () => {
    // More than declared, within the limit: all of it.
    assert.deepStrictEqual(await readLimited(stream([1, 2], [3, 4]), 10, 2), { bytes: Uint8Array.from([1, 2, 3, 4]) })
    // More than declared, past the limit.
    assert.deepStrictEqual(await readLimited(stream([1, 2], [3, 4]), 3, 2), { over: 4 })
    // Less than declared.
    assert.deepStrictEqual(await readLimited(stream([1]), 10, 4), { bytes: Uint8Array.from([1]) })
  })
})

describe("CIDs", () => {
  it("parseCid accepts v0 and v1, refuses anything else with a ValidationError on the cid field", () => {
    assert.strictEqual(Effect.runSync(parseCid(" QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o\n")).version, 0)
    assert.strictEqual(
      Effect.runSync(parseCid("bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354")).version,
      1
    )
    const exit = Effect.runSyncExit(parseCid("Qm123"))
    assert.isTrue(Exit.isFailure(exit))
    const error = Effect.runSync(Effect.flip(parseCid("Qm123")))
    assert.strictEqual(error._tag, "ValidationError")
    assert.strictEqual(error.field, "cid")
  })

  it("showCid prints dag-pb sha2-256 CIDs as v0 (how Kubo and the chain show them), others unchanged", () => {
    const v1 = Effect.runSync(parseCid("bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"))
    assert.strictEqual(showCid(v1), v1.toV0().toString())
    const raw = Effect.runSync(parseCid("bafkreicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"))
    assert.strictEqual(showCid(raw), "bafkreicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby")
  })
})
