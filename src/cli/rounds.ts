import { Console, Context, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { roundServices } from "../app/roundServices.ts"
import { Chain } from "../services/Chain.ts"
import { RoundAggregator, type RoundCheck, type RoundSummary } from "../services/RoundAggregator.ts"
import { roundReportJson } from "../services/rounds/roundJson.ts"
import { logToStderr, runCliEffect } from "./errors.ts"
import { CliExit, ExitCode } from "./exit.ts"
import { printJson } from "./monitorClient.ts"
import { table } from "./render.ts"
import { loadSettings, settingFlags } from "./settingsFlags.ts"

const json = Flag.Boolean("json").pipe(Flag.withDescription("Print JSON on stdout instead of text."), Flag.withDefault(false))

const percent = (ratio: number) => `${(ratio * 100).toFixed(2)}%`

const summaryJson = (s: RoundSummary) => ({
  round_id: s.roundId.toString(),
  learning: s.learning,
  chunk_count: s.chunkCount,
  submitted: s.submitted,
  rejected: s.rejected,
  finalized: Option.isSome(s.finalization),
  accepted: Option.match(s.finalization, { onNone: () => null, onSome: (f) => f.acceptedCount }),
  test_accuracy: Option.match(s.finalization, { onNone: () => null, onSome: (f) => f.testAccuracyPpm / 1_000_000 }),
  test_loss: Option.match(s.test, { onNone: () => null, onSome: (t) => t.loss }),
  weights_cid: Option.match(s.finalization, { onNone: () => null, onSome: (f) => f.modelCid })
})

const renderSummaries = (summaries: ReadonlyArray<RoundSummary>): string => {
  if (summaries.length === 0) return "no rounds on this chain yet"
  const rows = summaries.map((s) => {
    const j = summaryJson(s)
    return [
      j.round_id,
      s.learning ? (j.finalized ? "finalized" : "open") : "not learning",
      `${j.submitted}/${j.chunk_count}`,
      j.accepted === null ? "-" : String(j.accepted),
      s.learning ? String(j.rejected) : "-",
      j.test_accuracy === null ? "-" : percent(j.test_accuracy),
      j.test_loss === null ? "-" : j.test_loss.toFixed(4),
      j.weights_cid ?? "-"
    ]
  })
  return table(["round", "state", "submitted", "accepted", "rejected", "test acc", "test loss", "weights CID"], rows, {
    right: [2, 3, 4, 5, 6]
  })
}

const last = Flag.Int("last").pipe(
  Flag.withMetavar("N"),
  Flag.withDescription("Only the newest N rounds (default 20)."),
  Flag.withDefault(20)
)

export const roundsCommand = Command.make(
  "rounds",
  { settings: settingFlags(), json, last },
  Effect.fnUntraced(function*(input) {
    const { config } = yield* loadSettings(input.settings)
    const summaries = yield* runCliEffect(Effect.scoped(Effect.gen(function*() {
      const context = yield* roundServices(config)
      const aggregator = Context.get(context, RoundAggregator)
      const rounds = yield* Context.get(context, Chain).rounds
      return yield* Effect.forEach(rounds.slice(-Math.max(1, input.last)), aggregator.summary)
    })))
    if (input.json) return yield* printJson(summaries.map(summaryJson))
    yield* Console.log(renderSummaries(summaries))
  }, logToStderr)
).pipe(
  Command.withDescription(
    "The network's rounds as the chain records them: per round, submissions, accepted (aggregated) and rejected " +
      "gradients, the test accuracy of the aggregated model on the held-out split and its loss (recomputed from the " +
      "weights when the store has them), the weights CID. Chain and IPFS settings as `mine`'s (without --rpc-url, " +
      "the data dir's devnet, under its lock: while a miner runs there, its `stats --json` has a `network` section)."
  ),
  Command.withExamples([
    { command: "r3mes-miner rounds", description: "The newest 20 rounds of ./.r3mes's devnet" },
    { command: "r3mes-miner rounds --json --last 100", description: "As JSON" }
  ])
)

const roundId = Argument.String("round").pipe(
  Argument.withMetavar("ROUND"),
  Argument.withDescription("The round id (a whole number)")
)

const check = Flag.Boolean("check").pipe(
  Flag.withDescription("Compare with the round's finalization on chain; exit 1 when it does not reproduce."),
  Flag.withDefault(false)
)

const renderCheck = (result: RoundCheck, checked: boolean): string => {
  const r = result.recomputed
  const lines = [
    `round ${result.roundId}: ${r.accepted.length} of ${r.submitted} submissions aggregated (${r.rejected} rejected, ` +
    `${r.unjudged} unjudged${r.excluded.length > 0 ? `, ${r.excluded.length} malformed left out` : ""})`,
    `weights ${r.weightsCid} sha256 ${r.weightsHash}`,
    `test accuracy ${percent(r.test.accuracy)}, loss ${r.test.loss.toFixed(4)} on ${r.test.count} held-out digits`
  ]
  if (checked) {
    lines.push(
      result.mismatches.length === 0
        ? `check: reproduces the finalization bit for bit (weights hash ${result.finalization.weightsHash})`
        : `check FAILED: ${result.mismatches.join("; ")}`
    )
  }
  return lines.join("\n")
}

export const aggregateCommand = Command.make(
  "aggregate",
  { settings: settingFlags(), json, check, round: roundId },
  Effect.fnUntraced(function*(input) {
    if (!/^\d+$/.test(input.round)) {
      yield* Console.error(`r3mes-miner: ROUND ${input.round} is not a round id\nhint: give a whole number, e.g. from \`r3mes-miner rounds\``)
      return yield* new CliExit({ code: ExitCode.usage })
    }
    const { config } = yield* loadSettings(input.settings)
    const result = yield* runCliEffect(Effect.scoped(Effect.gen(function*() {
      const context = yield* roundServices(config)
      return yield* Context.get(context, RoundAggregator).check(BigInt(input.round))
    })))
    if (input.json) {
      yield* printJson({
        ...roundReportJson(result.recomputed),
        finalization: {
          weights_cid: result.finalization.modelCid,
          weights_hash: result.finalization.weightsHash,
          accepted: result.finalization.acceptedCount,
          test_accuracy_ppm: result.finalization.testAccuracyPpm
        },
        ...(input.check ? { check: { reproduces: result.mismatches.length === 0, mismatches: result.mismatches } } : {})
      })
    } else {
      yield* Console.log(renderCheck(result, input.check))
    }
    if (input.check && result.mismatches.length > 0) return yield* new CliExit({ code: ExitCode.failure })
  }, logToStderr)
).pipe(
  Command.withDescription(
    "Recompute a finalized learning round from the chain (its spec, submissions and verdicts) and the content " +
      "(the parent weights and the accepted gradients, fetched by CID and checked): the aggregate, the new weights " +
      "and their test accuracy. With --check, compare with what `finalizeRound` recorded: exit 0 when it " +
      "reproduces bit for bit, 1 when not. Chain and IPFS settings as `rounds`."
  ),
  Command.withExamples([
    { command: "r3mes-miner aggregate 3 --check", description: "Recompute round 3 and compare its weights hash" }
  ])
)
