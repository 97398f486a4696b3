import { hostname } from "node:os"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Option, Redacted } from "effect"
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

  it("R3MES_FLEET_ADDRESS puts the runner on the cluster; R3MES_FLEET_SIGNERS says whether it may host the signer", () => {
    const fleet = (overrides: Parameters<typeof testMinerConfig>[0]) =>
      fleetOf(testMinerConfig({ fleetDatabaseUrl: Option.some(url), fleetRunner: Option.some("gpu-1"), ...overrides }))
    assert.isUndefined(fleet({})!.cluster, "no address: the runner signs for itself through the ledger")
    const onCluster = fleet({ fleetAddress: Option.some("10.0.0.6:34431"), fleetLease: Duration.seconds(12) })!.cluster!
    assert.deepStrictEqual([onCluster.address, onCluster.maySign, Duration.toSeconds(onCluster.lease)], ["10.0.0.6:34431", true, 12])
    assert.isTrue(fleet({ fleetAddress: Option.some("a:1"), fleetSigners: ["gpu-0", "gpu-1"] })!.cluster!.maySign)
    assert.isFalse(fleet({ fleetAddress: Option.some("a:1"), fleetSigners: ["gpu-0"] })!.cluster!.maySign)
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
