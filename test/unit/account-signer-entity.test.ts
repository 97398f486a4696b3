import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { Entity, ShardingConfig } from "effect/cluster"
import { RetryableError } from "../../src/domain/errors.ts"
import { SignedTransaction } from "../../src/domain/mining.ts"
import { AccountSigner, accountSignerId, accountSignerLayer, accountSigningThrough } from "../../src/layers/fleet/accountSigner.ts"
import type { AccountSigning, CallToSign } from "../../src/services/AccountSigning.ts"

/**
 * The account's signer entity (issue 18) as the cluster delivers to it, without a cluster (`Entity.makeTestClient`):
 * each message reaches this runner's signing side with its arguments intact, a typed failure comes back typed, and an
 * id of another account is refused with the fix.
 */

const account = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
const registry = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
const id = accountSignerId(account, registry)
const signed = new SignedTransaction({ hash: `0x${"ab".repeat(32)}`, raw: "0x02f8", nonce: 7 })

const recording = () => {
  const calls: Array<unknown> = []
  const signing: AccountSigning = {
    lend: (call: CallToSign) => Effect.sync(() => calls.push(["lend", call])).pipe(Effect.as({ signed, reservedBefore: false })),
    release: (s) => Effect.sync(() => calls.push(["release", s.nonce])).pipe(Effect.as("undone" as const)),
    refused: (s) => Effect.sync(() => void calls.push(["refused", s.nonce])),
    fillGapBelow: (nonce) =>
      nonce > 100 ? Effect.fail(new RetryableError({ message: "node unreachable" })) : Effect.sync(() => void calls.push(["fill", nonce]))
  }
  return { calls, signing }
}

const clientOf = (signing: AccountSigning) =>
  Entity.makeTestClient(AccountSigner, accountSignerLayer({ id, signer: signing })).pipe(
    Effect.provide(ShardingConfig.layer())
  )

describe("the account's signer entity", () => {
  it.effect("serves every message with this runner's signing side, arguments intact, failures typed", () =>
    Effect.gen(function*() {
      const { calls, signing } = recording()
      const client = yield* (yield* clientOf(signing))(id)
      const lent = yield* client.Lend({ functionName: "submitGradient", data: "0xabcdef", gas: "123456789012", idempotent: true })
      assert.deepStrictEqual([lent.signed.hash, lent.signed.nonce, lent.reservedBefore], [signed.hash, 7, false])
      assert.strictEqual(yield* client.Release({ signed }), "undone")
      yield* client.Refused({ signed })
      yield* client.FillGapBelow({ nonce: 9 })
      const failed = yield* Effect.flip(client.FillGapBelow({ nonce: 101 }))
      assert.strictEqual(failed._tag, "RetryableError")
      assert.deepStrictEqual(calls, [
        ["lend", { functionName: "submitGradient", data: "0xabcdef", gas: 123456789012n, idempotent: true }],
        ["release", 7],
        ["refused", 7],
        ["fill", 9]
      ])
    }).pipe(Effect.scoped))

  it.effect("refuses to sign for another account: a runner of the fleet started with another key", () =>
    Effect.gen(function*() {
      const { calls, signing } = recording()
      const client = yield* (yield* clientOf(signing))(accountSignerId(`0x${"11".repeat(20)}`, registry))
      const refused = yield* Effect.flip(client.Lend({ functionName: "claimChunk", data: "0x01", idempotent: false }))
      assert.strictEqual(refused._tag, "ValidationError")
      assert.include(refused.message, `this runner signs for ${id}`)
      assert.include(refused.hint ?? "", "same R3MES_PRIVATE_KEY")
      assert.deepStrictEqual(calls, [])
    }).pipe(Effect.scoped))

  it.live("an answer that never comes ends at the timeout as a retryable failure, even inside the writer's uninterruptible step", () =>
    Effect.gen(function*() {
      // A lend whose message was lost while the entity moved between runners is awaited inside the writer's
      // uninterruptible lend-and-intent step: it must end at the timeout, as a lost answer.
      const { signing } = recording()
      const silent = { ...signing, lend: () => Effect.never }
      const client = yield* (yield* clientOf(silent))(id)
      const remote = accountSigningThrough(client, Duration.millis(200))
      const failed = yield* Effect.flip(Effect.uninterruptible(remote.lend({ functionName: "claimChunk", data: "0x01", gas: undefined, idempotent: false })))
      assert.strictEqual(failed._tag, "RetryableError")
      assert.match(failed.message, /^the account.s signer did not answer a claimChunk within 200/)
      // A typed failure of the signer comes back as it is.
      const typed = yield* Effect.flip(remote.fillGapBelow(101))
      assert.deepStrictEqual([typed._tag, typed.message], ["RetryableError", "node unreachable"])
    }).pipe(Effect.scoped, Effect.timeout("10 seconds")))

  it("names the signer by account and registry, whatever their case", () => {
    assert.strictEqual(accountSignerId(account, registry), accountSignerId(account.toLowerCase(), registry.toUpperCase().replace("0X", "0x")))
    assert.strictEqual(id, `${account.toLowerCase()}@${registry.toLowerCase()}`)
  })
})
