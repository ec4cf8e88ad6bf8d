// daq-engine monitor page: numbers from /events (server-sent events), plots from /trace and
// /histograms (polled twice a second), controls posted to /control/<action>.
"use strict";
// With a token: open the page as http://HOST:PORT/#token=TOKEN. The fragment never leaves
// the browser; the page trades it once for an HttpOnly cookie (POST /session) that its event
// stream and requests then carry, and removes it from the address bar.
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const $ = (id) => document.getElementById(id);
const fmt = (x, d = 0) => (x === null || x === undefined || !isFinite(x)) ? "–" :
  Math.abs(x) >= 1e6 ? (x / 1e6).toFixed(2) + " M" : Math.abs(x) >= 1e4 ? (x / 1e3).toFixed(1) + " k" : x.toFixed(d);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
const colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

function show(s) {
  $("time").textContent = `${fmt(s.t, 1)} s (${s.time || ""})` +
    (s.paused_s > 0 ? `, paused ${fmt(s.paused_s, 1)} s in all` : "");
  const st = $("state");
  st.textContent = s.state; st.className = s.state;
  const bt = $("buffers").tBodies[0];
  bt.innerHTML = Object.entries(s.buffers || {}).map(([name, b]) => {
    const outs = Object.values(b.events_out || {});
    const out = outs.length ? Math.min(...outs) : null;
    const pct = Math.round((b.fill || 0) * 100);
    return `<tr><td>${esc(name)}</td><td>${b.events_in}</td><td>${out === null ? "–" : out}</td>` +
      `<td>${fmt((s.rate_hz || {})[name] ?? b.rate_hz, 1)}</td><td><span class="bar${pct >= 95 ? " full" : ""}"><span style="width:${pct}%"></span></span> ${pct}%</td>` +
      `<td>${fmt((b.deadtime || 0) * 100, 2)} %</td><td>${b.lost}</td></tr>`;
  }).join("");
  // A worker's own losses as a reader (it died, was restarted or left holding them).
  const lost = (name) => (s.reader_lost || {})[name] || 0;
  const wt = $("workers").tBodies[0];
  wt.innerHTML = Object.entries(s.workers || {}).map(([name, w]) =>
    `<tr><td>${esc(name)}</td><td>${esc(w.state)}</td><td>${w.processes}</td><td>${w.observer ? "–" : w.events}</td>` +
    `<td>${fmt((s.cpu_percent || {})[name], 0)} %</td><td>${esc((s.cores_text || {})[name] || "–")}</td>` +
    `<td>${w.restarts}</td><td${lost(name) ? ' class="lost"' : ""}>${lost(name)}</td></tr>`).join("");
  const kafka = Object.entries(s.workers || {}).filter(([, w]) => w.kafka);
  $("kafka").hidden = kafka.length === 0;
  $("kafka").tBodies[0].innerHTML = kafka.map(([name, w]) => {
    const k = w.kafka;
    return `<tr><td>${esc(name)}</td><td>${esc(k.topic)}</td><td>${k.events}</td><td>${k.delivered}</td>` +
      `<td>${k.spooled}${k.spool_pending ? ` (${k.spool_pending} waiting)` : ""}</td><td>${k.replayed}</td>` +
      `<td>${k.dropped_spool_full}</td><td>${k.lost}</td></tr>`;
  }).join("");
  $("warnings").innerHTML = (s.warnings || []).map((w) => `<li>${esc(w)}</li>`).join("");
  const p = s.progress;
  $("progress").value = p ? p.fraction : 0;
  $("progress-text").textContent = p ? `${Math.round(p.fraction * 100)} % of ${p.of}` +
    (p.seconds_left !== null ? `, ${fmt(p.seconds_left, 0)} s left` : "") : "no limit";
}

function connect() {
  const es = new EventSource("/events");
  es.onmessage = (e) => show(JSON.parse(e.data));
  es.addEventListener("end", (e) => {
    const sum = JSON.parse(e.data);
    $("state").textContent = sum.exit_code === 0 ? "finished" : "FAILED";
    $("state").className = "finished";
    $("msg").textContent = `run ended after ${fmt(sum.seconds, 1)} s` +
      (sum.stopped_by_text ? `, stopped by ${sum.stopped_by_text}` : "") +
      ((sum.failures || []).length ? ": " + sum.failures.join("; ") : "");
    es.close();
  });
  es.onerror = () => { if ($("state").className !== "finished") { $("state").textContent = "no connection"; $("state").className = "lost"; } };
}

async function session() {
  if (!token) return;
  const r = await fetch("/session", { method: "POST", headers: { Authorization: "Bearer " + token } });
  if (!r.ok) $("msg").textContent = `the token was refused: ${r.status}`;
  history.replaceState(null, "", location.pathname);
}

async function control(action) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  try {
    const r = await fetch("/control/" + action, { method: "POST", headers });
    $("msg").textContent = r.ok ? `${action} requested` : `${action} refused: ${r.status} ${await r.text()}`;
  } catch (e) { $("msg").textContent = `${action} failed: ${e}`; }
}
for (const a of ["pause", "resume", "stop"]) $(a).onclick = () => control(a);

let tracePlot = null, traceKey = "";
function drawTrace(traces) {
  if (!traces.length) return;
  const t = traces[0];
  const names = Object.keys(t.channels);
  const [unit, scale] = timeUnit(t);
  const trig = typeof t.trigger_level === "number";
  const key = t.worker + names.join(",") + t.time.length + unit + t.value_unit + t.ylim + t.trigger_level;
  $("trace-title").textContent = `oscilloscope ${t.worker}: event ${t.counter}`;
  const x = t.time.map((v) => v * scale);
  const data = [x, ...names.map((n) => t.channels[n])];
  // mimoCoRB2's trigger_level: a dotted line across the trace.
  if (trig) data.push(x.map(() => t.trigger_level));
  if (!tracePlot || key !== traceKey) {
    if (tracePlot) tracePlot.destroy();
    traceKey = key;
    const y = t.ylim ? { range: t.ylim } : {};
    const series = names.map((n, i) => ({ label: n, stroke: colors[i % colors.length], width: 1 }));
    if (trig) series.push({ label: "trigger level", stroke: "#888", width: 1, dash: [2, 4] });
    tracePlot = new uPlot({
      width: 600, height: 300, scales: { x: { time: false }, y },
      axes: [{ label: unit === "sample" ? "sample" : `time (${unit})` }, { label: t.value_unit || "volts" }],
      series: [{ label: unit }, ...series],
    }, data, $("trace"));
  } else tracePlot.setData(data);
}

// The unit of a trace's time axis and the factor from seconds to it: samples when the
// oscilloscope has no sample_interval (it is then 1), else ns, µs, ms or s by the span.
function timeUnit(t) {
  if (t.time_unit) return [t.time_unit, 1]; // mimoCoRB2's t_scaling names its own unit
  if (t.sample_interval === 1) return ["sample", 1];
  const span = Math.abs(t.time[t.time.length - 1] - t.time[0]);
  if (span < 2e-6) return ["ns", 1e9];
  if (span < 2e-3) return ["µs", 1e6];
  if (span < 2) return ["ms", 1e3];
  return ["s", 1];
}

let histPlot = null, histKey = "";
function drawHist(hists) {
  const pick = $("hist-pick");
  const keys = hists.map((h) => `${h.worker}/${h.field}`);
  if (pick.options.length !== keys.length) {
    const cur = pick.value;
    pick.innerHTML = keys.map((k) => `<option>${esc(k)}</option>`).join("");
    if (keys.includes(cur)) pick.value = cur;
  }
  const h = hists[Math.max(0, keys.indexOf(pick.value))];
  if (!h) return;
  $("hist-info").textContent = `${h.entries} entries, under ${h.underflow}, over ${h.overflow}`;
  const x = h.edges.slice(0, -1), y = h.counts;
  const data = [x, y];
  const key = `${h.worker}/${h.field}/${h.edges.length}`;
  if (!histPlot || key !== histKey) {
    if (histPlot) histPlot.destroy();
    histKey = key;
    histPlot = new uPlot({
      width: 600, height: 300, scales: { x: { time: false } },
      axes: [{ label: h.field }, { label: "counts" }],
      series: [{ label: h.field }, { label: "counts", stroke: "#1f77b4", fill: "rgba(31,119,180,0.3)", paths: uPlot.paths.stepped({ align: 1 }) }],
    }, data, $("hist"));
  } else histPlot.setData(data);
}
$("hist-pick").onchange = () => { histKey = ""; };

async function plots() {
  try {
    const [t, h] = await Promise.all([fetch("/trace").then((r) => r.json()), fetch("/histograms").then((r) => r.json())]);
    drawTrace(t); drawHist(h);
  } catch (e) { /* the run may have ended; try again */ }
}
session().finally(connect);
plots();
setInterval(plots, 500);
