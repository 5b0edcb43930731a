/* wattwise charts: one Plotly chart per metric with phase bands and note markers.
 * Used by the dashboard (data fetched from /api) and by `wattwise report` (data inlined in the page).
 * Needs Plotly (plotly.min.js, served from the installed plotly package; no CDN). */
(function (global) {
  "use strict";

  var PHASE_COLORS = ["rgba(66,133,244,0.10)", "rgba(52,168,83,0.10)", "rgba(251,188,5,0.13)",
    "rgba(234,67,53,0.09)", "rgba(155,81,224,0.10)", "rgba(0,172,193,0.10)"];

  function seconds(tUs, originUs) { return (tUs - originUs) / 1e6; }

  function phaseShapes(phases, originUs) {
    var shapes = [], annotations = [], k = 0;
    phases.forEach(function (p) {
      if (p.hidden) { return; }
      var sub = p.parent === "[RUNTIME]";
      var color = PHASE_COLORS[k++ % PHASE_COLORS.length];
      shapes.push({
        type: "rect", xref: "x", yref: "paper", layer: "below", line: { width: 0 },
        x0: seconds(p.start_us, originUs), x1: seconds(p.end_us, originUs),
        y0: sub ? 0 : 0, y1: sub ? 0.93 : 1, fillcolor: color
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

  function traces(s, originUs) {
    var x = s.t_us.map(function (t) { return seconds(t, originUs); });
    var out = [];
    if (s.min && s.max) {
      out.push({ x: x, y: s.max, mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false,
        type: "scatter" });
      out.push({ x: x, y: s.min, mode: "lines", line: { width: 0 }, fill: "tonexty",
        fillcolor: "rgba(31,119,180,0.18)", hoverinfo: "skip", showlegend: false, name: "min–max",
        type: "scatter" });
    }
    out.push({ x: x, y: s.mean, mode: "lines", line: { width: 1.5, color: "#1f77b4" }, name: s.label,
      hovertemplate: "%{x:.3f} s<br>%{y:.4g} " + s.unit + "<extra></extra>", showlegend: false,
      type: "scatter" });
    return out;
  }

  function layout(s, bands, notes, range) {
    var title = s.label + " (" + s.unit + ")" + (s.estimated ? " ≈ estimated" : "") +
      (s.downsampled ? " — " + s.points + " points from " + s.samples + " samples" : "");
    var l = {
      title: { text: title, font: { size: 13 }, x: 0, xanchor: "left" },
      height: 210, margin: { l: 60, r: 15, t: 42, b: 30 },
      xaxis: { title: { text: "" }, ticksuffix: " s", zeroline: false },
      yaxis: { zeroline: false, rangemode: "tozero" },
      shapes: bands.shapes.concat(notes.shapes), annotations: bands.annotations.slice(),
      hovermode: "x", plot_bgcolor: "#fff", paper_bgcolor: "#fff"
    };
    if (range) { l.xaxis.range = range; l.xaxis.autorange = false; }
    return l;
  }

  /* data: {phases: [...], notes: [...], series: [...], origin_us?}; container: an element.
     options.onZoom(startUs, endUs) is called after a zoom (null, null on reset) when given. */
  function renderRun(container, data, options) {
    options = options || {};
    var originUs = data.origin_us;
    if (originUs === undefined || originUs === null) {
      originUs = data.phases.length ? Math.min.apply(null, data.phases.map(function (p) { return p.start_us; }))
        : (data.series.length && data.series[0].t_us.length ? data.series[0].t_us[0] : 0);
    }
    var bands = phaseShapes(data.phases, originUs);
    var notes = noteShapes(data.notes || [], originUs);
    container.innerHTML = "";
    var divs = [];
    var current = options.range ? options.range.slice() : null;  // the x range all charts show
    function same(a, b) {
      if (a === null || b === null) { return a === b; }
      return Math.abs(a[0] - b[0]) < 1e-9 && Math.abs(a[1] - b[1]) < 1e-9;
    }
    data.series.forEach(function (s) {
      var div = document.createElement("div");
      div.className = "ww-chart";
      div.setAttribute("data-metric", s.label);
      container.appendChild(div);
      var t = traces(s, originUs);
      if (notes.hover.x.length) {
        t.push({ x: notes.hover.x, y: notes.hover.x.map(function () { return 0; }), mode: "markers",
          marker: { symbol: "triangle-up", size: 9, color: "rgba(160,80,0,0.85)" }, yaxis: "y",
          text: notes.hover.text, hovertemplate: "%{text}<extra>note</extra>", showlegend: false,
          type: "scatter", cliponaxis: false });
      }
      global.Plotly.newPlot(div, t, layout(s, bands, notes, options.range), {
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
    container.setAttribute("data-rendered", String(divs.length));
    return { originUs: originUs, divs: divs };
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

  global.wattwise = { renderRun: renderRun, barChart: barChart };
})(window);
