import { hostname } from "node:os"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import { checkFleetConfig, fleetOf } from "../../src/app/fleet.ts"
import { resolveFleetRunner } from "../../src/domain/minerSettings.ts"
import { testMinerConfig } from "../../src/testing/testConfig.ts"

const url = Redacted.make("postgres://r3mes:secret@10.0.0.5:5432/r3mes")

describe("fleet mode's settings (issue 18)", () => {
  it("no R3MES_FLEET_DATABASE_URL: a miner alone, whatever R3MES_FLEET_RUNNER says", () => {
    assert.isUndefined(fleetOf(testMinerConfig({ fleetRunner: Option.some("gpu-1") })))
  })

  it("a fleet runner is named by R3MES_FLEET_RUNNER, else after the machine", () => {
    assert.strictEqual(fleetOf(testMinerConfig({ fleetDatabaseUrl: Option.some(url), fleetRunner: Option.some("gpu-1") }))?.runner, "gpu-1")
    const byHost = fleetOf(testMinerConfig({ fleetDatabaseUrl: Option.some(url), fleetRunner: Option.none() }))
    assert.strictEqual(byHost!.runner, resolveFleetRunner(Option.none(), hostname()))
    assert.match(byHost!.runner, /^[A-Za-z0-9._:-]{1,64}$/)
  })

  it.effect("a fleet needs the shared chain and store: the embedded devnet or IPFS node is refused with the fix", () =>
    Effect.gen(function*() {
      const shared = { rpcUrl: Option.some("http://10.0.0.5:8545"), ipfsApi: "http://10.0.0.5:5001" }
      yield* checkFleetConfig(shared)
      const noChain = yield* Effect.flip(checkFleetConfig({ ...shared, rpcUrl: Option.none() }))
      assert.strictEqual(noChain.field, "rpcUrl")
      assert.include(noChain.hint ?? "", "R3MES_RPC_URL")
      const ownStore = yield* Effect.flip(checkFleetConfig({ ...shared, ipfsApi: "embedded" }))
      assert.strictEqual(ownStore.field, "ipfsApi")
      assert.include(ownStore.hint ?? "", "R3MES_IPFS_API")
    }))
})
