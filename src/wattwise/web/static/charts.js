/* wattwise charts: the run's measurements over time with phase bands and note markers.
 * Used by the dashboard (data fetched from /api, drawn with Plotly) and by `wattwise report` (data inlined,
 * drawn as plain SVG by this file: no chart library, so a report stays small and opens offline).
 *
 * plan(series) turns the metric list into charts: human titles and units come from the server
 * (web/series.py describe_metric); per-component power (RAPL package/DRAM, GPU) is one stacked chart with
 * the machine's own power (IPMI or estimate) as a line over it; series that are zero throughout are not
 * drawn but listed. */
(function (global) {
  "use strict";

  var PHASE_COLORS = ["rgba(66,133,244,0.10)", "rgba(52,168,83,0.10)", "rgba(251,188,5,0.13)",
    "rgba(234,67,53,0.09)", "rgba(155,81,224,0.10)", "rgba(0,172,193,0.10)"];
  var LINE_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

  function seconds(tUs, originUs) { return (tUs - originUs) / 1e6; }

  function titleOf(s) { return s.title || s.label; }

  /* interpolate (xs, ys) at x (linear, null outside or across gaps) */
  function valueAt(xs, ys, x) {
    if (!xs.length || x < xs[0] || x > xs[xs.length - 1]) { return null; }
    var lo = 0, hi = xs.length - 1;
    while (hi - lo > 1) { var mid = (lo + hi) >> 1; if (xs[mid] <= x) { lo = mid; } else { hi = mid; } }
    if (ys[lo] === null || ys[hi] === null) { return ys[lo] === null ? ys[hi] : ys[lo]; }
    if (xs[hi] === xs[lo]) { return ys[lo]; }
    return ys[lo] + (ys[hi] - ys[lo]) * (x - xs[lo]) / (xs[hi] - xs[lo]);
  }

  /* charts: [{title, unit, estimated, stacked, members: [series], note}] and the zero series */
  function plan(series) {
    var charts = [], zero = [], power = null;
    series.forEach(function (s) {
      if (s.all_zero) { zero.push(s); return; }
      if (s.group === "power") {
        if (!power) {
          power = { title: "Power by component", unit: "W", estimated: false, stacked: true, members: [] };
          charts.push(power);
        }
        power.members.push(s);
        power.estimated = power.estimated || s.estimated;
        return;
      }
      charts.push({ title: titleOf(s), unit: s.unit, estimated: s.estimated, stacked: false, members: [s] });
    });
    if (power) {
      var parts = power.members.filter(function (s) { return s.stack; });
      if (power.members.length === 1) { power.title = titleOf(power.members[0]); power.stacked = false; }
      else if (!parts.length) { power.title = "Machine power"; power.stacked = false; }
    }
    return { charts: charts, zero: zero };
  }

  /* the stacked members' cumulative values on the first stacked member's time grid */
  function stackedTraces(chart, originUs) {
    var parts = chart.members.filter(function (s) { return s.stack && s.t_us.length; });
    var lines = chart.members.filter(function (s) { return !s.stack; });
    var out = [];
    if (parts.length) {
      var x = parts[0].t_us.map(function (t) { return seconds(t, originUs); });
      var base = x.map(function () { return 0; });
      parts.forEach(function (s) {
        var sx = s.t_us.map(function (t) { return seconds(t, originUs); });
        var own = x.map(function (xi) { var v = valueAt(sx, s.mean, xi); return v === null ? 0 : v; });
        var top = base.map(function (b, i) { return b + own[i]; });
        out.push({ name: titleOf(s), x: x, y: top, own: own, base: base, area: true });
        base = top;
      });
    }
    lines.forEach(function (s) {
      out.push({ name: titleOf(s), x: s.t_us.map(function (t) { return seconds(t, originUs); }), y: s.mean,
        own: s.mean, area: false });
    });
    return out;
  }

  function simpleTraces(chart, originUs) {
    var s = chart.members[0];
    var x = s.t_us.map(function (t) { return seconds(t, originUs); });
    return [{ name: titleOf(s), x: x, y: s.mean, own: s.mean, min: s.min, max: s.max, area: false }];
  }

  function chartTitle(chart) {
    var s = chart.members[0];
    var extra = chart.members.length === 1 && s.downsampled ? " — " + s.points + " points from " + s.samples +
      " samples" : "";
    return chart.title + " (" + chart.unit + ")" + (chart.estimated ? " ≈ estimated" : "") + extra;
  }

  function originOf(data) {
    var originUs = data.origin_us;
    if (originUs === undefined || originUs === null) {
      originUs = data.phases.length ? Math.min.apply(null, data.phases.map(function (p) { return p.start_us; }))
        : (data.series.length && data.series[0].t_us.length ? data.series[0].t_us[0] : 0);
    }
    return originUs;
  }

  function zeroNote(container, zero) {
    if (!zero.length) { return; }
    var d = document.createElement("details");
    d.className = "ww-zero";
    var names = zero.map(function (s) { return titleOf(s); }).join(", ");
    d.innerHTML = "<summary class=\"muted\">" + zero.length + " metric" + (zero.length > 1 ? "s" : "") +
      " zero throughout, not drawn</summary>";
    var p = document.createElement("p");
    p.className = "muted";
    p.textContent = names;
    d.appendChild(p);
    container.appendChild(d);
  }

  /* ---------------------------------------------------------------- Plotly (dashboard) */

  function phaseShapes(phases, originUs) {
    var shapes = [], annotations = [], k = 0;
    phases.forEach(function (p) {
      if (p.hidden) { return; }
      var sub = p.parent === "[RUNTIME]";
      var color = PHASE_COLORS[k++ % PHASE_COLORS.length];
      shapes.push({
        type: "rect", xref: "x", yref: "paper", layer: "below", line: { width: 0 },
        x0: seconds(p.start_us, originUs), x1: seconds(p.end_us, originUs),
        y0: 0, y1: sub ? 0.93 : 1, fillcolor: color
      });
      annotations.push({
        xref: "x", yref: "paper", x: seconds((p.start_us + p.end_us) / 2, originUs), y: sub ? 0.93 : 1.0,
        yanchor: "bottom", showarrow: false, text: p.name, font: { size: 10, color: "#555" }
      });
    });
    return { shapes: shapes, annotations: annotations };
  }

  function noteShapes(notes, originUs) {
    var shapes = [], hover = { x: [], text: [] };
    notes.forEach(function (n) {
      var x = seconds(n.t_us, originUs);
      shapes.push({ type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1,
        line: { color: "rgba(120,60,0,0.55)", width: 1, dash: "dot" } });
      hover.x.push(x);
      hover.text.push((n.source ? "[" + n.source + "] " : "") + n.text);
    });
    return { shapes: shapes, hover: hover };
  }

  function plotlyTraces(chart, originUs) {
    var out = [];
    var unit = chart.unit;
    var list = chart.stacked ? stackedTraces(chart, originUs) : simpleTraces(chart, originUs);
    list.forEach(function (t, i) {
      var color = LINE_COLORS[i % LINE_COLORS.length];
      if (t.min && t.max) {
        out.push({ x: t.x, y: t.max, mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false,
          type: "scatter" });
        out.push({ x: t.x, y: t.min, mode: "lines", line: { width: 0 }, fill: "tonexty",
          fillcolor: "rgba(31,119,180,0.18)", hoverinfo: "skip", showlegend: false, name: "min–max",
          type: "scatter" });
      }
      out.push({ x: t.x, y: t.y, customdata: t.own, mode: "lines", type: "scatter", name: t.name,
        line: { width: t.area ? 0.5 : 1.5, color: t.area ? color : (chart.stacked ? "#222" : color),
          dash: !t.area && chart.stacked ? "dot" : "solid" },
        fill: t.area ? (i === 0 ? "tozeroy" : "tonexty") : "none",
        hovertemplate: (chart.stacked ? t.name + ": " : "") + "%{customdata:.4g} " + unit + "<extra></extra>",
        showlegend: chart.stacked });
    });
    return out;
  }

  function layout(chart, bands, notes, range) {
    var l = {
      title: { text: chartTitle(chart), font: { size: 13 }, x: 0, xanchor: "left" },
      height: chart.stacked ? 280 : 210, margin: { l: 60, r: 15, t: 42, b: chart.stacked ? 52 : 30 },
      xaxis: { title: { text: "" }, ticksuffix: " s", zeroline: false },
      yaxis: { zeroline: false, rangemode: "tozero", tickformat: "~s" },
      shapes: bands.shapes.concat(notes.shapes), annotations: bands.annotations.slice(),
      hovermode: "x", plot_bgcolor: "#fff", paper_bgcolor: "#fff",
      legend: { orientation: "h", x: 0, xanchor: "left", y: -0.14, yanchor: "top", font: { size: 10 } }
    };
    if (range) { l.xaxis.range = range; l.xaxis.autorange = false; }
    return l;
  }

  function renderPlotly(container, data, options) {
    var originUs = originOf(data);
    var bands = phaseShapes(data.phases, originUs);
    var notes = noteShapes(data.notes || [], originUs);
    var planned = plan(data.series);
    container.innerHTML = "";
    var divs = [];
    var current = options.range ? options.range.slice() : null;  // the x range all charts show
    function same(a, b) {
      if (a === null || b === null) { return a === b; }
      return Math.abs(a[0] - b[0]) < 1e-9 && Math.abs(a[1] - b[1]) < 1e-9;
    }
    planned.charts.forEach(function (chart) {
      var div = document.createElement("div");
      div.className = "ww-chart";
      div.setAttribute("data-metric", chart.members.map(function (s) { return s.label; }).join(" "));
      container.appendChild(div);
      var t = plotlyTraces(chart, originUs);
      if (notes.hover.x.length) {
        t.push({ x: notes.hover.x, y: notes.hover.x.map(function () { return 0; }), mode: "markers",
          marker: { symbol: "triangle-up", size: 9, color: "rgba(160,80,0,0.85)" }, yaxis: "y",
          text: notes.hover.text, hovertemplate: "%{text}<extra>note</extra>", showlegend: false,
          type: "scatter", cliponaxis: false });
      }
      global.Plotly.newPlot(div, t, layout(chart, bands, notes, options.range), {
        responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"]
      });
      divs.push(div);
      div.on("plotly_relayout", function (ev) {
        var r = null;
        if (ev["xaxis.range[0]"] !== undefined) { r = [+ev["xaxis.range[0]"], +ev["xaxis.range[1]"]]; }
        else if (ev["xaxis.range"]) { r = [+ev["xaxis.range"][0], +ev["xaxis.range"][1]]; }
        var reset = ev["xaxis.autorange"] === true;
        if (!r && !reset) { return; }
        // the other charts' relayouts below raise this event again (asynchronously): stop there
        if (same(r, current)) { return; }
        current = r;
        divs.forEach(function (other) {
          if (other !== div) {
            global.Plotly.relayout(other, r ? { "xaxis.range": r } : { "xaxis.autorange": true });
          }
        });
        if (options.onZoom) {
          if (r) { options.onZoom(originUs + r[0] * 1e6, originUs + r[1] * 1e6, r); }
          else { options.onZoom(null, null, null); }
        }
      });
    });
    zeroNote(container, planned.zero);
    container.setAttribute("data-series", String(data.series.length - planned.zero.length));
    container.setAttribute("data-rendered", String(divs.length));
    return { originUs: originUs, divs: divs };
  }

  /* ---------------------------------------------------------------- plain SVG (report) */

  var SVGNS = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVGNS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function si(v) {
    if (v === null || v === undefined || !isFinite(v)) { return "–"; }
    var a = Math.abs(v);
    var p = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"], [1, ""], [1e-3, "m"], [1e-6, "µ"], [1e-9, "n"]];
    if (a === 0) { return "0"; }
    for (var i = 0; i < p.length; i++) {
      if (a >= p[i][0]) { return +(v / p[i][0]).toPrecision(3) + p[i][1]; }
    }
    return v.toPrecision(3);
  }

  function niceTicks(lo, hi, n) {
    var span = hi - lo || 1;
    var step = Math.pow(10, Math.floor(Math.log10(span / n)));
    [1, 2, 5, 10].some(function (m) { if (span / (step * m) <= n) { step *= m; return true; } return false; });
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) { out.push(v); }
    return out;
  }

  function pathOf(xs, ys, sx, sy) {
    var d = "", pen = false;
    for (var i = 0; i < xs.length; i++) {
      if (ys[i] === null || ys[i] === undefined) { pen = false; continue; }
      d += (pen ? "L" : "M") + sx(xs[i]).toFixed(1) + " " + sy(ys[i]).toFixed(1);
      pen = true;
    }
    return d;
  }

  function renderSvgChart(div, chart, data, originUs) {
    var W = Math.max(400, div.clientWidth || 1000), H = chart.stacked ? 250 : 200;
    var m = { l: 62, r: 14, t: 30, b: 24 };
    var traces = chart.stacked ? stackedTraces(chart, originUs) : simpleTraces(chart, originUs);
    var x0 = Infinity, x1 = -Infinity, y1 = 0, y0 = 0;
    traces.forEach(function (t) {
      t.x.forEach(function (x) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); });
      (t.max || t.y).forEach(function (y) { if (y !== null) { y1 = Math.max(y1, y); } });
      (t.min || t.y).forEach(function (y) { if (y !== null) { y0 = Math.min(y0, y); } });
    });
    data.phases.forEach(function (p) {
      if (!p.hidden) { x0 = Math.min(x0, seconds(p.start_us, originUs)); x1 = Math.max(x1, seconds(p.end_us, originUs)); }
    });
    if (!isFinite(x0)) { x0 = 0; x1 = 1; }
    if (x1 === x0) { x1 = x0 + 1; }
    if (y1 === y0) { y1 = y0 + 1; }
    y1 *= 1.05;
    var sx = function (x) { return m.l + (x - x0) / (x1 - x0) * (W - m.l - m.r); };
    var sy = function (y) { return H - m.b - (y - y0) / (y1 - y0) * (H - m.t - m.b); };
    var svg = el("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, "class": "ww-svg" }, div);
    el("text", { x: 8, y: 16, "class": "ww-title" }, svg).textContent = chartTitle(chart);
    var k = 0;
    data.phases.forEach(function (p) {
      if (p.hidden) { return; }
      var a = sx(seconds(p.start_us, originUs)), b = sx(seconds(p.end_us, originUs));
      var top = p.parent === "[RUNTIME]" ? m.t + 12 : m.t;
      el("rect", { x: a, y: top, width: Math.max(0, b - a), height: H - m.b - top,
        fill: PHASE_COLORS[k++ % PHASE_COLORS.length] }, svg);
      el("text", { x: (a + b) / 2, y: top + 9, "class": "ww-phase", "text-anchor": "middle" }, svg).textContent = p.name;
    });
    niceTicks(y0, y1, 4).forEach(function (v) {
      el("line", { x1: m.l, x2: W - m.r, y1: sy(v), y2: sy(v), "class": "ww-grid" }, svg);
      el("text", { x: m.l - 6, y: sy(v) + 4, "class": "ww-tick", "text-anchor": "end" }, svg).textContent = si(v);
    });
    niceTicks(x0, x1, 10).forEach(function (v) {
      el("text", { x: sx(v), y: H - 8, "class": "ww-tick", "text-anchor": "middle" }, svg).textContent = si(v) + " s";
    });
    traces.forEach(function (t, i) {
      var color = LINE_COLORS[i % LINE_COLORS.length];
      if (t.min && t.max) {
        var band = pathOf(t.x, t.max, sx, sy);
        var back = pathOf(t.x.slice().reverse(), t.min.slice().reverse(), sx, sy).replace(/^M/, "L");
        el("path", { d: band + back + "Z", fill: "rgba(31,119,180,0.18)", stroke: "none" }, svg);
      }
      if (t.area) {
        var upper = pathOf(t.x, t.y, sx, sy);
        var lower = pathOf(t.x.slice().reverse(), t.base.slice().reverse(), sx, sy).replace(/^M/, "L");
        el("path", { d: upper + lower + "Z", fill: color, "fill-opacity": 0.35, stroke: color, "stroke-width": 0.8 }, svg);
      } else {
        el("path", { d: pathOf(t.x, t.y, sx, sy), fill: "none", stroke: chart.stacked ? "#222" : color,
          "stroke-width": 1.5, "stroke-dasharray": chart.stacked ? "4 3" : "none" }, svg);
      }
    });
    (data.notes || []).forEach(function (n) {
      var x = sx(seconds(n.t_us, originUs));
      var line = el("line", { x1: x, x2: x, y1: m.t, y2: H - m.b, "class": "ww-note" }, svg);
      el("title", {}, line).textContent = (n.source ? "[" + n.source + "] " : "") + n.text;
    });
    if (chart.stacked) {
      var lx = W - m.r;
      traces.slice().reverse().forEach(function (t, j) {
        var i = traces.length - 1 - j;
        var label = el("text", { x: lx, y: 16, "class": "ww-legend", "text-anchor": "end",
          fill: t.area ? LINE_COLORS[i % LINE_COLORS.length] : "#222" }, svg);
        label.textContent = (t.area ? "■ " : "┄ ") + t.name;
        lx -= label.getComputedTextLength ? label.getComputedTextLength() + 14 : 160;
      });
    }
    // hover: a cursor line and every trace's value at that time
    var cursor = el("line", { y1: m.t, y2: H - m.b, "class": "ww-cursor", visibility: "hidden" }, svg);
    var readout = el("text", { y: m.t + 12, "class": "ww-readout", visibility: "hidden" }, svg);
    svg.addEventListener("mousemove", function (ev) {
      var box = svg.getBoundingClientRect();
      var px = (ev.clientX - box.left) * W / box.width;
      if (px < m.l || px > W - m.r) { cursor.setAttribute("visibility", "hidden"); readout.setAttribute("visibility", "hidden"); return; }
      var x = x0 + (px - m.l) / (W - m.l - m.r) * (x1 - x0);
      var parts = traces.map(function (t) {
        return (traces.length > 1 ? t.name + " " : "") + si(valueAt(t.x, t.own, x)) + " " + chart.unit;
      });
      cursor.setAttribute("x1", px); cursor.setAttribute("x2", px); cursor.setAttribute("visibility", "visible");
      readout.textContent = x.toFixed(2) + " s: " + parts.join(", ");
      readout.setAttribute("x", px > W / 2 ? px - 6 : px + 6);
      readout.setAttribute("text-anchor", px > W / 2 ? "end" : "start");
      readout.setAttribute("visibility", "visible");
    });
    svg.addEventListener("mouseleave", function () {
      cursor.setAttribute("visibility", "hidden"); readout.setAttribute("visibility", "hidden");
    });
  }

  function renderSvg(container, data) {
    var originUs = originOf(data);
    var planned = plan(data.series);
    container.innerHTML = "";
    var divs = [];
    planned.charts.forEach(function (chart) {
      var div = document.createElement("div");
      div.className = "ww-chart";
      div.setAttribute("data-metric", chart.members.map(function (s) { return s.label; }).join(" "));
      container.appendChild(div);
      renderSvgChart(div, chart, data, originUs);
      divs.push(div);
    });
    zeroNote(container, planned.zero);
    container.setAttribute("data-series", String(data.series.length - planned.zero.length));
    container.setAttribute("data-rendered", String(divs.length));
    return { originUs: originUs, divs: divs };
  }

  /* data: {phases: [...], notes: [...], series: [...], origin_us?}; container: an element.
     options.onZoom(startUs, endUs) is called after a zoom (null, null on reset) when given (Plotly only). */
  function renderRun(container, data, options) {
    options = options || {};
    if (global.Plotly && !options.svg) { return renderPlotly(container, data, options); }
    return renderSvg(container, data);
  }

  function barChart(div, labels, values, title, unit, errors) {
    var trace = { type: "bar", x: labels, y: values, marker: { color: "#1f77b4" },
      hovertemplate: "%{x}: %{y:.4g} " + unit + "<extra></extra>" };
    if (errors) { trace.error_y = { type: "data", symmetric: false, array: errors.plus, arrayminus: errors.minus }; }
    global.Plotly.newPlot(div, [trace], {
      title: { text: title, font: { size: 13 }, x: 0, xanchor: "left" }, height: 260,
      margin: { l: 60, r: 15, t: 40, b: 60 }, yaxis: { title: { text: unit } }
    }, { responsive: true, displaylogo: false });
  }

  global.wattwise = { renderRun: renderRun, barChart: barChart, plan: plan, valueAt: valueAt };
})(window);
