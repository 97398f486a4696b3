import { existsSync, renameSync, rmSync } from "node:fs"
import { Console, Effect, Layer, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { classify } from "../domain/classify.ts"
import type { MinerConfig } from "../domain/MinerConfig.ts"
import { chainLayer, gradientStoreLayer, journalPath } from "../app/adapters.ts"
import { chainEndpoint } from "../app/chainEndpoint.ts"
import { acquireDataDirLock } from "../layers/journal/dataDirLock.ts"
import { SqliteJournal } from "../layers/journal/SqliteJournal.ts"
import { rebuildJournal, type RebuildSummary } from "../services/JournalRebuild.ts"
import { minerSettings } from "../domain/MinerConfigSchema.ts"
import { checkJournal, type JournalCheck } from "../layers/journal/checkJournal.ts"
import { checkPgJournal, type FleetJournalCheck } from "../layers/journal/checkPgJournal.ts"
import type { LockState } from "../layers/journal/dataDirLock.ts"
import { logToStderr, runCliEffect } from "./errors.ts"
import { CliExit, ExitCode } from "./exit.ts"
import { loadSettings, loadSomeSettings, settingFlags } from "./settingsFlags.ts"
import { printJson } from "./monitorClient.ts"

/**
 * `r3mes-miner journal …`: the operator's tools for the journal in a data dir. Each subcommand is a
 * `Command.make` below, listed in `journalCommand`'s subcommands.
 */

// ---------------------------------------------------------------------------------------------------------------
// journal check

const describeLock = (lock: LockState): string =>
  !lock.held
    ? "free: no miner runs on this data dir"
    : `held by a running miner (pid ${lock.pid ?? "unknown"}${lock.started_at === undefined ? "" : `, since ${lock.started_at}`})`

export const renderCheck = (check: JournalCheck): string => {
  const rows: Array<[string, string]> = [
    ["journal", check.path],
    [
      "status",
      check.status === "ok"
        ? `ok (SQLite integrity check, ${check.check_ms} ms)`
        : `corrupted: ${check.problems.length} problem${check.problems.length === 1 ? "" : "s"} found`
    ],
    ["schema", check.schema_version === null ? "unreadable" : `version ${check.schema_version}`]
  ]
  if (check.records === null) {
    rows.push(["records", "unreadable"])
  } else {
    const states = Object.entries(check.records.by_state).filter(([, n]) => n > 0).map(([state, n]) => `${state} ${n}`)
    rows.push(["records", `${check.records.total}${states.length === 0 ? "" : `: ${states.join(", ")}`}`])
  }
  const meta = check.meta === null ? [["unreadable"]] : Object.entries(check.meta).map(([key, value]) => [`${key} = ${value}`])
  rows.push(["meta", meta.length === 0 ? "none" : meta.map(([line]) => line).join("\n")])
  rows.push(["lock", describeLock(check.lock)])
  const width = Math.max(...rows.map(([name]) => name.length))
  const pad = " ".repeat(width + 2)
  const lines = rows.map(([name, value]) => `${name.padEnd(width)}  ${value.split("\n").join(`\n${pad}`)}`)
  if (check.problems.length > 0) lines.push("", "problems:", ...check.problems.map((problem) => `  ${problem}`))
  return lines.join("\n")
}

/** `journal check` of a fleet's journal (R3MES_FLEET_DATABASE_URL), as text. */
export const renderFleetCheck = (check: FleetJournalCheck): string => {
  const count = (counts: Readonly<Record<string, number>>) => {
    const states = Object.entries(counts).filter(([, n]) => n > 0).map(([state, n]) => `${state} ${n}`)
    return states.length === 0 ? "" : `: ${states.join(", ")}`
  }
  const rows: Array<[string, string]> = [
    ["journal", `the fleet's, at ${check.database}`],
    [
      "status",
      check.status === "ok"
        ? `ok (every record read back, ${check.check_ms} ms)`
        : check.problems.length === 1
        ? "corrupted: 1 record that does not read back"
        : `corrupted: ${check.problems.length} records that do not read back`
    ],
    ["schema", `version ${check.schema_version}`],
    ["records", `${check.records.total}${count(check.records.by_state)}`],
    [
      "runners",
      check.runners.length === 0
        ? "none yet"
        : check.runners.map((r) => `${r.runner} (${r.running ? "running" : "gone"})${count(r.transactions)}`).join("\n")
    ],
    [
      "nonces",
      check.nonces.length === 0
        ? "none reserved yet"
        : check.nonces.map((n) =>
          `${n.account} on chain ${n.chain_id}: ${n.reserved} reserved, ${n.first}..${n.next - 1}` +
          (n.missing.length === 0 ? ", none missing" : `, missing ${n.missing.join(", ")}`)
        ).join("\n")
    ],
    ["meta", Object.keys(check.meta).length === 0 ? "none" : Object.entries(check.meta).map(([k, v]) => `${k} = ${v}`).join("\n")]
  ]
  const width = Math.max(...rows.map(([name]) => name.length))
  const pad = " ".repeat(width + 2)
  const lines = rows.map(([name, value]) => `${name.padEnd(width)}  ${value.split("\n").join(`\n${pad}`)}`)
  if (check.notes.length > 0) lines.push("", "notes:", ...check.notes.map((note) => `  ${note}`))
  if (check.problems.length > 0) lines.push("", "problems:", ...check.problems.map((problem) => `  ${problem}`))
  return lines.join("\n")
}

const json = Flag.Boolean("json").pipe(
  Flag.withDescription(
    "Print the report as JSON: {path, status: \"ok\" | \"corrupted\", problems, hint, check_ms, schema_version, " +
      "records: {total, by_state}, meta, lock: {held, pid, started_at}}; of a fleet's journal: {database, status, " +
      "problems, hint, check_ms, schema_version, records, meta, runners: [{runner, running, transactions}], " +
      "nonces: [{chain_id, account, reserved, first, next, missing}], notes}."
  ),
  Flag.withDefault(false)
)

/**
 * --data-dir and --fleet-database-url: the journal `journal check` looks at. Only these settings are read, so an
 * unrelated invalid setting in the environment does not stop a look at the journal.
 */
const checkFlags = settingFlags([minerSettings.dataDir, minerSettings.fleetDatabaseUrl])

const checkCommand = Command.make(
  "check",
  { settings: checkFlags, json },
  Effect.fnUntraced(function*(input) {
    const settings = yield* loadSomeSettings([minerSettings.dataDir, minerSettings.fleetDatabaseUrl], input.settings, process.env)
    if (Option.isSome(settings.fleetDatabaseUrl)) {
      const fleet = yield* runCliEffect(checkPgJournal(settings.fleetDatabaseUrl.value))
      yield* input.json ? printJson(fleet) : Console.log(renderFleetCheck(fleet))
      if (fleet.status === "corrupted") {
        yield* Console.error(`r3mes-miner: the fleet's journal at ${fleet.database} has records that do not read back\nhint: ${fleet.hint}`)
        return yield* new CliExit({ code: ExitCode.failure })
      }
      return
    }
    const dataDir = settings.dataDir
    const check = yield* runCliEffect(checkJournal(journalPath(dataDir)))
    yield* input.json ? printJson(check) : Console.log(renderCheck(check))
    if (check.status === "corrupted") {
      yield* Console.error(`r3mes-miner: the journal ${check.path} is corrupted\nhint: ${check.hint}`)
      return yield* new CliExit({ code: ExitCode.failure })
    }
  }, logToStderr)
).pipe(
  Command.withDescription(
    "Check the journal in --data-dir: SQLite's integrity check over the whole file, the number of records per " +
      "state, the journal's meta entries, and whether a miner holds the data dir now (its pid). With " +
      "--fleet-database-url (R3MES_FLEET_DATABASE_URL), the fleet's journal in Postgres instead: every record read " +
      "back and compared with its row, records per state and per runner (running or gone), the nonce ledger and its " +
      "gaps. Read-only: safe while a miner runs, and never creates a journal. Exit codes: 0 ok, 1 corrupted or unreadable (the hint " +
      "says what to do), 2 invalid usage."
  ),
  Command.withExamples([
    { command: "r3mes-miner journal check", description: "Check ./.r3mes/journal.sqlite" },
    { command: "r3mes-miner journal check --data-dir /srv/miner --json", description: "The report as JSON" },
    {
      command: "R3MES_FLEET_DATABASE_URL=postgres://… r3mes-miner journal check",
      description: "Check the fleet's journal in Postgres"
    }
  ])
)

// ---------------------------------------------------------------------------------------------------------------
// journal rebuild

export interface RebuildReport extends RebuildSummary {
  readonly journal: string
  /** Where the replaced journal was moved (kept, never deleted); null when there was none. */
  readonly previous_journal: string | null
}

const sqliteSidecars = ["", "-wal", "-shm"] as const

/** Moves a journal file and its WAL/shared-memory sidecars; missing sidecars are fine. */
const moveJournal = (from: string, to: string) =>
  Effect.try({
    try: () => {
      for (const suffix of sqliteSidecars) if (existsSync(from + suffix)) renameSync(from + suffix, to + suffix)
    },
    catch: (e) => classify(e, `moving ${from} to ${to}`)
  })

/**
 * Rebuilds <data dir>/journal.sqlite from the chain and the store, under the data dir's lock: the records go into a
 * new file beside it, which replaces the old one only once complete; the old one is kept as
 * journal.sqlite.replaced-<time>.
 */
export const rebuildJournalFile = Effect.fnUntraced(function*(config: MinerConfig) {
  const path = journalPath(config.dataDir)
  yield* acquireDataDirLock(path)
  const building = `${path}.rebuilding`
  for (const suffix of [...sqliteSidecars, ".lock", ".pid"]) rmSync(building + suffix, { force: true })
  const summary = yield* Effect.scoped(Effect.gen(function*() {
    const endpoint = yield* chainEndpoint(config)
    return yield* rebuildJournal().pipe(
      Effect.provide(Layer.mergeAll(chainLayer(endpoint), gradientStoreLayer(config), SqliteJournal.layer({ path: building })))
    )
  }))
  const previous = existsSync(path) ? `${path}.replaced-${new Date().toISOString().replaceAll(":", "-")}` : null
  if (previous !== null) yield* moveJournal(path, previous)
  yield* moveJournal(building, path)
  for (const suffix of [".lock", ".pid"]) rmSync(building + suffix, { force: true })
  return { ...summary, journal: path, previous_journal: previous } satisfies RebuildReport
})

const rebuildCommand = Command.make(
  "rebuild",
  { settings: settingFlags(), json },
  Effect.fnUntraced(function*(input) {
    const { config } = yield* loadSettings(input.settings)
    const report = yield* runCliEffect(Effect.scoped(rebuildJournalFile(config)))
    if (input.json) return yield* printJson(report)
    yield* Console.log(
      [
        `rebuilt ${report.journal}: ${report.rebuilt} committed transaction(s) from the chain, ${report.pinned} pinned`,
        report.previous_journal === null ? "there was no journal before" : `the replaced journal is kept at ${report.previous_journal}`,
        ...report.unavailable.map((cid) => `not pinned and not reachable: ${cid} (committed on chain)`)
      ].join("\n")
    )
  }, logToStderr)
).pipe(
  Command.withDescription(
    "Rebuild the journal in --data-dir from the chain and the IPFS store: one committed record per submission the " +
      "chain holds from this miner, each envelope pinned again where the store can still reach it. The old journal " +
      "(corrupted, or lost) is kept beside it, never deleted. Takes the data dir's lock: stop the miner first. The " +
      "chain and IPFS settings are those of `mine` (without --rpc-url, the embedded devnet in the data dir)."
  ),
  Command.withExamples([
    { command: "r3mes-miner journal rebuild", description: "Rebuild ./.r3mes/journal.sqlite from the embedded devnet" }
  ])
)

// ---------------------------------------------------------------------------------------------------------------

export const journalCommand = Command.make("journal").pipe(
  Command.withDescription(
    "Check or rebuild the journal, the miner's durable record of every transaction (<data dir>/journal.sqlite). " +
      "Only one miner may use a data dir at a time: the journal is locked while it runs."
  ),
  Command.withSubcommands([checkCommand, rebuildCommand])
)
