// tracklab ui: runs table, charts of the selected runs, run page. Plain JS, no build step.
// Every text that comes from a run (names, tags, config, metric names, console lines) goes into
// the page as a text node or textContent, never as HTML.
"use strict";

const PALETTE = ["#3b6fd8", "#e2543f", "#2ca58d", "#f5a623", "#8e5cd9", "#d6458f", "#17a2b8",
  "#7cb342", "#a0522d", "#5c6bc0", "#ef6c00", "#00897b", "#c2185b", "#6d4c41", "#546e7a"];
const POLL_MS = 1000;  // a new run or point shows within about a second
const state = {
  runs: [], byId: new Map(), warnings: [],
  selected: JSON.parse(localStorage.getItem("tl.selected") || "[]"),
  colors: JSON.parse(localStorage.getItem("tl.colors") || "{}"),
  filter: { project: "", status: "", tag: "", text: "" },
  sort: { key: "started_at", dir: -1 },
  metricCols: null, configCols: null,
  axis: localStorage.getItem("tl.axis") || "step",
  smoothing: Number(localStorage.getItem("tl.smoothing") || 0),
  search: "",
  charts: new Map(), keys: null, chartsToken: 0, drawn: false, loaded: false, starts: {}, wasLive: new Set(),
};

// -- helpers -------------------------------------------------------------------------------------

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "style") e.setAttribute("style", v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}

async function api(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  const ctype = r.headers.get("Content-Type") || "";
  const body = ctype.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error((body && body.error) || `HTTP ${r.status}`);
  return body;
}

function q(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach(x => u.append(k, x));
    else if (v !== null && v !== undefined) u.append(k, v);
  }
  return u.toString();
}

function save() {
  localStorage.setItem("tl.selected", JSON.stringify(state.selected));
  localStorage.setItem("tl.colors", JSON.stringify(state.colors));
  localStorage.setItem("tl.axis", state.axis);
  localStorage.setItem("tl.smoothing", String(state.smoothing));
}

function colorOf(id) {
  if (!(id in state.colors)) {
    const used = new Set(Object.values(state.colors));
    let i = 0;
    while (used.has(i) && i < PALETTE.length) i++;
    state.colors[id] = i < PALETTE.length ? i : Object.keys(state.colors).length % PALETTE.length;
  }
  return PALETTE[state.colors[id]];
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
function fmtBytes(v) {
  if (v === null || v === undefined) return "";
  let i = 0; let x = Math.abs(v);
  while (x >= 1024 && i < UNITS.length - 1) { x /= 1024; i++; }
  return `${(Math.sign(v) * x).toFixed(x >= 100 || i === 0 ? 0 : 1)} ${UNITS[i]}`;
}
function fmtNum(v) {
  if (v === null || v === undefined || v === "") return "";
  if (typeof v !== "number") return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3);
  return Number.isInteger(v) ? String(v) : v.toPrecision(4).replace(/\.?0+$/, "");
}
function fmtTick(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}
function fmtUnit(v, unit, tick) {
  if (v === null || v === undefined) return "";
  if (unit === "B") return fmtBytes(v);
  if (unit === "B/s") return fmtBytes(v) + "/s";
  if (unit === "%") return `${v.toFixed(1)}%`;
  if (unit === "W") return `${v.toFixed(0)} W`;
  return tick ? fmtTick(v) : fmtNum(v);
}
function fmtDur(s) {
  if (s === null || s === undefined) return "";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), sec = s % 60;
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(sec).padStart(2, "0")}s` : `${sec}s`;
}
function fmtTime(t) {
  if (!t) return "";
  const d = new Date(t * 1000);
  return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}
function statusBadge(s) { return el("span", { class: `status ${s}` }, s); }
function runLabel(r) { return r.name || r.id; }

function banner() {
  const b = document.getElementById("banner");
  b.textContent = state.warnings.join(" · ");
  b.hidden = state.warnings.length === 0;
}

// -- data ----------------------------------------------------------------------------------------

async function refreshRuns() {
  const d = await api("/api/runs");
  state.loaded = true;
  state.runs = d.runs;
  state.byId = new Map(d.runs.map(r => [r.id, r]));
  state.warnings = d.warnings || [];
  document.getElementById("store").textContent = d.store;
  banner();
  const running = d.runs.filter(r => r.status === "running").length;
  document.getElementById("live").textContent =
    `${d.runs.length} runs · ${running} running · updated ${new Date().toLocaleTimeString()}`;
}

// -- runs page -----------------------------------------------------------------------------------

function filtered() {
  const f = state.filter, t = f.text.toLowerCase();
  return state.runs.filter(r =>
    (!f.project || r.project === f.project) && (!f.status || r.status === f.status) &&
    (!f.tag || (r.tags || []).includes(f.tag)) &&
    (!t || [r.name, r.id, r.project, ...(r.tags || []), r.notes].some(x => x && String(x).toLowerCase().includes(t))));
}

function defaultCols() {
  const metrics = new Map(), config = new Map();
  for (const r of state.runs) {
    for (const k of Object.keys(r.metrics || {})) metrics.set(k, (metrics.get(k) || 0) + 1);
    for (const [k, v] of Object.entries(r.config || {})) if (typeof v !== "object" || v === null) config.set(k, (config.get(k) || 0) + 1);
  }
  const top = m => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, 4).map(e => e[0]);
  // the metrics people compare runs by first: losses, then accuracies
  const rank = k => /loss/i.test(k) ? 0 : /acc/i.test(k) ? 1 : 2;
  const byInterest = new Map([...metrics.entries()].sort((a, b) => rank(a[0]) - rank(b[0])));
  if (state.metricCols === null) state.metricCols = top(byInterest);
  if (state.configCols === null) state.configCols = top(config);
}

const BASE_COLS = [
  ["", null], ["status", r => r.status], ["name", r => runLabel(r)], ["project", r => r.project],
  ["tags", r => (r.tags || []).join(",")], ["started", r => r.started_at], ["duration", r => r.duration],
  ["exit", r => r.exit_code], ["peak CPU", r => r.peak_cpu], ["peak RSS", r => r.peak_rss],
  ["peak GPU mem", r => r.peak_gpu_mem],
];

function cellValue(r, col) {
  if (col.startsWith("m:")) return (r.metrics || {})[col.slice(2)];
  if (col.startsWith("c:")) return (r.config || {})[col.slice(2)];
  const base = BASE_COLS.find(c => c[0] === col);
  return base && base[1] ? base[1](r) : null;
}

function sortRuns(rows) {
  const { key, dir } = state.sort;
  return rows.slice().sort((a, b) => {
    const x = cellValue(a, key), y = cellValue(b, key);
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))) * dir;
  });
}

function toggle(id, on) {
  const i = state.selected.indexOf(id);
  if (on && i < 0) state.selected.push(id);
  if (!on && i >= 0) state.selected.splice(i, 1);
  colorOf(id);
  save();
}

function renderRuns() {
  defaultCols();
  const view = document.getElementById("view");
  const projects = [...new Set(state.runs.map(r => r.project).filter(Boolean))].sort();
  const statuses = [...new Set(state.runs.map(r => r.status))].sort();
  const tags = [...new Set(state.runs.flatMap(r => r.tags || []))].sort();
  const sel = (name, options) => el("select", { onchange: e => { state.filter[name] = e.target.value; drawTable(); } },
    el("option", { value: "" }, `all ${name === "status" ? "statuses" : name + "s"}`),
    options.map(o => el("option", { value: o, selected: state.filter[name] === o }, o)));
  const allMetrics = [...new Set(state.runs.flatMap(r => Object.keys(r.metrics || {})))].sort();
  const allConfig = [...new Set(state.runs.flatMap(r => Object.keys(r.config || {})))].sort();
  view.replaceChildren(
    el("div", { class: "toolbar" },
      el("input", { type: "search", placeholder: "Search runs", id: "run-search", value: state.filter.text,
        oninput: e => { state.filter.text = e.target.value; drawTable(); } }),
      sel("project", projects), sel("status", statuses), sel("tag", tags),
      el("label", {}, "metric columns"),
      el("input", { type: "text", id: "metric-cols", list: "metric-list", size: 26, value: state.metricCols.join(", "),
        onchange: e => { state.metricCols = e.target.value.split(",").map(s => s.trim()).filter(Boolean); drawTable(); } }),
      el("datalist", { id: "metric-list" }, allMetrics.map(m => el("option", { value: m }))),
      el("label", {}, "config columns"),
      el("input", { type: "text", id: "config-cols", size: 20, value: state.configCols.join(", "), title: allConfig.join(", "),
        onchange: e => { state.configCols = e.target.value.split(",").map(s => s.trim()).filter(Boolean); drawTable(); } }),
      el("button", { class: "primary", id: "compare", onclick: () => { location.hash = "#/charts"; } }, "Compare selected"),
      el("span", { class: "muted", id: "sel-count" })),
    el("div", { class: "scroll" }, el("table", { class: "runs", id: "runs-table" }, el("thead"), el("tbody"))));
  drawTable();
}

function drawTable() {
  const table = document.getElementById("runs-table");
  if (!table) return;
  const cols = [...BASE_COLS.map(c => c[0]), ...state.metricCols.map(m => "m:" + m), ...state.configCols.map(c => "c:" + c)];
  const head = el("tr", {}, cols.map(c => el("th", {
    onclick: () => { if (!c) return; state.sort = { key: c, dir: state.sort.key === c ? -state.sort.dir : -1 }; drawTable(); },
  }, c.replace(/^[mc]:/, ""), state.sort.key === c ? (state.sort.dir < 0 ? " ▼" : " ▲") : "")));
  const rows = sortRuns(filtered()).map(r => {
    const on = state.selected.includes(r.id);
    return el("tr", { "data-run": r.id },
      el("td", {}, el("input", { type: "checkbox", checked: on, onchange: e => { toggle(r.id, e.target.checked); drawTable(); } }),
        on ? el("span", { class: "swatch", style: `background:${colorOf(r.id)}` }) : null),
      el("td", {}, statusBadge(r.status)),
      el("td", { class: "name", title: r.id }, el("a", { class: "runlink", href: `#/run/${encodeURIComponent(r.id)}` }, runLabel(r))),
      el("td", {}, r.project || ""),
      el("td", {}, (r.tags || []).map(t => el("span", { class: "tag" }, t))),
      el("td", {}, fmtTime(r.started_at)),
      el("td", { class: "num" }, fmtDur(r.duration)),
      el("td", { class: "num" }, r.exit_code ?? ""),
      el("td", { class: "num" }, r.peak_cpu === null ? "" : fmtUnit(r.peak_cpu, "%")),
      el("td", { class: "num" }, fmtBytes(r.peak_rss)),
      el("td", { class: "num" }, fmtBytes(r.peak_gpu_mem)),
      state.metricCols.map(m => el("td", { class: "num" }, fmtNum((r.metrics || {})[m]))),
      state.configCols.map(c => { const v = (r.config || {})[c]; return el("td", {}, v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v)); }));
  });
  table.tHead.replaceChildren(head);
  table.tBodies[0].replaceChildren(...rows);
  const n = document.getElementById("sel-count");
  if (n) n.textContent = `${state.selected.length} selected`;
}

// -- charts --------------------------------------------------------------------------------------

// before the runs table first arrives the selection is taken as it is, so the charts' requests
// need not wait for it (a run gone from the store is then answered 404 and left out)
function selectedRuns() { return state.loaded ? state.selected.filter(id => state.byId.has(id)) : state.selected.slice(); }

function renderCharts() {
  const view = document.getElementById("view");
  state.charts.forEach(c => c.u && c.u.destroy());
  state.charts = new Map();
  state.drawn = false;
  const side = el("div", { class: "sidebar", id: "sidebar" });
  const main = el("div", { id: "panels" });
  view.replaceChildren(
    el("div", { class: "toolbar" },
      el("input", { type: "search", id: "metric-search", placeholder: "Search metrics", value: state.search,
        oninput: e => { state.search = e.target.value; applySearch(); } }),
      el("label", {}, "x axis"),
      el("select", { id: "axis", onchange: e => { state.axis = e.target.value; state.drawn = false; save(); loadCharts(); } },
        [["step", "Step"], ["time", "Wall time"], ["relative", "Relative time"]].map(([v, t]) =>
          el("option", { value: v, selected: state.axis === v }, t))),
      el("label", {}, "smoothing"),
      el("input", { type: "range", id: "smoothing", min: 0, max: 0.99, step: 0.01, value: state.smoothing,
        oninput: e => { document.getElementById("smooth-v").textContent = Number(e.target.value).toFixed(2); },
        onchange: e => { state.smoothing = Number(e.target.value); save(); redrawAll(); } }),
      el("span", { id: "smooth-v", class: "muted" }, state.smoothing.toFixed(2)),
      el("span", { class: "muted" }, "drag to zoom · double-click to reset")),
    el("div", { class: "workspace" }, side, main));
  drawSidebar();
  loadCharts();
}

function drawSidebar() {
  const side = document.getElementById("sidebar");
  if (!side) return;
  const sel = selectedRuns().filter(id => state.byId.has(id));
  const others = state.runs.filter(r => !sel.includes(r.id)).slice(0, 200);
  const item = (r, on) => el("div", { class: "item", "data-run": r.id },
    el("input", { type: "checkbox", checked: on, onchange: e => { toggle(r.id, e.target.checked); drawSidebar(); loadCharts(); } }),
    on ? el("span", { class: "swatch", style: `background:${colorOf(r.id)}` }) : el("span", { class: "swatch" }),
    el("span", { class: "name", title: r.id }, runLabel(r)), statusBadge(r.status));
  side.replaceChildren(el("h4", {}, `Selected (${sel.length})`), ...sel.map(id => item(state.byId.get(id), true)),
    el("h4", {}, "Other runs"), ...others.map(r => item(r, false)));
}

function xOf(id, x) { return state.axis === "relative" ? x - (state.starts[id] || 0) : x; }
function remember(doc) { for (const [id, r] of Object.entries(doc.runs || {})) state.starts[id] = r.started_at; return doc; }

async function fetchSeries(runs, keys, range) {
  const axis = state.axis === "step" ? "step" : "time";
  const width = Math.max(200, Math.round((document.getElementById("panels")?.clientWidth || 1200) / 2.5));
  const params = { run: runs, key: keys, axis, width };
  if (range) { params.lo = range[0]; params.hi = range[1]; if (state.axis === "relative") params.rel = 1; }
  return remember(await api("/api/series?" + q(params)));
}

async function loadCharts() {
  const token = ++state.chartsToken;
  const runs = selectedRuns();
  const main = document.getElementById("panels");
  if (!main) return;
  state.charts.forEach(c => c.u && c.u.destroy());
  state.charts = new Map();
  if (!runs.length) {
    main.replaceChildren(el("p", { class: "muted", id: "no-selection" }, "Select runs on the left (or on the Runs page) to chart them."));
    state.drawn = true;
    return;
  }
  let keys;
  try { keys = await api("/api/keys?" + q({ run: runs })); } catch (e) {
    // a selected run that is gone: once the runs table has come, the selection leaves it out
    const stale = !state.loaded || selectedRuns().length !== runs.length;
    if (stale && token === state.chartsToken) { setTimeout(() => { if (token === state.chartsToken) loadCharts(); }, 200); return; }
    throw e;
  }
  if (token !== state.chartsToken) return;
  state.keys = keys;
  const all = [...keys.metrics, ...keys.system.map(s => "sys:" + s.path)];
  const data = await fetchSeries(runs, all, null);
  if (token !== state.chartsToken) return;
  const groups = new Map();
  for (const k of keys.metrics) {
    const fam = k.includes("/") ? k.split("/")[0] : "Charts";
    if (!groups.has(fam)) groups.set(fam, []);
    groups.get(fam).push({ key: k, title: k, unit: "" });
  }
  const sections = [...groups.entries()].map(([fam, items]) => ({ title: fam, items }));
  if (keys.system.length) sections.push({ title: "System", items: keys.system.map(s => ({ key: "sys:" + s.path, title: s.title, unit: s.unit })) });
  const frag = sections.map(sec => el("div", { class: "section" }, el("h3", {}, sec.title),
    el("div", { class: "grid" }, sec.items.map(it => {
      const box = el("div", { class: "chart" });
      const card = el("div", { class: "card", "data-key": it.key }, el("div", { class: "title", title: it.title }, it.title), box);
      state.charts.set(it.key, { ...it, card, box, runs, series: {}, zoom: null, u: null });
      return card;
    }))));
  main.replaceChildren(...frag);
  applySearch();
  for (const [key, c] of state.charts) {
    for (const id of runs) c.series[id] = ((data.runs[id] || {}).series || {})[key] || { x: [], y: [] };
    draw(c);
  }
  state.wasLive = new Set(runs.filter(id => (state.byId.get(id) || { status: "running" }).status === "running"));
  requestAnimationFrame(() => { state.drawn = true; window.__tracklabDrawn = performance.now(); });
}

function applySearch() {
  const s = state.search.toLowerCase();
  for (const c of state.charts.values()) c.card.style.display = !s || c.title.toLowerCase().includes(s) || c.key.toLowerCase().includes(s) ? "" : "none";
}

function ema(ys, w) {
  const out = new Array(ys.length).fill(null);
  let acc = 0, n = 0;
  for (let i = 0; i < ys.length; i++) {
    const v = ys[i];
    if (v === null || v === undefined) continue;
    acc = acc * w + (1 - w) * v; n++;
    out[i] = acc / (1 - Math.pow(w, n));
  }
  return out;
}

function buildData(c) {
  const tables = c.runs.map(id => {
    const s = c.series[id] || { x: [], y: [] };
    return [s.x.map(x => xOf(id, x)), s.y];
  });
  const nonEmpty = tables.filter(t => t[0].length);
  if (!nonEmpty.length) return null;
  const joined = uPlot.join(tables.map(t => t[0].length ? t : [[nonEmpty[0][0][0]], [null]]));
  const out = [joined[0]];
  const smooth = state.smoothing > 0 && !c.key.startsWith("sys:");
  for (let i = 1; i < joined.length; i++) {
    out.push(joined[i]);
    if (smooth) out.push(ema(joined[i], state.smoothing));
  }
  return out;
}

function alpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${a})`;
}

function draw(c) {
  if (c.u) { c.u.destroy(); c.u = null; }
  const data = buildData(c);
  c.box.replaceChildren();
  if (!data) { c.box.append(el("div", { class: "muted", style: "padding:80px 0;text-align:center" }, "no data")); return; }
  const smooth = state.smoothing > 0 && !c.key.startsWith("sys:");
  const series = [{}];
  for (const id of c.runs) {
    const col = colorOf(id), name = runLabel(state.byId.get(id) || { id });
    series.push({ label: name, stroke: smooth ? alpha(col, 0.25) : col, width: smooth ? 1 : 1.5, spanGaps: true, points: { show: false } });
    if (smooth) series.push({ label: name + " (smoothed)", stroke: col, width: 1.8, spanGaps: true, points: { show: false } });
  }
  const timeAxis = state.axis === "time";
  const opts = {
    width: Math.max(200, c.box.clientWidth || 360), height: 200, series, legend: { show: false },
    scales: { x: { time: timeAxis } },
    cursor: { sync: { key: "tracklab" }, drag: { x: true, y: false }, points: { size: 5 },
      bind: { dblclick: () => null } },
    axes: [
      { stroke: "#6b7280", grid: { stroke: "#f0f1f3" }, size: 34,
        values: state.axis === "relative" ? (u, vals) => vals.map(fmtDur) : timeAxis ? undefined : (u, vals) => vals.map(fmtTick) },
      { stroke: "#6b7280", grid: { stroke: "#f0f1f3" }, values: (u, vals) => vals.map(v => fmtUnit(v, c.unit, true)),
        // as wide as the longest tick label, so "18.6 GiB" is not cut to "8.6 GiB"
        size: (u, values) => 20 + 8 * Math.max(3, ...(values || []).map(v => String(v).length)) },
    ],
    hooks: { setCursor: [u => tip(c, u)], setScale: [(u, key) => { if (key === "x") onZoom(c, u); }] },
  };
  c.programmatic = true;
  c.u = new uPlot(opts, data, c.box);
  c.programmatic = false;
  c.u.over.addEventListener("dblclick", () => { if (c.zoom) { c.zoom = null; detail(c, null); } });
  // the cursor line is synced across charts; the values box shows on the hovered chart only
  c.u.over.addEventListener("mouseenter", () => { c.hover = true; });
  c.u.over.addEventListener("mouseleave", () => { c.hover = false; if (c.tip) c.tip.hidden = true; });
}

function nearest(arr, i) {
  if (arr[i] !== null && arr[i] !== undefined) return arr[i];
  for (let d = 1; d < 400; d++) {
    if (i - d >= 0 && arr[i - d] !== null && arr[i - d] !== undefined) return arr[i - d];
    if (i + d < arr.length && arr[i + d] !== null && arr[i + d] !== undefined) return arr[i + d];
  }
  return null;
}

function tip(c, u) {
  const i = u.cursor.idx;
  if (!c.tip) { c.tip = el("div", { class: "tip" }); c.card.append(c.tip); }
  if (!c.hover || i === null || i === undefined || u.cursor.left < 0) { c.tip.hidden = true; return; }
  const smooth = state.smoothing > 0 && !c.key.startsWith("sys:");
  const stride = smooth ? 2 : 1;
  const x = u.data[0][i];
  const head = state.axis === "time" ? new Date(x * 1000).toLocaleTimeString() : state.axis === "relative" ? fmtDur(x) : `step ${fmtNum(x)}`;
  const rows = c.runs.map((id, r) => {
    const raw = nearest(u.data[1 + r * stride], i);
    const val = smooth ? nearest(u.data[2 + r * stride], i) : raw;
    return el("div", { class: "row" }, el("span", { class: "swatch", style: `background:${colorOf(id)}` }),
      runLabel(state.byId.get(id) || { id }), el("span", { class: "v" }, val === null ? "–" : fmtUnit(val, c.unit)));
  });
  c.tip.replaceChildren(el("div", { class: "muted" }, head), ...rows);
  c.tip.hidden = false;
  const left = u.cursor.left + u.over.offsetLeft + 14;
  c.tip.style.left = `${Math.min(left, c.card.clientWidth - c.tip.offsetWidth - 4)}px`;
  c.tip.style.top = `${u.cursor.top + 30}px`;
}

function onZoom(c, u) {
  if (c.programmatic) return;
  const { min, max } = u.scales.x;
  if (min === null || max === null) return;
  const xs = u.data[0];
  // uPlot sets the scale itself to the data's extent (first draw, new data): not a zoom
  if (c.zoom === null && xs.length && min <= xs[0] && max >= xs[xs.length - 1]) return;
  c.zoom = [min, max];
  clearTimeout(c.zoomTimer);
  c.zoomTimer = setTimeout(() => detail(c, c.zoom), 150);
}

async function detail(c, range) {
  // the server reads only the range: a zoom into a long run shows its points, not the overview's
  const d = await fetchSeries(c.runs, [c.key], range);
  for (const id of c.runs) c.series[id] = ((d.runs[id] || {}).series || {})[c.key] || { x: [], y: [] };
  const data = buildData(c);
  if (!data || !c.u) { draw(c); return; }
  c.programmatic = true;
  if (range) { c.u.setData(data, false); c.u.setScale("x", { min: range[0], max: range[1] }); }
  else c.u.setData(data, true);
  c.programmatic = false;
}

function redrawAll() { for (const c of state.charts.values()) draw(c); }

async function liveCharts() {
  const runs = selectedRuns();
  const live = runs.filter(id => (state.byId.get(id) || {}).status === "running");
  // a run that has just ended gets one last read: its final points came with its end
  const ended = runs.filter(id => state.wasLive.has(id) && !live.includes(id));
  state.wasLive = new Set(live);
  if (!live.length && !ended.length) return;
  const keys = await api("/api/keys?" + q({ run: runs }));
  const all = [...keys.metrics, ...keys.system.map(s => "sys:" + s.path)];
  const known = [...state.charts.keys()];
  if (all.length !== known.length || all.some(k => !state.charts.has(k))) { loadCharts(); return; }
  const free = known.filter(k => !state.charts.get(k).zoom);
  if (!free.length) return;
  const d = await fetchSeries(runs, free, null);
  for (const k of free) {
    const c = state.charts.get(k);
    if (!c || c.zoom) continue;
    for (const id of runs) c.series[id] = ((d.runs[id] || {}).series || {})[k] || { x: [], y: [] };
    const data = buildData(c);
    if (!c.u || !data) { draw(c); continue; }
    c.programmatic = true;
    c.u.setData(data, true);
    c.programmatic = false;
  }
}

// -- run page ------------------------------------------------------------------------------------

function kv(pairs) {
  return el("dl", { class: "kv" }, pairs.filter(p => p[1] !== null && p[1] !== undefined && p[1] !== "")
    .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v instanceof Node ? v : typeof v === "object" ? JSON.stringify(v) : String(v))]));
}

function flat(obj, prefix = "", out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    if (v && typeof v === "object" && !Array.isArray(v)) flat(v, prefix + k + ".", out);
    else out[prefix + k] = v;
  }
  return out;
}

async function renderRun(id) {
  const view = document.getElementById("view");
  const token = state.routeToken;
  let d;
  try { d = await api(`/api/run/${encodeURIComponent(id)}`); } catch (e) {
    if (token !== state.routeToken) return;
    view.replaceChildren(el("div", { class: "panel" }, el("h3", {}, "Run not found"), String(e.message)));
    return;
  }
  if (token !== state.routeToken) return;  // the user went elsewhere meanwhile
  const info = d.info, code = (info.context || {}).code || {};
  const cmd = Array.isArray(info.command) ? info.command.join(" ") : info.command;
  const others = state.runs.filter(r => r.id !== info.id);
  const diffBox = el("div", { id: "config-diff" });
  view.replaceChildren(
    el("div", { class: "panel" },
      el("h3", {}, runLabel(info), " ", statusBadge(info.status)),
      kv([["id", info.id], ["project", info.project], ["command", cmd], ["exit code", info.exit_code],
        ["signal", info.signal], ["host", info.host], ["nodes", (info.nodes || []).join(", ")],
        ["started", fmtTime(info.started_at)], ["duration", fmtDur(info.duration)],
        ["tags", (info.tags || []).length ? el("span", {}, info.tags.map(t => el("span", { class: "tag" }, t))) : null],
        ["notes", info.notes], ["code", code.commit ? `${code.branch || ""} ${String(code.commit).slice(0, 10)}${code.dirty ? " (dirty)" : ""}` : null],
        ["cwd", info.cwd]]),
      el("p", {}, el("button", { onclick: () => { toggle(info.id, true); location.hash = "#/charts"; } }, "Chart this run"))),
    el("div", { class: "panel" }, el("h3", {}, "Diagnosis"),
      d.diagnosis.length ? d.diagnosis.map(f => el("div", { class: `finding ${f.severity || ""}` },
        el("strong", {}, f.message || f.rule), el("div", { class: "muted" }, f.evidence || ""))) :
        el("span", { class: "muted" }, "no findings")),
    d.gpus.length ? el("div", { class: "panel" }, el("h3", {}, "GPUs"),
      el("table", { class: "runs" }, el("thead", {}, el("tr", {}, ["GPU", "", "min", "mean", "max", "last"].map(h => el("th", {}, h)))),
        el("tbody", {}, d.gpus.flatMap(g => g.rows.map(r => el("tr", {}, el("td", {}, `${g.id} ${g.name || ""}`), el("td", {}, r.label),
          ["min", "mean", "max", "last"].map(f => el("td", { class: "num" }, fmtUnit(r[f], r.unit))))))))) : null,
    el("div", { class: "panel" }, el("h3", {}, "Config"),
      Object.keys(info.config || {}).length ? kv(Object.entries(flat(info.config))) : el("span", { class: "muted" }, "no config"),
      el("p", {}, "Diff against ", el("select", { id: "diff-with", onchange: e => diffConfig(info, e.target.value, diffBox) },
        el("option", { value: "" }, "another run…"), others.map(r => el("option", { value: r.id }, runLabel(r))))), diffBox),
    el("div", { class: "panel" }, el("h3", {}, "Console (last lines) ",
      el("a", { href: `/api/run/${encodeURIComponent(info.id)}/console`, target: "_blank", rel: "noopener" }, "full log")),
      d.console_note ? el("p", { class: "muted" }, d.console_note) : null,
      el("pre", { class: "console", id: "console" }, d.console.map(c => c.line).join("\n"))));
}

async function diffConfig(info, otherId, box) {
  if (!otherId) { box.replaceChildren(); return; }
  const o = (await api(`/api/run/${encodeURIComponent(otherId)}`)).info;
  const a = flat(info.config), b = flat(o.config);
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  const show = v => v === undefined ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v);
  box.replaceChildren(el("table", { class: "runs" },
    el("thead", {}, el("tr", {}, el("th", {}, "key"), el("th", {}, runLabel(info)), el("th", {}, runLabel(o)))),
    el("tbody", {}, keys.map(k => el("tr", { class: JSON.stringify(a[k]) !== JSON.stringify(b[k]) ? "diff-changed" : "" },
      el("td", {}, k), el("td", {}, show(a[k])), el("td", {}, show(b[k])))))));
}

// -- routing and the live loop -------------------------------------------------------------------

function route() {
  const h = location.hash || "#/runs";
  state.drawn = false;
  state.routeToken = (state.routeToken || 0) + 1;
  state.chartsToken++;
  document.getElementById("nav-runs").classList.toggle("active", h.startsWith("#/runs"));
  document.getElementById("nav-charts").classList.toggle("active", h.startsWith("#/charts"));
  if (h.startsWith("#/charts")) {
    const m = h.match(/[?&]runs=([^&]*)/);
    if (m) { state.selected = decodeURIComponent(m[1]).split(",").filter(Boolean); state.selected.forEach(colorOf); save(); }
    renderCharts();
  } else if (h.startsWith("#/run/")) renderRun(decodeURIComponent(h.slice(6)));
  else renderRuns();
}

async function tick() {
  try {
    await refreshRuns();
    const h = location.hash || "#/runs";
    if (h.startsWith("#/runs")) drawTable();
    else if (h.startsWith("#/charts")) { drawSidebar(); await liveCharts(); }
  } catch (e) {
    state.warnings = [`dashboard: ${e.message}`];
    banner();
  }
  setTimeout(tick, POLL_MS);
}

async function start() {
  if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", "/" + location.hash);
  const first = refreshRuns().catch(e => { state.warnings = [String(e.message)]; banner(); });
  window.addEventListener("hashchange", route);
  if ((location.hash || "").startsWith("#/charts")) {
    route();  // the charts' requests go out beside the runs table's
    await first;
    drawSidebar();
  } else {
    await first;
    route();
  }
  setTimeout(tick, POLL_MS);
}

start();
