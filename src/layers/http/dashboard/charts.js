"use strict";
// A thin layer over uPlot: charts sized to their container (one column on a phone), coloured from the page's CSS
// variables (light or dark), redrawn when the colour scheme flips, and able to say how many points they show (the
// browser test reads that from window.__dashboard).
(function () {
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const palette = () => ["--c1", "--c2", "--c3", "--c4", "--c5"].map(css);
  const all = [];

  const widthOf = (el) => Math.max(200, Math.floor(el.clientWidth || el.parentElement.clientWidth) - 4);

  function options(el, spec) {
    const colors = palette();
    const muted = css("--muted");
    const line = css("--line");
    const axis = { stroke: muted, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
    const bars = spec.bars && uPlot.paths && uPlot.paths.bars;
    return {
      width: widthOf(el),
      height: spec.height || 200,
      scales: {
        x: spec.time ? { time: true } : { time: false, range: (u, min, max) => [min - 0.6, max + 0.6] },
        y: spec.yRange ? { range: spec.yRange } : { auto: true }
      },
      axes: [
        spec.time ? axis : { ...axis, incrs: [1, 2, 5, 10, 20, 50, 100], values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) ? String(t) : "")) },
        { ...axis, size: 56, values: spec.yValues || ((u, ticks) => ticks.map((t) => shortNumber(t))) }
      ],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      series: [
        { label: spec.xLabel || (spec.time ? "time" : "round"), value: spec.xValue },
        ...spec.series.map((s, i) => ({
          label: s.label,
          stroke: colors[(s.color ?? i) % colors.length],
          width: 2,
          dash: s.dash,
          value: s.value,
          points: { show: spec.points !== false && !bars, size: 5 },
          fill: bars ? colors[(s.color ?? i) % colors.length] + "99" : undefined,
          paths: bars ? uPlot.paths.bars({ size: [0.35, 40], align: i === 0 ? -1 : 1 }) : undefined,
          spanGaps: true
        }))
      ]
    };
  }

  function shortNumber(n) {
    const a = Math.abs(n);
    if (a >= 1e9) return (n / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (a >= 1e3) return (n / 1e3).toFixed(1) + "k";
    return String(Math.round(n * 1000) / 1000);
  }

  /** A chart in `el`; `set(data)` with uPlot's columns ([xs, ys1, ys2, …]) draws it. */
  function chart(el, spec) {
    let plot = null;
    let data = [[], ...spec.series.map(() => [])];
    const build = () => {
      if (plot) plot.destroy();
      el.textContent = "";
      plot = new uPlot(options(el, spec), data, el);
    };
    const self = {
      set(next) {
        data = next;
        if (!plot) build();
        else plot.setData(data);
      },
      /** Points drawn, over every series (nulls are gaps, not points). */
      points() {
        return data.slice(1).reduce((n, ys) => n + ys.filter((y) => y !== null && y !== undefined).length, 0);
      },
      resize() {
        if (plot) plot.setSize({ width: widthOf(el), height: spec.height || 200 });
      },
      rebuild: build,
      /** The uPlot instance, for a look from the console. */
      plot: () => plot
    };
    all.push(self);
    return self;
  }

  let pending = 0;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => all.forEach((c) => c.resize()));
  });
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => all.forEach((c) => c.rebuild()));

  window.Charts = { chart, shortNumber };
})();
