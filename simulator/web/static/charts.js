/* RecLoop's one chart code, shared by the live dashboard, report.html and compare.html.
 *
 * A chart is described by a spec (built in Python by recloop.simulator.web.charts, or by the
 * live page from its snapshots):
 *   {id, title, x: {label, unit, log}, y: {label, unit}, spanGaps,
 *    series: [{label, x: [...], y: [...]}]}
 * Units: "s" (seconds since start), "ms", "%" (values are shares 0..1, shown as percent),
 * "/s" (rates) or "" (plain). Axis ticks step by 1, 2 or 5 times a power of ten; every tick label
 * carries its unit. `null` y values leave gaps. Series with different x values are joined
 * onto one x axis (uPlot.join); spanGaps draws across the nulls that joining creates.
 */
"use strict";
var RecLoopCharts = (function () {
  var COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
                 "#ca8a04", "#be185d"];

  // Tick steps of 1, 2 and 5 x 10^n, so that a label has at most two significant digits.
  // uPlot's default steps also include 2.5 and 25, which gave labels such as "125 ms".
  var INCRS = [];
  for (var e = -6; e <= 9; e++) {
    [1, 2, 5].forEach(function (m) { INCRS.push(+(m * Math.pow(10, e)).toPrecision(1)); });
  }

  // A number without float noise (0.30000000000000004 -> 0.3), at most 6 significant digits.
  function clean(v) { return +(+v).toPrecision(6); }

  function format(v, unit) {
    if (v == null || !isFinite(v)) return v == null ? "–" : "∞";
    if (unit === "%") return clean(v * 100) + " %";
    if (unit === "ms") return clean(v) + " ms";
    if (unit === "s") return clean(v) + " s";
    if (unit === "/s") return clean(v) + " /s";
    return String(clean(v));
  }

  function isDecade(v) {
    var l = Math.log10(v);
    return Math.abs(l - Math.round(l)) < 1e-9;
  }

  function axisValues(unit, log, drawn) {
    return function (u, splits) {
      var labels = splits.map(function (v) {
        // A log axis has ticks at 1..9 x each decade: label only the decades, or they overlap.
        if (log && !isDecade(v)) return "";
        return format(v, unit);
      });
      drawn.length = 0;
      labels.forEach(function (l) { if (l) drawn.push(l); });
      return labels;
    };
  }

  function joined(spec) {
    var tables = spec.series.map(function (s) {
      var xs = [], ys = [];
      for (var i = 0; i < s.x.length; i++) {
        if (spec.x.log && !(s.x[i] > 0)) continue;  // log scale: only positive x
        xs.push(s.x[i]);
        ys.push(s.y[i] == null || !isFinite(s.y[i]) ? null : s.y[i]);
      }
      return [xs, ys];
    });
    if (!tables.length) return [[]];
    return uPlot.join(tables);
  }

  function countPoints(data) {
    var n = 0;
    for (var k = 1; k < data.length; k++)
      for (var i = 0; i < data[k].length; i++) if (data[k][i] != null) n++;
    return n;
  }

  function options(spec, width, ticks) {
    var yUnit = spec.y.unit || "", xUnit = spec.x.unit || "";
    var series = [{ label: spec.x.label, value: function (u, v) { return format(v, xUnit); } }];
    spec.series.forEach(function (s, k) {
      series.push({
        label: s.label,
        stroke: COLOURS[k % COLOURS.length],
        width: 1.6,
        spanGaps: !!spec.spanGaps,
        points: { show: false },
        value: function (u, v) { return format(v, yUnit); },
      });
    });
    return {
      title: spec.title,
      width: width,
      height: spec.height || 260,
      series: series,
      scales: {
        x: spec.x.log ? { time: false, distr: 3, log: 10 } : { time: false },
        y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.05 : 1]; } },
      },
      axes: [
        spec.x.log
          ? { label: spec.x.label, values: axisValues(xUnit, true, ticks.x), space: 50 }
          : { label: spec.x.label, values: axisValues(xUnit, false, ticks.x), space: 50,
              incrs: INCRS },
        { label: spec.y.label, values: axisValues(yUnit, false, ticks.y), size: 70, space: 30,
          incrs: INCRS },
      ],
      legend: { live: true },
    };
  }

  /* Draw `spec` into the element `el`; returns {update(spec), points()}. The element's
   * data-points, data-x-ticks and data-y-ticks say what was drawn (the canvas has no text). */
  function chart(el, spec) {
    var width = Math.max(320, Math.min(el.clientWidth || 620, 760));
    var data = joined(spec);
    var ticks = { x: [], y: [] };
    var opts = options(spec, width, ticks);
    opts.hooks = { draw: [function () {
      el.setAttribute("data-x-ticks", ticks.x.join("|"));
      el.setAttribute("data-y-ticks", ticks.y.join("|"));
    }] };
    var plot = new uPlot(opts, data, el);
    el.setAttribute("data-points", countPoints(data));
    return {
      plot: plot,
      update: function (next) {
        var d = joined(next);
        plot.setData(d);
        el.setAttribute("data-points", countPoints(d));
      },
      points: function () { return countPoints(plot.data); },
    };
  }

  /* Render every spec into a new div.chart inside `container`. */
  function renderAll(container, specs) {
    return specs.map(function (spec) {
      var div = document.createElement("div");
      div.className = "chart";
      div.id = spec.id;
      container.appendChild(div);
      return chart(div, spec);
    });
  }

  return { chart: chart, renderAll: renderAll, format: format, COLOURS: COLOURS };
})();
