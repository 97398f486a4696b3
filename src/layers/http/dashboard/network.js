"use strict";
// The network's view, where the process runs the round coordinator (/stats `network`) or a verifier (/stats
// `verifier`): test accuracy per round (the headline), verdicts per round with reasons, the per-miner table. Drawn
// whole from each /stats answer: a finalized round never changes.
(function () {
  const { chart } = window.Charts;
  const { fmt, field, rows, tiles, show } = window.Render;
  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);

  function create() {
    const charts = {
      accuracy: chart(document.getElementById("chart-accuracy"), {
        height: 240, yRange: [0, 100], yValues: (u, t) => t.map((v) => v + " %"),
        series: [{ label: "test accuracy", value: (u, v) => (v == null ? "–" : v.toFixed(2) + " %") }]
      }),
      verdicts: chart(document.getElementById("chart-verdicts"), {
        bars: true, series: [{ label: "accepted", color: 2 }, { label: "rejected", color: 1 }]
      })
    };
    return { charts, draw: (stats) => draw(charts, stats) };
  }

  function draw(charts, stats) {
    const network = stats.network;
    show("network", network !== undefined);
    if (network !== undefined) {
      const rounds = (network.rounds || []).slice().sort((a, b) => Number(a.round_id) - Number(b.round_id));
      const latest = network.latest_finalized;
      field("latest_round", latest ? latest.round_id : "none yet");
      field("latest_accuracy", latest ? fmt.pct(latest.test_accuracy) : "–");
      field("rounds_finalized", fmt.int(rounds.length));
      const ids = rounds.map((r) => Number(r.round_id));
      charts.accuracy.set([ids, rounds.map((r) => (num(r.test_accuracy) === null ? null : r.test_accuracy * 100))]);
      charts.verdicts.set([ids, rounds.map((r) => num(r.accepted)), rounds.map((r) => num(r.rejected))]);
      rows("rounds-table", rounds.slice().reverse(), (r) => [
        [r.round_id, "num"],
        [fmt.int(r.submitted), "num"],
        [fmt.int(r.accepted), "num"],
        [fmt.int(r.rejected), "num"],
        [fmt.int(r.unjudged), "num"],
        [fmt.pct(r.test_accuracy), "num"],
        [fmt.dec(r.test_loss, 4), "num"],
        [[
          ...Object.entries(r.verdicts || {}).map(([name, n]) => `${name} ${n}`),
          ...(r.excluded || []).map((e) => `excluded: ${e.reason}`)
        ].join(" · ") || "–"]
      ], "no round finalized by this run yet");
      const miners = new Map();
      for (const r of rounds) {
        for (const m of r.miners || []) {
          const key = m.miner.toLowerCase();
          const sum = miners.get(key) || { miner: m.miner, submitted: 0, accepted: 0, rejected: 0 };
          sum.submitted += m.submitted;
          sum.accepted += m.accepted;
          sum.rejected += m.rejected;
          miners.set(key, sum);
        }
      }
      rows("miners-table", [...miners.values()], (m) => [
        [m.miner, "mono"], [fmt.int(m.submitted), "num"], [fmt.int(m.accepted), "num"], [fmt.int(m.rejected), "num"]
      ], "no submissions in finalized rounds yet");
    }
    const verifier = stats.verifier;
    show("verifier", verifier !== undefined);
    if (verifier !== undefined) {
      const recompute = verifier.recompute_seconds || {};
      tiles("verifier-tiles", [
        ["accepted", fmt.int(verifier.accepted), "verifier_accepted"],
        ["rejected", fmt.int(verifier.rejected), "verifier_rejected"],
        ["pending", fmt.int(verifier.pending)],
        ["cursor block", String(verifier.cursor_block ?? "–")],
        ["recompute p50 / p95", `${fmt.ms(num(recompute.p50) === null ? null : recompute.p50 * 1000)} / ${fmt.ms(num(recompute.p95) === null ? null : recompute.p95 * 1000)}`],
        ...Object.entries(verifier.verdicts || {}).filter(([, n]) => n > 0).map(([name, n]) => [name, fmt.int(n)])
      ]);
    }
  }

  window.NetworkView = { create };
})();
