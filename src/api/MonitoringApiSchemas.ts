import { Schema } from "effect"
import { JournalEvent, TransactionRecord } from "../domain/TransactionRecord.ts"
import { TransactionState } from "../domain/TransactionState.ts"

/**
 * What goes in and out of the monitoring API (DESIGN.md "Monitoring HTTP API"), as schemas: the server decodes
 * requests and encodes answers with them, the `status` / `stats` commands decode the answers with them.
 */

/** A JSON object the API passes on without fixing its keys (the statistics evolve with the miner). */
export const JsonObject = Schema.Record(Schema.String, Schema.Unknown)

// ---------------------------------------------------------------------------------------------------------------
// Requests

export const defaultListLimit = 50
export const maxListLimit = 1000

/** `?limit=`: how many records a list returns. */
export const ListLimit = Schema.Int.check(
  Schema.isBetween({ minimum: 1, maximum: maxListLimit }, {
    message: `expected an integer from 1 to ${maxListLimit}`
  })
)

/** `?events=true` (or 1) adds the transaction's history to its record. */
export const EventsFlag = Schema.Literals(["true", "false", "1", "0"])

/** An empty parameter (`?state=&limit=`, as DESIGN.md writes the route) means "not given". */
const NotGiven = Schema.Literal("")

export const TransactionsQuery = Schema.Struct({
  state: Schema.optional(Schema.Union([NotGiven, TransactionState])),
  limit: Schema.optional(Schema.Union([NotGiven, ListLimit]))
})

const nonNegative = Schema.isGreaterThanOrEqualTo(0, { message: "expected a number of seconds, 0 or more" })

/** `max_age_seconds` of POST /cleanup-stale: 0 or more seconds (a query parameter is parsed from its text). */
export const MaxAgeSeconds = Schema.Finite.check(nonNegative)

/** The same written as text, in a form or by hand in JSON; "" means not given. */
const MaxAgeSecondsText = Schema.Union([Schema.Literal(""), Schema.FiniteFromString.check(nonNegative)])

/**
 * The body of POST /cleanup-stale, read when the query names no `max_age_seconds`: JSON `{"max_age_seconds": N}`
 * or the form `max_age_seconds=N`, whatever the content-type says. Absent, null or "" means the transaction timeout.
 */
export const CleanupStalePayload = Schema.Struct({
  max_age_seconds: Schema.optional(Schema.NullOr(Schema.Union([MaxAgeSeconds, MaxAgeSecondsText])))
})
export type CleanupStalePayload = typeof CleanupStalePayload.Type

// ---------------------------------------------------------------------------------------------------------------
// Answers

/** A part of the process the miner depends on (e.g. the embedded devnet), with whatever details it gives. */
export const ComponentHealthJson = Schema.StructWithRest(
  Schema.Struct({ state: Schema.String, alive: Schema.Boolean, ready: Schema.Boolean }),
  [JsonObject]
)

const components = Schema.optionalKey(Schema.Record(Schema.String, ComponentHealthJson))

export const HealthFields = {
  status: Schema.Literals(["ok", "down"]),
  uptime_seconds: Schema.Number,
  components
}
export const HealthAnswer = Schema.Struct(HealthFields)

const BreakerStateJson = Schema.Literals(["closed", "half_open", "open"])

export const ReadinessFields = {
  status: Schema.Literals(["ready", "not_ready"]),
  reasons: Schema.Array(Schema.String),
  components,
  circuit_breakers: Schema.Record(Schema.String, BreakerStateJson),
  active_transactions: Schema.Number
}
export const ReadinessAnswer = Schema.Struct(ReadinessFields)

/** GET /stats: the coordinator's statistics and who answers (version, uptime, chain, IPFS). */
export const Stats = Schema.Struct({
  atomic_coordinator: JsonObject,
  /** Where the process runs a verifier (the embedded devnet's): verdicts by name, pending, cursor, recompute time. */
  verifier: Schema.optionalKey(JsonObject),
  /** Where the process runs the round coordinator (the embedded devnet's): learning rounds, test accuracy per round. */
  network: Schema.optionalKey(JsonObject),
  /** Where the process is a fleet runner: every runner of the fleet's journal, whether it runs, its transactions by state. */
  fleet: Schema.optionalKey(JsonObject),
  miner: Schema.StructWithRest(
    Schema.Struct({ version: Schema.String, started_at: Schema.String, uptime_seconds: Schema.Number }),
    [JsonObject]
  )
})
export type Stats = typeof Stats.Type


/** GET /transaction/:id: the record, and its history with `?events=true`. */
export const TransactionWithEvents = Schema.Struct({
  ...TransactionRecord.fields,
  /** The verdict of the verifier running in the miner's process (the embedded devnet's), once it recorded one. */
  verdict: Schema.optionalKey(Schema.String),
  events: Schema.optionalKey(Schema.Array(JournalEvent))
})
export type TransactionWithEvents = typeof TransactionWithEvents.Type

/** GET /transactions: newest first. */
export const TransactionList = Schema.Struct({
  transactions: Schema.Array(TransactionRecord),
  count: Schema.Int,
  state: Schema.NullOr(TransactionState),
  limit: Schema.Int
})
export type TransactionList = typeof TransactionList.Type

export const RecentError = Schema.Struct({
  transaction_id: Schema.String,
  state: TransactionState,
  failed_step: Schema.NullOr(Schema.String),
  error_category: Schema.NullOr(Schema.String),
  error_message: Schema.NullOr(Schema.String),
  updated_at: Schema.String
})

export const ErrorBreakdown = Schema.Struct({
  error_breakdown: Schema.Record(Schema.String, Schema.Number),
  total_errors: Schema.Number,
  failed: Schema.Number,
  rolled_back: Schema.Number,
  failure_rate: Schema.Number,
  rollback_rate: Schema.Number,
  task_completion_failures: Schema.Number,
  recent_errors: Schema.Array(RecentError)
})

/** POST /cleanup-stale: what was rolled back, and what is past its commit point and left to the chain. */
export const CleanupResult = Schema.Struct({
  cleaned: Schema.Array(Schema.String),
  count: Schema.Int,
  awaiting_chain: Schema.Array(Schema.String),
  max_age_seconds: Schema.Number
})
