/* The live page: snapshots arrive over Server-Sent Events (/events) and are drawn with the
 * shared chart code (charts.js); at the end the final report replaces the live view. */
"use strict";
(function () {
  var points = [];
  var charts = null;

  function el(id) { return document.getElementById(id); }

  function text(tag, value, cls) {
    var e = document.createElement(tag);
    e.textContent = value;
    if (cls) e.className = cls;
    return e;
  }

  function fillRows(table, rows) {  // rows: [[cell, ...], ...]; cells: string or [string, cls]
    table.replaceChildren();
    rows.forEach(function (row, i) {
      var tr = document.createElement("tr");
      row.forEach(function (cell) {
        var c = Array.isArray(cell) ? cell : [cell, ""];
        tr.appendChild(text(i === 0 && table.dataset.header ? "th" : "td", c[0], c[1]));
      });
      table.appendChild(tr);
    });
  }

  function column(key) { return points.map(function (p) { return p[key]; }); }

  function specs() {
    var t = column("t");
    function series(pairs) {
      return pairs.map(function (p) { return { label: p[0], x: t, y: column(p[1]) }; });
    }
    return [
      { id: "rate", title: "Event rate: target vs achieved", x: { label: "time since start", unit: "s" },
        y: { label: "events", unit: "/s" }, series: series([["target", "target"], ["achieved", "achieved"]]) },
      { id: "latency", title: "Recommendation latency, last second (from intended send time)",
        x: { label: "time since start", unit: "s" }, y: { label: "latency", unit: "ms" },
        series: series([["p50", "p50"], ["p90", "p90"], ["p99", "p99"]]) },
      { id: "users", title: "CTR, conversion and abandonment", x: { label: "time since start", unit: "s" },
        y: { label: "share", unit: "%" },
        series: series([["CTR", "ctr"], ["conversion", "conversion"], ["abandonment (of ended)", "abandonment"]]) },
    ];
  }

  function draw() {
    var s = specs();
    if (charts === null) charts = RecLoopCharts.renderAll(el("charts"), s);
    else charts.forEach(function (c, i) { c.update(s[i]); });
  }

  function showLatest(latest) {
    if (!latest || latest.elapsed === undefined) return;
    el("progress").max = Math.max(latest.duration, 1e-9);
    el("progress").value = Math.min(latest.elapsed, latest.duration);
    el("clock").textContent = latest.elapsed.toFixed(1) + " / " + latest.duration.toFixed(0) + " s";
    fillRows(el("figures"), Object.keys(latest.figures).map(function (k) { return [k, latest.figures[k]]; }));
    var verdicts = latest.verdicts.map(function (v) {
      return [v.threshold, v.value, v.passed ? ["pass", "pass"] : ["FAIL", "fail"]];
    });
    el("verdicts").dataset.header = "1";
    fillRows(el("verdicts"), [["threshold", "measured", "verdict"]].concat(
      verdicts.length ? verdicts : [["none", "", ""]]));
    var cols = latest.sources.length ? Object.keys(latest.sources[0]) : [];
    el("sources").dataset.header = "1";
    fillRows(el("sources"), [cols].concat(latest.sources.map(function (r) {
      return cols.map(function (k) { return r[k]; });
    })));
    el("changes").dataset.header = "1";
    fillRows(el("changes"), [["at", "threshold", "now", "measured"]].concat(latest.changes.map(function (c) {
      return [c.t, c.threshold, c.passed ? ["pass", "pass"] : ["FAIL", "fail"], c.value];
    })));
  }

  function showFinal(final, source) {
    source.close();  // before the server goes away, so the browser does not retry
    el("status").textContent = "finished: " + final.status;
    el("status").className = final.status === "FAILED" || final.status === "ABORTED" ? "fail" : "pass";
    fetch(final.report).then(function (r) { return r.text(); }).then(function (html) {
      var frame = el("report");
      frame.srcdoc = html;
      frame.style.display = "block";
      el("live").style.display = "none";
      document.body.dataset.final = final.status;
    });
  }

  var source = new EventSource("events");
  source.addEventListener("state", function (e) {
    var s = JSON.parse(e.data);
    document.title = s.title;
    el("title").textContent = s.title;
    el("status").textContent = "running";
    fillRows(el("meta"), Object.keys(s.meta).map(function (k) { return [k, s.meta[k]]; }));
    el("scenario").textContent = JSON.stringify(s.scenario, null, 1);
    points = s.points;
    draw();
    showLatest(s.latest);
    if (s.final) showFinal(s.final, source);
  });
  source.addEventListener("tick", function (e) {
    var s = JSON.parse(e.data);
    points.push(s.point);
    draw();
    showLatest(s.latest);
  });
  source.addEventListener("final", function (e) { showFinal(JSON.parse(e.data), source); });
})();
