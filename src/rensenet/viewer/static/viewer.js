// rensenet view: slices windowed in the page, the lesion-probability map over them, numbered candidates.
// No framework, no build step, nothing fetched from outside this app.
"use strict";

const $ = (id) => document.getElementById(id);
const MARKER = "#ff00ff"; // neither the gray slice nor the jet heatmap produce this colour
const S = {
  info: null, folder: "", job: null, volumes: [], vol: 0, slice: 0, ww: 400, wl: 40, zoom: 1, panX: 0, panY: 0,
  raw: null, map: null, rows: 0, cols: 0, candidates: [], threshold: 0.3, heatmap: true, opacity: 0.4,
  cache: new Map(), drag: null,
};

async function api(path, options) {
  options = options || {};
  if (options.method && options.method !== "GET") {  // state-changing calls carry the session token (docs/view.md)
    options.headers = Object.assign({}, options.headers, { "X-Rensenet-Token": S.info.token });
  }
  const r = await fetch(path, options);
  if (!r.ok) {
    let text = r.status + " " + r.statusText;
    try { text = (await r.json()).detail || text; } catch (e) { /* not JSON */ }
    throw new Error(text);
  }
  return r;
}

function message(text, kind) { const m = $("message"); m.textContent = text || ""; m.className = kind || ""; }

// --- opening inputs ---------------------------------------------------------------------------------------------
async function browse(path) {
  const listing = await (await api("/api/browse?path=" + encodeURIComponent(path))).json();
  S.folder = listing.path;
  const files = $("files");
  files.innerHTML = "";
  const add = (value, label) => { const o = document.createElement("option"); o.value = value; o.textContent = label; files.appendChild(o); };
  add(listing.path, "(this folder" + (listing.path ? ": " + listing.path : "") + ")");
  if (listing.path) add("..", "..");
  for (const e of listing.entries) add(e.path, e.name + (e.kind === "dir" ? "/" : ""));
}

async function enterFolder() {
  const v = $("files").value;
  if (v === "..") return browse(S.folder.split("/").slice(0, -1).join("/"));
  try { await browse(v); } catch (e) { message(e.message, "error"); }
}

async function startScan(body) {
  try {
    const job = await (await api("/api/scans", { method: "POST", headers: { "Content-Type": "application/json" },
                                                 body: JSON.stringify(body) })).json();
    const o = document.createElement("option");
    o.value = job.id; o.textContent = job.name;
    $("scans").appendChild(o);
    $("scans").value = job.id;
    message("scanning " + job.name + " ...", "info");
    follow(job.id);
  } catch (e) { message(e.message, "error"); }
}

async function uploadAndScan(input) {
  if (!input.files.length) return;
  const form = new FormData();
  let name = input.files[0].name;
  for (const f of input.files) {
    form.append("files", f, f.webkitRelativePath || f.name);
    if (f.webkitRelativePath) name = f.webkitRelativePath.split("/")[0];
  }
  try {
    message("uploading " + input.files.length + " file(s) ...", "info");
    const up = await (await api("/api/upload", { method: "POST", body: form })).json();
    await startScan({ upload: up.upload, name: input.files.length > 1 && !input.files[0].webkitRelativePath ? name + " and others" : name });
  } catch (e) { message(e.message, "error"); }
  input.value = "";
}

async function follow(id) {
  $("progress").hidden = false;
  for (;;) {
    const job = await (await api("/api/scans/" + id)).json();
    $("bar").max = Math.max(job.total, 1); $("bar").value = job.done;
    $("progress-text").textContent = job.done + " / " + job.total + " slices";
    if (job.status === "done" || job.status === "failed") {
      $("progress").hidden = true;
      const problems = job.errors.map((e) => e.name + ": " + e.message).join("; ");
      if (job.status === "failed") message("could not scan " + job.name + ": " + (problems || job.message), "error");
      else message(job.message + (problems ? ". " + problems : ""), problems ? "warning" : "info");
      if (job.volumes.length && $("scans").value === id) await show(job);
      return;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

// --- showing a scan ---------------------------------------------------------------------------------------------
async function show(job) {
  S.job = job; S.volumes = job.volumes; S.cache.clear();
  S.candidates = await (await api("/api/scans/" + job.id + "/candidates")).json();
  S.candidates.forEach((c, i) => { c.rank = i + 1; });
  const vs = $("volume");
  vs.innerHTML = "";
  job.volumes.forEach((v, i) => { const o = document.createElement("option"); o.value = i; o.textContent = v.name + " (" + v.n_slices + " slices)"; vs.appendChild(o); });
  $("downloads").innerHTML = ["candidates.csv", "report.md", "overlays.zip"].map((n) =>
    '<a href="/api/scans/' + job.id + "/files/" + n + '" download>' + n + "</a>").join("");
  const top = S.candidates[0];
  await selectVolume(top ? top.volume : 0, top ? top.slice : null);
}

function defaultWindow(v) {
  if (v.units === "HU") {
    const p = S.info.presets[S.info.window] || S.info.presets.abdomen;
    [S.ww, S.wl] = p;
  } else if (v.units === "display") { S.ww = 1; S.wl = 0.5; }
  else { S.ww = null; } // another modality: from the slice's own range once it is loaded
}

async function selectVolume(i, slice) {
  S.vol = Number(i); $("volume").value = S.vol;
  const v = S.volumes[S.vol];
  S.rows = v.rows; S.cols = v.cols; S.zoom = 1; S.panX = 0; S.panY = 0;
  defaultWindow(v);
  $("slice").max = v.n_slices - 1;
  await setSlice(slice !== null && slice !== undefined ? slice : Math.floor(v.n_slices / 2));
}

async function fetchArray(url, type) {
  if (S.cache.has(url)) return S.cache.get(url);
  const r = await api(url);
  const data = new type(await r.arrayBuffer());
  S.cache.set(url, data);
  return data;
}

async function setSlice(k) {
  const v = S.volumes[S.vol];
  k = Math.max(0, Math.min(v.n_slices - 1, k));
  S.slice = k; $("slice").value = k;
  $("slice-label").textContent = (k + 1) + " / " + v.n_slices;
  const base = "/api/scans/" + S.job.id + "/volumes/" + S.vol;
  const want = base + "/" + k;
  S.want = want; // scrolling fast: only the last slice asked for is drawn
  let raw, map;
  try {
    [raw, map] = await Promise.all([fetchArray(base + "/slices/" + k, Float32Array), fetchArray(base + "/maps/" + k, Uint8Array)]);
  } catch (e) { message(e.message, "error"); return; }
  if (S.want !== want) return;
  S.raw = raw; S.map = map;
  if (S.ww === null) { // scaled modality: 1st to 99th percentile of this slice
    const sorted = Array.from(S.raw).sort((a, b) => a - b);
    const lo = sorted[Math.floor(sorted.length * 0.01)], hi = sorted[Math.floor(sorted.length * 0.99)];
    S.ww = Math.max(hi - lo, 1e-6); S.wl = (hi + lo) / 2;
  }
  render();
}

// --- drawing ----------------------------------------------------------------------------------------------------
function view() { // image pixel (col, row) -> canvas: x = ox + (col + 0.5) * s, as the default view is fit and centred
  const c = $("canvas");
  const s = Math.min(c.width / S.cols, c.height / S.rows) * S.zoom;
  return { s, ox: (c.width - S.cols * s) / 2 + S.panX, oy: (c.height - S.rows * s) / 2 + S.panY };
}

function jet(t) { // t in [0, 1] -> [r, g, b]
  const f = (x) => Math.max(0, Math.min(1, 1.5 - Math.abs(4 * t - x)));
  return [255 * f(3), 255 * f(2), 255 * f(1)];
}

function render() {
  if (!S.raw) return;
  const n = S.rows * S.cols;
  const gray = new ImageData(S.cols, S.rows), heat = new ImageData(S.cols, S.rows);
  const lo = S.wl - S.ww / 2;
  for (let i = 0; i < n; i++) {
    const g = Math.max(0, Math.min(255, 255 * (S.raw[i] - lo) / S.ww));
    gray.data[4 * i] = gray.data[4 * i + 1] = gray.data[4 * i + 2] = g; gray.data[4 * i + 3] = 255;
    const p = S.map[i] / 255;
    if (S.heatmap && p >= 0.05) {
      const [r, gg, b] = jet(p);
      heat.data[4 * i] = r; heat.data[4 * i + 1] = gg; heat.data[4 * i + 2] = b; heat.data[4 * i + 3] = 255 * S.opacity;
    }
  }
  const layer = (img) => { const o = document.createElement("canvas"); o.width = S.cols; o.height = S.rows; o.getContext("2d").putImageData(img, 0, 0); return o; };
  const c = $("canvas"), ctx = c.getContext("2d");
  const { s, ox, oy } = view();
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, c.width, c.height);
  ctx.drawImage(layer(gray), ox, oy, S.cols * s, S.rows * s);
  ctx.drawImage(layer(heat), ox, oy, S.cols * s, S.rows * s);
  ctx.font = "bold 12px sans-serif";
  for (const m of shown()) {
    if (m.volume !== S.vol || m.slice !== S.slice) continue;
    const x = ox + (m.x + 0.5) * s, y = oy + (m.y + 0.5) * s;
    ctx.strokeStyle = ctx.fillStyle = MARKER; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.arc(x, y, Math.max(8, 6 * s), 0, 2 * Math.PI); ctx.stroke();
    ctx.fillRect(Math.round(x) - 2, Math.round(y) - 2, 5, 5);
    ctx.fillText(m.rank + ": " + m.score.toFixed(2), x + Math.max(9, 6 * s), y - 6);
  }
  $("ww").textContent = +S.ww.toPrecision(4); $("wl").textContent = +S.wl.toPrecision(4);
  list();
}

function shown() { return S.candidates.filter((c) => c.score >= S.threshold); }

function mm(c) { return c.x_mm !== undefined && c.x_mm !== null ? c.x_mm + ", " + c.y_mm + ", " + c.z_mm + " " + c.space : ""; }

function list() {
  $("threshold-label").textContent = S.threshold.toFixed(2) + " (" + shown().length + " of " + S.candidates.length + ")";
  const body = $("candidates").querySelector("tbody");
  body.innerHTML = "";
  for (const c of shown()) {
    const tr = document.createElement("tr");
    tr.dataset.rank = c.rank;
    if (c.volume === S.vol && c.slice === S.slice) tr.className = "current";
    [c.rank, S.volumes[c.volume].name, c.slice + 1, c.score.toFixed(3), c.size_px, mm(c)].forEach((t) => {
      const td = document.createElement("td"); td.textContent = t; tr.appendChild(td);
    });
    tr.addEventListener("click", () => jumpTo(c));
    body.appendChild(tr);
  }
}

async function jumpTo(c) {
  if (c.volume !== S.vol) await selectVolume(c.volume, c.slice);
  else await setSlice(c.slice);
  const cv = $("canvas"), { s } = view();
  S.panX = cv.width / 2 - (cv.width - S.cols * s) / 2 - (c.x + 0.5) * s;
  S.panY = cv.height / 2 - (cv.height - S.rows * s) / 2 - (c.y + 0.5) * s;
  render();
}

function cursor(ev) {
  if (!S.raw) return;
  const { s, ox, oy } = view(), r = $("canvas").getBoundingClientRect();
  const col = Math.floor((ev.clientX - r.left - ox) / s), row = Math.floor((ev.clientY - r.top - oy) / s);
  if (col < 0 || row < 0 || col >= S.cols || row >= S.rows) { $("cursor").textContent = ""; return; }
  const v = S.volumes[S.vol], g = v.geometry, value = S.raw[row * S.cols + col];
  let text = "x " + col + ", y " + row + " px, slice " + (S.slice + 1) + "/" + v.n_slices + ", " +
             (v.units === "HU" ? Math.round(value) + " HU" : value.toFixed(3)) + ", p " + (S.map[row * S.cols + col] / 255).toFixed(2);
  if (g) {
    const o = g.origins[S.slice], p = [0, 1, 2].map((i) => (o[i] + row * g.row_step[i] + col * g.col_step[i]).toFixed(1));
    text += ", (" + p.join(", ") + ") mm " + g.space;
  }
  $("cursor").textContent = text;
}

// --- input --------------------------------------------------------------------------------------------------
function bind() {
  const cv = $("canvas");
  cv.addEventListener("contextmenu", (e) => e.preventDefault());
  cv.addEventListener("wheel", (e) => {
    e.preventDefault();
    if (!S.raw) return;
    if (e.ctrlKey || e.metaKey) { S.zoom = Math.max(0.25, Math.min(16, S.zoom * (e.deltaY < 0 ? 1.2 : 1 / 1.2))); render(); }
    else setSlice(S.slice + (e.deltaY > 0 ? 1 : -1));
  }, { passive: false });
  cv.addEventListener("mousedown", (e) => { S.drag = { x: e.clientX, y: e.clientY, wl: e.button === 2 || e.shiftKey, panX: S.panX, panY: S.panY, ww: S.ww, lev: S.wl }; });
  window.addEventListener("mouseup", () => { S.drag = null; });
  cv.addEventListener("mousemove", (e) => {
    cursor(e);
    const d = S.drag;
    if (!d) return;
    const dx = e.clientX - d.x, dy = e.clientY - d.y;
    if (d.wl) { const unit = Math.max(d.ww, 1e-6) / 200; S.ww = Math.max(unit, d.ww + dx * unit); S.wl = d.lev + dy * unit; }
    else { S.panX = d.panX + dx; S.panY = d.panY + dy; }
    render();
  });
  document.addEventListener("keydown", (e) => {
    if (!S.raw || e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    if (e.key === "ArrowUp" || e.key === "ArrowRight") setSlice(S.slice + 1);
    else if (e.key === "ArrowDown" || e.key === "ArrowLeft") setSlice(S.slice - 1);
    else if (e.key === "+") { S.zoom *= 1.2; render(); } else if (e.key === "-") { S.zoom /= 1.2; render(); }
  });
  $("slice").addEventListener("input", (e) => setSlice(Number(e.target.value)));
  $("volume").addEventListener("change", (e) => selectVolume(e.target.value, null));
  $("heatmap").addEventListener("change", (e) => { S.heatmap = e.target.checked; render(); });
  $("opacity").addEventListener("input", (e) => { S.opacity = Number(e.target.value); render(); });
  $("threshold").addEventListener("input", (e) => { S.threshold = Number(e.target.value); render(); list(); });
  $("zoom-in").addEventListener("click", () => { S.zoom *= 1.25; render(); });
  $("zoom-out").addEventListener("click", () => { S.zoom /= 1.25; render(); });
  $("zoom-fit").addEventListener("click", () => { S.zoom = 1; S.panX = S.panY = 0; render(); });
  $("enter").addEventListener("click", enterFolder);
  $("scan-path").addEventListener("click", () => startScan({ path: $("files").value === ".." ? S.folder : $("files").value }));
  $("upload-files").addEventListener("change", (e) => uploadAndScan(e.target));
  $("upload-folder").addEventListener("change", (e) => uploadAndScan(e.target));
  $("scans").addEventListener("change", async (e) => { const job = await (await api("/api/scans/" + e.target.value)).json(); if (job.volumes.length) show(job); });
  for (const [name, wl] of Object.entries(S.info.presets)) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = name; b.dataset.preset = name;
    b.addEventListener("click", () => { [S.ww, S.wl] = wl; render(); });
    $("presets").appendChild(b);
  }
}

async function init() {
  S.info = await (await api("/api/info")).json();
  $("model").textContent = S.info.model + " (" + S.info.checkpoint + ")";
  $("threshold-label").textContent = S.threshold.toFixed(2);
  bind();
  if (S.info.folder !== null) { $("open-folder").hidden = false; await browse(""); }
}

init().catch((e) => message(e.message, "error"));
