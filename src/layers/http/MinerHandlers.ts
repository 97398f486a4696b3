import { Clock, Effect, Option } from "effect"
import { HttpApiBuilder } from "effect/http-api"
import packageJson from "../../../package.json" with { type: "json" }
import { TransactionNotFound } from "../../api/MonitoringApiErrors.ts"
import { defaultListLimit } from "../../api/MonitoringApiSchemas.ts"
import { MonitoringApiSpec } from "../../api/MonitoringApiSpec.ts"
import { withAge } from "../../domain/TransactionRecord.ts"
import { Journal } from "../../services/Journal.ts"
import { MiningCoordinator } from "../../services/MiningCoordinator.ts"
import { asJson } from "./answers.ts"
import type { MonitoringServer } from "./MonitoringApiOptions.ts"

const recentErrorsShown = 10

/**
 * GET /stats, /transaction/:id, /transactions and /error-breakdown: what the miner did, from the coordinator's
 * statistics and the journal. A journal that fails is a 500 with its message (the failure is not the caller's).
 */
export const minerHandlers = (server: MonitoringServer) =>
  HttpApiBuilder.group(
    MonitoringApiSpec,
    "miner",
    Effect.fnUntraced(function*(handlers) {
      const coordinator = yield* MiningCoordinator
      const journal = yield* Journal
      const version = server.options.version ?? packageJson.version
      const info = server.options.miner
      const minerInfo = info === undefined ? Effect.succeed({}) : Effect.isEffect(info) ? info : Effect.succeed(info)

      return handlers.handleAll({
        stats: Effect.fn("MonitoringApi.stats")(function*() {
          const statistics = yield* coordinator.getStatistics
          const verifier = server.options.verifier
          return {
            atomic_coordinator: asJson(statistics),
            miner: {
              ...asJson(yield* minerInfo),
              version,
              started_at: new Date(server.startedAt).toISOString(),
              uptime_seconds: yield* server.uptimeSeconds
            },
            ...(verifier === undefined ? {} : { verifier: asJson(yield* verifier.snapshot) }),
            ...(server.options.network === undefined ? {} : { network: asJson(yield* server.options.network) }),
            ...(server.options.fleet === undefined ? {} : { fleet: asJson(yield* server.options.fleet) })
          }
        }),
        transaction: Effect.fn("MonitoringApi.transaction")(function*({ params, query }) {
          const record = yield* Effect.orDie(coordinator.getTransactionStatus(params.id))
          if (Option.isNone(record)) {
            return yield* new TransactionNotFound({ message: `no transaction ${params.id}`, transaction_id: params.id })
          }
          const verdictOf = server.options.verifier?.verdictOf
          const verdict = verdictOf === undefined || record.value.state !== "committed"
            ? undefined
            : yield* verdictOf(BigInt(record.value.round_id), record.value.chunk_id)
          const shown = verdict === undefined ? record.value : { ...record.value, verdict }
          if (query.events === "true" || query.events === "1") {
            return { ...shown, events: yield* Effect.orDie(journal.events(params.id)) }
          }
          return shown
        }),
        transactions: Effect.fn("MonitoringApi.transactions")(function*({ query }) {
          const limit = query.limit === undefined || query.limit === "" ? defaultListLimit : query.limit
          const state = query.state === "" ? undefined : query.state
          const records = yield* Effect.orDie(journal.list({ state, limit }))
          const now = yield* Clock.currentTimeMillis
          return {
            transactions: records.map((r) => withAge(r, now)),
            count: records.length,
            state: state ?? null,
            limit
          }
        }),
        errorBreakdown: Effect.fn("MonitoringApi.errorBreakdown")(function*() {
          const statistics = yield* coordinator.getStatistics
          const [failed, rolledBack] = yield* Effect.orDie(Effect.all([
            journal.list({ state: "failed", limit: recentErrorsShown }),
            journal.list({ state: "rolled_back", limit: recentErrorsShown })
          ]))
          const recent = [...failed, ...rolledBack]
            .sort((a, b) => b.updated_at.localeCompare(a.updated_at))
            .slice(0, recentErrorsShown)
            .map((r) => ({
              transaction_id: r.transaction_id,
              state: r.state,
              failed_step: r.failed_step,
              error_category: r.error_category,
              error_message: r.error_message,
              updated_at: r.updated_at
            }))
          return {
            error_breakdown: statistics.error_breakdown,
            total_errors: Object.values<number>(statistics.error_breakdown).reduce((a, b) => a + b, 0),
            failed: statistics.failed,
            rolled_back: statistics.rolled_back,
            failure_rate: statistics.failure_rate,
            rollback_rate: statistics.rollback_rate,
            task_completion_failures: statistics.task_completion_failures,
            recent_errors: recent
          }
        })
      })
    })
  )
