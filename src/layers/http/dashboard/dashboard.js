"use strict";
// Polls /stats and /transactions every 2 s and draws the miner's view (the network's is network.js). Its charts are
// the history of what /stats said since the page opened: the API keeps no history of its own. The last answers and
// the points each chart shows are kept in window.__dashboard for the browser test.
(function () {
  const { chart } = window.Charts;
  const { fmt, field, rows, show } = window.Render;
  const pollMs = 2000;
  const kept = 900; // 30 minutes of polls
  const listed = 50;
  const steps = ["training", "ipfs_upload", "blockchain_submit", "task_complete"];

  const state = { polls: 0, failures: 0, lastError: null, stats: null, transactions: [], verdicts: {}, history: [] };
  window.__dashboard = state;

  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const time = { time: true, points: false };
  const charts = {
    committed: chart(document.getElementById("chart-committed"), { ...time, series: [{ label: "committed / min" }] }),
    latency: chart(document.getElementById("chart-latency"), {
      ...time,
      series: steps.flatMap((s, i) => [{ label: `${s} p50`, color: i }, { label: `${s} p95`, color: i, dash: [5, 4] }])
    }),
    loss: chart(document.getElementById("chart-loss"), {
      time: true, xLabel: "created",
      series: [{ label: "loss before", color: 1 }, { label: "loss after", color: 2 }]
    }),
    pow: chart(document.getElementById("chart-pow"), { ...time, series: [{ label: "hashes / s", color: 3 }] }),
    errors: chart(document.getElementById("chart-errors"), {
      ...time, series: [{ label: "errors", color: 1 }, { label: "failed", color: 4 }, { label: "rolled back", color: 3 }]
    }),
    active: chart(document.getElementById("chart-active"), { ...time, series: [{ label: "active", color: 0 }, { label: "peak", color: 4, dash: [5, 4] }] })
  };
  const network = window.NetworkView.create();
  Object.assign(charts, network.charts);
  state.charts = charts;
  state.points = () => Object.fromEntries(Object.entries(charts).map(([name, c]) => [name, c.points()]));

  const getJson = async (path) => {
    const response = await fetch(path, { cache: "no-store", headers: { accept: "application/json" } });
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  };

  function remember(stats) {
    const c = stats.atomic_coordinator || {};
    const latency = c.latency_ms || {};
    const errors = Object.values(c.error_breakdown || {}).reduce((a, b) => a + (num(b) ?? 0), 0);
    state.history.push({
      t: Date.now() / 1000,
      committedPerMinute: num(c.committed_per_minute),
      latency: steps.flatMap((s) => [num(latency[s] && latency[s].p50_ms), num(latency[s] && latency[s].p95_ms)]),
      pow: num(c.pow && c.pow.hashes_per_second),
      errors: [errors, num(c.failed), num(c.rolled_back)],
      active: [num(c.active_transactions), num(c.peak_active)]
    });
    if (state.history.length > kept) state.history.shift();
  }

  const column = (pick) => state.history.map(pick);

  function drawMiner(stats) {
    const c = stats.atomic_coordinator || {};
    const m = stats.miner || {};
    field("version", m.version ?? "–");
    field("uptime", fmt.duration(m.uptime_seconds));
    field("registry", m.chain && m.chain.registry ? m.chain.registry : "–");
    field("committed", fmt.int(c.committed));
    field("committed_per_minute", fmt.dec(c.committed_per_minute));
    field("active", fmt.int(c.active_transactions));
    field("failed", fmt.int(c.failed));
    field("rolled_back", fmt.int(c.rolled_back));
    field("pow_rate", fmt.rate(c.pow && c.pow.hashes_per_second));
    const breakers = Object.entries(c.circuit_breakers || {});
    field("breakers", breakers.length === 0 ? "–" : breakers.map(([name, s]) => `${name} ${s}`).join(" · "));
    const categories = Object.entries(c.error_breakdown || {}).filter(([, n]) => n > 0);
    document.getElementById("error-categories").textContent =
      categories.length === 0 ? "none" : categories.map(([name, n]) => `${name}: ${n}`).join(" · ");

    const xs = column((h) => h.t);
    charts.committed.set([xs, column((h) => h.committedPerMinute)]);
    charts.latency.set([xs, ...steps.flatMap((s, i) => [column((h) => h.latency[2 * i]), column((h) => h.latency[2 * i + 1])])]);
    charts.pow.set([xs, column((h) => h.pow)]);
    charts.errors.set([xs, ...[0, 1, 2].map((i) => column((h) => h.errors[i]))]);
    charts.active.set([xs, column((h) => h.active[0]), column((h) => h.active[1])]);
  }

  function drawTransactions() {
    const withLoss = state.transactions
      .filter((t) => num(t.loss_before) !== null || num(t.loss_after) !== null)
      .map((t) => ({ x: Date.parse(t.created_at) / 1000, before: num(t.loss_before), after: num(t.loss_after) }))
      .sort((a, b) => a.x - b.x);
    // uPlot wants x strictly increasing: transactions started in the same millisecond are nudged apart.
    for (let i = 1; i < withLoss.length; i++) if (withLoss[i].x <= withLoss[i - 1].x) withLoss[i].x = withLoss[i - 1].x + 0.001;
    charts.loss.set([withLoss.map((p) => p.x), withLoss.map((p) => p.before), withLoss.map((p) => p.after)]);

    rows("transactions-table", state.transactions.slice(0, 15), (t) => {
      const total = Object.values(t.step_ms || {}).reduce((a, b) => a + (num(b) ?? 0), 0);
      const verdict = state.verdicts[t.transaction_id];
      return [
        [fmt.short(t.transaction_id), "mono"],
        [`${t.round_id} / ${t.chunk_id}`, "num"],
        [t.state, `state-${t.state}`],
        [verdict ?? (t.state === "committed" ? "…" : "–"), verdict && verdict.startsWith("rejected") ? "verdict-rejected" : ""],
        [`${fmt.dec(t.loss_before, 4)} → ${fmt.dec(t.loss_after, 4)}`, "num"],
        [fmt.ms(total), "num"],
        [fmt.duration(t.age_seconds), "num"]
      ];
    }, "no transactions yet");
  }

  /** The embedded verifier's verdict of the newest committed transactions, asked once each until it has one. */
  async function fetchVerdicts(stats) {
    if (stats.verifier === undefined) return;
    const missing = state.transactions
      .slice(0, 15)
      .filter((t) => t.state === "committed" && state.verdicts[t.transaction_id] === undefined)
      .slice(0, 4);
    await Promise.all(missing.map(async (t) => {
      const record = await getJson(`/transaction/${encodeURIComponent(t.transaction_id)}`);
      if (typeof record.verdict === "string") state.verdicts[t.transaction_id] = record.verdict;
    }));
  }

  function connection(live, why) {
    const badge = document.getElementById("connection");
    badge.dataset.state = live ? "live" : "stale";
    badge.textContent = live ? "live" : "stale";
    badge.title = why || "";
  }

  async function poll() {
    try {
      // Without /transactions (an API that has none, a journal failing) the page still shows what /stats has, with
      // the last transactions it had.
      const requestedAt = Date.now();
      const [stats, list] = await Promise.all([
        getJson("/stats"),
        getJson(`/transactions?limit=${listed}`).catch(() => null)
      ]);
      state.stats = stats;
      state.statsRequestedAt = requestedAt;
      if (list !== null) state.transactions = list.transactions || [];
      remember(stats);
      network.draw(stats);
      window.FleetView.draw(stats);
      show("miner", stats.atomic_coordinator !== undefined);
      drawMiner(stats);
      await fetchVerdicts(stats).catch(() => {});
      drawTransactions();
      field("updated", new Date().toLocaleTimeString());
      state.polls += 1;
      state.lastError = null;
      connection(true);
    } catch (error) {
      state.failures += 1;
      state.lastError = String(error && error.message ? error.message : error);
      connection(false, state.lastError);
    } finally {
      setTimeout(poll, pollMs);
    }
  }

  poll();
})();
