import { assert } from "@effect/vitest"
import { Effect, type Layer, type Scope } from "effect"
import type { MiningError } from "../../src/domain/errors.ts"
import type { TransactionState } from "../../src/domain/TransactionState.ts"
import { FleetRoster } from "../../src/services/FleetRoster.ts"
import { isTakenOver, Journal } from "../../src/services/Journal.ts"
import { contractEvent, contractRecord } from "./journalContract.ts"

/**
 * The FleetRoster port's contract, which PgFleetRoster and TestFleetRoster both pass: which runners are gone, and
 * what a takeover moves. `makeFleet` gives, each time, a fresh fleet journal and a roster of runner "runner-a" on
 * it, and `running(name)` keeps a process of that runner running for the scope.
 */

type Register<R> = <A, E>(name: string, self: () => Effect.Effect<A, E, R | Scope.Scope>, timeout?: number) => void

export interface ContractFleet {
  readonly layer: Layer.Layer<FleetRoster | Journal, MiningError>
  readonly running: (runner: string) => Effect.Effect<void, MiningError, Scope.Scope | FleetRoster | Journal>
}

/** A record of `owner` at `state`, saved as its owner would. */
const left = (owner: string, id: string, state: TransactionState, chunkId: number) =>
  Effect.gen(function*() {
    const record = { ...contractRecord(id, { chunkId, key: `k-${id}` }), owner, state }
    yield* (yield* Journal).save(record, contractEvent(record))
    return record
  })

export const fleetRosterContract = <R>(
  register: Register<R>,
  makeFleet: () => Effect.Effect<ContractFleet, MiningError, Scope.Scope>
) => {
  const inFleet = <A, E>(f: (fleet: ContractFleet) => Effect.Effect<A, E, Scope.Scope | FleetRoster | Journal>) =>
    Effect.gen(function*() {
      const fleet = yield* makeFleet()
      return yield* f(fleet).pipe(Effect.provide(fleet.layer))
    })

  register("gone: other runners with unfinished transactions and no process; not this one, nor the finished nor the running", () =>
    inFleet((fleet) =>
      Effect.gen(function*() {
        const roster = yield* FleetRoster
        assert.strictEqual(roster.self, "runner-a")
        assert.deepStrictEqual(yield* roster.gone, [])
        yield* left("runner-a", "tx-a", "training", 0)
        yield* left("runner-b", "tx-b", "ipfs_upload", 1)
        yield* left("runner-c", "tx-c", "committed", 2)
        yield* left("runner-d", "tx-d", "blockchain_submit", 3)
        yield* fleet.running("runner-d")
        assert.deepStrictEqual(yield* roster.gone, ["runner-b"])
      })
    ))

  register("takeOver: the runner's unfinished transactions become this runner's, with an event; its finished ones stay", () =>
    inFleet(() =>
      Effect.gen(function*() {
        const roster = yield* FleetRoster
        const journal = yield* Journal
        const pinned = yield* left("runner-b", "tx-b1", "ipfs_upload", 1)
        yield* left("runner-b", "tx-b2", "blockchain_submit", 2)
        yield* left("runner-b", "tx-b3", "rolled_back", 3)
        assert.sameMembers([...(yield* roster.takeOver("runner-b"))], ["tx-b1", "tx-b2"])
        assert.strictEqual((yield* journal.get("tx-b1"))?.owner, "runner-a")
        assert.deepStrictEqual(yield* journal.get("tx-b1"), { ...pinned, owner: "runner-a" })
        assert.strictEqual((yield* journal.get("tx-b3"))?.owner, "runner-b")
        assert.deepStrictEqual((yield* journal.events("tx-b1")).map((e) => e.event), ["state_changed", "taken_over"])
        // The old owner's copy is refused from now on.
        const stale = { ...pinned, state: "blockchain_submit" as const }
        assert.isTrue(isTakenOver(yield* Effect.flip(journal.save(stale, contractEvent(stale)))))
        assert.deepStrictEqual(yield* roster.gone, [])
        assert.deepStrictEqual(yield* roster.takeOver("runner-b"), [])
      })
    ))

  register("census: every runner with transactions, and this one, by name: whether it runs, its transactions by state", () =>
    inFleet((fleet) =>
      Effect.gen(function*() {
        const roster = yield* FleetRoster
        assert.deepStrictEqual(yield* roster.census, [{ runner: "runner-a", running: true, transactions: {} }])
        yield* left("runner-a", "tx-a1", "committed", 0)
        yield* left("runner-a", "tx-a2", "committed", 1)
        yield* left("runner-b", "tx-b", "training", 2)
        yield* left("runner-c", "tx-c", "failed", 3)
        yield* fleet.running("runner-c")
        assert.deepStrictEqual(yield* roster.census, [
          { runner: "runner-a", running: true, transactions: { committed: 2 } },
          { runner: "runner-b", running: false, transactions: { training: 1 } },
          { runner: "runner-c", running: true, transactions: { failed: 1 } }
        ])
      })
    ))

  register("takeOver of a running runner takes nothing; of this runner is refused", () =>
    inFleet((fleet) =>
      Effect.gen(function*() {
        const roster = yield* FleetRoster
        yield* left("runner-b", "tx-b", "training", 1)
        yield* fleet.running("runner-b")
        assert.deepStrictEqual(yield* roster.takeOver("runner-b"), [])
        assert.strictEqual((yield* (yield* Journal).get("tx-b"))?.owner, "runner-b")
        const refused = yield* Effect.flip(roster.takeOver("runner-a"))
        assert.strictEqual(refused._tag, "ValidationError")
      })
    ))
}
