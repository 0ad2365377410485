// ares-stream monitor: renders each snapshot the server pushes (server-sent events).
// Everything read from the database reaches the page through textContent, never as HTML.
"use strict";

const COLORS = { online: "#2e86c1", booster: "#d68910", forecast: "#7d3c98",
                 baseline: "#7f8c8d", equity: "#1e8449", drawdown: "#c0392b" };
const charts = {};
let driftTimes = [];

function $(id) { return document.getElementById(id); }
function setText(id, text) { $(id).textContent = text; }

function fmtTime(ns) {
  if (ns === null || ns === undefined) return "–";
  return new Date(ns / 1e6).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}
function num(v, digits) {
  return v === null || v === undefined ? "–" : Number(v).toFixed(digits);
}
function pct(v, digits = 2) {
  return v === null || v === undefined ? "–" : (100 * v).toFixed(digits) + " %";
}
function signed(v, digits) {
  return v === null || v === undefined ? "–" : (v >= 0 ? "+" : "") + Number(v).toFixed(digits);
}

// A table from columns [[header, row => text, className?], ...]; "none yet" when empty.
function fillTable(id, columns, rows, empty = "none yet") {
  const table = $(id);
  table.replaceChildren();
  if (!rows || rows.length === 0) {
    const td = table.insertRow().insertCell();
    td.className = "empty";
    td.textContent = empty;
    return;
  }
  const head = table.createTHead().insertRow();
  for (const [title] of columns) {
    const th = document.createElement("th");
    th.textContent = title;
    head.appendChild(th);
  }
  const body = table.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    for (const [, cell, cls] of columns) {
      const td = tr.insertCell();
      td.textContent = cell(row);
      if (cls) td.className = typeof cls === "function" ? cls(row) : cls;
    }
  }
}

// Vertical dashed lines at the drift events' times, drawn on a chart's canvas.
function driftMarks(u) {
  const { ctx, bbox } = u;
  ctx.save();
  ctx.strokeStyle = COLORS.drawdown;
  ctx.setLineDash([5, 4]);
  ctx.lineWidth = 1;
  for (const t of driftTimes) {
    if (t < u.scales.x.min || t > u.scales.x.max) continue;
    const x = Math.round(u.valToPos(t, "x", true));
    ctx.beginPath();
    ctx.moveTo(x, bbox.top);
    ctx.lineTo(x, bbox.top + bbox.height);
    ctx.stroke();
  }
  ctx.restore();
}

function chartWidth(el) { return Math.max(300, el.clientWidth - 4); }

// Create the chart on the first data, then only swap its data.
function plot(id, series, axes, data) {
  const el = $(id);
  if (data[0].length === 0) {
    if (charts[id]) { charts[id].destroy(); delete charts[id]; }
    return;
  }
  if (!charts[id]) {
    el.replaceChildren();
    charts[id] = new uPlot({
      width: chartWidth(el), height: 260,
      scales: { x: { time: true } },
      tzDate: ts => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),  // the page's times are UTC
      series: [{}, ...series],
      axes: [{}, ...axes],
      hooks: { draw: [driftMarks] },
    }, data, el);
  } else {
    charts[id].setData(data);
  }
}

function renderCharts(s) {
  driftTimes = (s.drift || []).map(d => d.ts_event_ns / 1e9);
  const eq = s.equity || { t: [], equity: [], drawdown: [] };
  plot("chart-equity", [
    { label: "equity", stroke: COLORS.equity, width: 1.5 },
    { label: "drawdown %", stroke: COLORS.drawdown, scale: "dd", width: 1,
      fill: "rgba(192,57,43,0.08)" },
  ], [{ size: 80 }, { scale: "dd", side: 1, size: 60, grid: { show: false } }],
  [eq.t, eq.equity, eq.drawdown]);
  const loss = s.loss || { t: [], series: {}, means: {} };
  const names = ["online", "booster", "forecast", "baseline"];
  plot("chart-loss", names.map(n => ({
    label: n, stroke: COLORS[n], width: n === "baseline" ? 1 : 1.5,
    dash: n === "baseline" ? [4, 4] : undefined,
  })), [{ size: 60 }], [loss.t, ...names.map(n => loss.series[n] || loss.t.map(() => null))]);
  const means = names.map(n => `${n} ${num(loss.means && loss.means[n], 4)}`).join(" · ");
  setText("loss-note", `Each model's mean log loss over its last ${loss.window || "–"} ` +
    `labelled predictions (lower is better; under the dashed baseline beats guessing the ` +
    `label frequency). Over the window shown: ${means}. Red dashed lines: drift events.`);
}

function renderCards(s) {
  const p = s.pnl;
  setText("equity", p ? num(p.equity, 2) : "–");
  setText("return", p ? `${signed(p.return * 100, 2)} % since ${num(p.start_equity, 2)}, ` +
    `fees ${num(p.fees, 2)}` : "no equity marks yet");
  setText("drawdown", p ? pct(p.drawdown) : "–");
  setText("max-drawdown", p ? `worst ${pct(p.max_drawdown)}` : "");
  const bar = s.last_bar;
  setText("last-bar", bar ? fmtTime(bar.ts_event_ns) : "–");
  setText("last-bar-detail", bar ? `${bar.symbol} close ${bar.close} · P(up) ` +
    `${num(bar.proba, 3)}` : "no bar yet");
  const run = s.run;
  setText("run", run ? `#${run.id} ${run.mode}` : "–");
  setText("run-detail", run ? `${run.status}, started ${fmtTime(run.started_at_ns)} · ` +
    `${(run.symbols || []).join(", ") || "no symbol yet"}` : "");
  const lag = s.feed && s.feed.lag;
  setText("lag", lag ? `${num(lag.p50_ms, 2)} / ${num(lag.p99_ms, 2)} / ${num(lag.max_ms, 2)} ms`
    : "–");
  setText("lag-detail", lag ? `${lag.frames} frames, period ending ${fmtTime(lag.ts_ns)}`
    : "none recorded (a replay records none)");
}

function renderTables(s) {
  fillTable("positions", [["symbol", r => r.symbol], ["qty", r => num(r.qty, 6), "num"],
    ["avg price", r => num(r.avg_price, 2), "num"],
    ["realized PnL", r => signed(r.realized_pnl, 2), "num"],
    ["at", r => fmtTime(r.ts_event_ns)]], s.positions);
  fillTable("signal", [["symbol", r => r.symbol], ["", r => (r.trading ? "trading" : "flat")],
    ["why", r => r.reason, "wrap"], ["since", r => fmtTime(r.ts_event_ns)]], s.signal);
  fillTable("fills", [["time", r => fmtTime(r.ts_event_ns)], ["symbol", r => r.symbol],
    ["side", r => r.side, r => (r.side === "BUY" ? "pos" : "neg")],
    ["qty", r => num(r.qty, 6), "num"], ["price", r => num(r.price, 2), "num"],
    ["fee", r => num(r.fee, 4), "num"], ["slip bps", r => num(r.slippage_bps, 2), "num"]],
    s.fills);
  fillTable("drift", [["time", r => fmtTime(r.ts_event_ns)], ["symbol", r => r.symbol],
    ["detector", r => r.detector],
    ["mean loss", r => `${num(r.mean_before, 4)} → ${num(r.mean_after, 4)}`],
    ["action", r => r.action]], s.drift);
  const fd = s.feature_drift || { checks: [], drifted: [] };
  setText("feature-checks", fd.checks.length ? "Newest check: " + fd.checks.map(c =>
    `${c.symbol} at ${fmtTime(c.ts_event_ns)}, ${c.drifted} of ${c.features} features above ` +
    "threshold").join("; ") : "no feature-drift check yet");
  fillTable("feature-drift", [["symbol", r => r.symbol], ["feature", r => r.feature],
    ["PSI", r => num(r.psi, 3), "num"], ["threshold", r => num(r.threshold, 3), "num"],
    ["KS", r => num(r.ks, 3), "num"]], fd.drifted, "no feature above its threshold");
  const models = [["symbol", r => r.symbol], ["kind", r => r.kind],
    ["version", r => `v${r.version} (#${r.id})`], ["how", r => r.how],
    ["trees", r => (r.n_trees === null ? "–" : String(r.n_trees)), "num"],
    ["rows", r => String(r.rows), "num"], ["created", r => fmtTime(r.created_ns)]];
  fillTable("champions", models, s.champions);
  fillTable("candidates", models, s.candidates);
  fillTable("validations", [["time", r => fmtTime(r.ts_event_ns)], ["symbol", r => r.symbol],
    ["decision", r => (r.promoted ? "promoted" : "kept"), r => (r.promoted ? "pos" : "")],
    ["challenger", r => `${r.challenger} ${num(r.challenger_loss, 4)}`],
    ["incumbent", r => `${r.incumbent} ${num(r.incumbent_loss, 4)}`],
    ["improvement", r => num(r.improvement, 4), "num"], ["reason", r => r.reason, "wrap"]],
    s.validations);
  const feed = s.feed || { total: {}, last_hour: {} };
  fillTable("feed", [["", r => r], ["last hour", r => String(feed.last_hour[r]), "num"],
    ["run", r => String(feed.total[r]), "num"]], Object.keys(feed.total || {}));
}

function render(s) {
  setText("db", s.db || "");
  const live = s.state === "live";
  $("waiting").hidden = s.state !== "waiting";
  $("error").hidden = s.state !== "error";
  setText("waiting-reason", s.state === "waiting" ? s.reason : "");
  setText("error", s.state === "error" ? s.reason : "");
  if (live) {
    renderCards(s);
    renderTables(s);
    renderCharts(s);
  }
  setText("updated", new Date().toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z"));
  document.body.dataset.state = s.state;
  document.body.dataset.version = String(s.version);
}

function connect() {
  const badge = $("conn");
  const events = new EventSource("api/events");
  events.addEventListener("snapshot", e => render(JSON.parse(e.data)));
  events.onopen = () => { badge.textContent = "live"; badge.className = "badge live"; };
  events.onerror = () => { badge.textContent = "reconnecting…"; badge.className = "badge down"; };
}

window.addEventListener("resize", () => {
  for (const [id, chart] of Object.entries(charts)) {
    chart.setSize({ width: chartWidth($(id)), height: 260 });
  }
});
connect();
