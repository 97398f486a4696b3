"use strict";
// The fleet's view, on a fleet runner (/stats `fleet`): every runner of the fleet's journal, whether a process runs
// it, its transactions by state, and the fleet's totals. The rest of the page is this runner's own.
(function () {
  const { fmt, field, rows, show } = window.Render;
  const unfinished = (counts) =>
    Object.entries(counts || {}).reduce((n, [state, k]) => (["committed", "failed", "rolled_back"].includes(state) ? n : n + k), 0);

  function draw(stats) {
    const fleet = stats.fleet;
    show("fleet", fleet !== undefined);
    if (fleet === undefined) return;
    field("fleet_self", fleet.runner);
    if (typeof fleet.error === "string") {
      // The fleet's database unreachable: said so, the last table kept.
      field("fleet_error", fleet.error);
      show("fleet-error", true);
      return;
    }
    show("fleet-error", false);
    const runners = fleet.runners || [];
    const totals = fleet.totals || {};
    field("fleet_running", `${fmt.int(runners.filter((r) => r.running).length)} of ${fmt.int(runners.length)}`);
    field("fleet_committed", fmt.int(totals.committed || 0));
    field("fleet_unfinished", fmt.int(unfinished(totals)));
    field("fleet_undone", fmt.int((totals.rolled_back || 0) + (totals.failed || 0)));
    rows("fleet-table", runners, (r) => [
      [r.runner === fleet.runner ? `${r.runner} (this one)` : r.runner, "mono"],
      [r.running ? "running" : "gone", r.running ? "state-committed" : "state-failed"],
      [fmt.int((r.transactions || {}).committed || 0), "num"],
      [fmt.int(unfinished(r.transactions)), "num"],
      [fmt.int((r.transactions || {}).rolled_back || 0), "num"],
      [fmt.int((r.transactions || {}).failed || 0), "num"]
    ], "no runner has journaled a transaction yet");
  }

  window.FleetView = { draw };
})();
