"use strict";
// Numbers and tables into the page. Every value goes in as text (textContent), never as HTML: a revert reason or a
// CID from the chain can then not inject anything.
(function () {
  const fmt = {
    int: (n) => (typeof n === "number" ? Math.round(n).toLocaleString("en-US") : "–"),
    dec: (n, digits = 1) => (typeof n === "number" && Number.isFinite(n) ? n.toFixed(digits) : "–"),
    pct: (n) => (typeof n === "number" ? (n * 100).toFixed(2) + " %" : "–"),
    ms: (n) => (typeof n === "number" ? (n >= 1000 ? (n / 1000).toFixed(2) + " s" : Math.round(n) + " ms") : "–"),
    duration: (s) => {
      if (typeof s !== "number") return "–";
      const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
      return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${Math.floor(s % 60)}s` : `${Math.floor(s)}s`;
    },
    rate: (n) => (typeof n === "number" ? window.Charts.shortNumber(n) + " H/s" : "–"),
    short: (id) => (typeof id === "string" && id.length > 14 ? id.slice(0, 6) + "…" + id.slice(-4) : String(id ?? "–"))
  };

  /** Sets every `[data-field=name]` to `text`. */
  function field(name, text) {
    for (const el of document.querySelectorAll(`[data-field="${name}"]`)) el.textContent = text;
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  /** Replaces a table's body with one row per item; `cells(item)` gives [text, className?] pairs. */
  function rows(tableId, items, cells, empty) {
    const body = document.querySelector(`#${tableId} tbody`);
    const fresh = document.createElement("tbody");
    if (items.length === 0) {
      const tr = document.createElement("tr");
      const td = cell(empty, "muted");
      td.colSpan = document.querySelectorAll(`#${tableId} thead th`).length;
      tr.append(td);
      fresh.append(tr);
    }
    for (const item of items) {
      const tr = document.createElement("tr");
      for (const [text, className] of cells(item)) tr.append(cell(text, className));
      fresh.append(tr);
    }
    body.replaceWith(fresh);
  }

  /** Small labelled numbers in a container (the verifier's section, whose keys the API leaves open). */
  function tiles(containerId, entries) {
    const box = document.getElementById(containerId);
    box.textContent = "";
    for (const [label, value, name] of entries) {
      const tile = document.createElement("div");
      tile.className = "tile";
      const span = document.createElement("span");
      span.textContent = label;
      const b = document.createElement("b");
      b.textContent = value;
      if (name) b.dataset.field = name;
      tile.append(span, b);
      box.append(tile);
    }
  }

  function show(id, visible) {
    document.getElementById(id).hidden = !visible;
  }

  window.Render = { fmt, field, rows, tiles, show };
})();
