import { describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { holdRunnerName } from "../../src/layers/fleet/runnerName.ts"
import { PgFleetRoster } from "../../src/layers/fleet/PgFleetRoster.ts"
import { PgJournal } from "../../src/layers/journal/PgJournal.ts"
import { fleetRosterContract } from "../support/fleetRosterContract.ts"
import { findPostgres, serverForTests } from "../support/postgres.ts"

const postgres = findPostgres()
if ("skip" in postgres) console.warn(`PgFleetRoster tests skipped: ${postgres.skip}`)

describe.skipIf("skip" in postgres)("PgFleetRoster: the FleetRoster contract on Postgres", () => {
  const server = serverForTests(postgres)
  // it.live: the driver's pool and timeouts run on the real clock. A runner "running" is a process holding its name.
  fleetRosterContract(it.live, () =>
    Effect.gen(function*() {
      const url = yield* Effect.promise(() => server().freshDatabase())
      return {
        layer: Layer.mergeAll(
          PgFleetRoster.layer({ url, self: "runner-a" }),
          PgJournal.layer({ url, owner: "runner-a" })
        ),
        running: (runner: string) => holdRunnerName({ url, runner })
      }
    }))
})
