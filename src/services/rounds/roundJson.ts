import type { RoundReport } from "../RoundAggregator.ts"
import type { ClosedRound, LatestRound } from "../RoundCoordinator.ts"

/**
 * Learning rounds as JSON (snake_case, like every outside contract of the miner): /stats's `network` section,
 * `r3mes-miner rounds --json` and `aggregate --json`.
 */

export const roundReportJson = (report: RoundReport) => ({
  round_id: report.roundId.toString(),
  chunk_count: report.chunkCount,
  submitted: report.submitted,
  accepted: report.accepted.length,
  rejected: report.rejected,
  unjudged: report.unjudged,
  excluded: report.excluded.map((e) => ({ chunk_id: e.chunkId, reason: e.reason })),
  verdicts: report.verdicts,
  miners: report.miners.map((m) => ({ miner: m.miner, submitted: m.submitted, accepted: m.accepted, rejected: m.rejected })),
  test_accuracy: report.test.accuracy,
  test_loss: report.test.loss,
  test_accuracy_ppm: report.testAccuracyPpm,
  median_norm: report.medianNorm,
  weights_cid: report.weightsCid,
  weights_hash: report.weightsHash,
  momentum_cid: report.momentum?.cid ?? null
})

export const closedRoundJson = (round: ClosedRound) => ({ ...roundReportJson(round), closing: round.closing })

export const latestRoundJson = (round: LatestRound) => ({
  round_id: round.roundId.toString(),
  accepted: round.acceptedCount,
  test_accuracy: round.testAccuracy,
  test_loss: round.testLoss ?? null,
  weights_cid: round.weightsCid
})
