// medsight viewer: pick a model, drop images, see the image (window/level), the prediction,
// the heatmap or segmentation overlay and the lesion list; download the JSON and a report.
// Plain JS, no dependencies; every text from the server goes through textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { cases: [], current: null, level: 0, width: 1, layers: {} };
const canvas = $("image-canvas");
const ctx = canvas.getContext("2d");

function apiKey() { return $("api-key").value.trim(); }
function headers() { const key = apiKey(); return key ? { "X-API-Key": key } : {}; }

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.classList.remove("hidden");
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => box.classList.add("hidden"), 8000);
}
function setStatus(text) { $("status").textContent = text; }

async function errorText(response) {
  try { const body = await response.json(); return body.detail || response.statusText; }
  catch (e) { return response.statusText; }
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (response.status === 401) { setStatus("Enter the API key"); $("api-key").focus(); return; }
  if (!response.ok) { showError(await errorText(response)); return; }
  const models = await response.json();
  const select = $("model");
  select.replaceChildren();
  for (const m of models) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = `${m.name} (${m.task})`;
    select.append(option);
  }
  setStatus(models.length ? "Ready: drop images" : "No models loaded");
}

// ---- uploads ------------------------------------------------------------------------------
async function analyse(files) {
  for (const file of files) {
    const item = { file: file.name, result: null, error: null, li: document.createElement("li") };
    item.li.textContent = `${file.name} …`;
    item.li.addEventListener("click", () => select(item));
    $("cases").append(item.li);
    state.cases.push(item);
    setStatus(`Analysing ${file.name}…`);
    const form = new FormData();
    form.append("file", file);
    const params = new URLSearchParams({ model: $("model").value, heatmap: "true", image: "true" });
    try {
      const response = await fetch(`/v1/predict?${params}`, { method: "POST", headers: headers(), body: form });
      if (!response.ok) throw new Error(`${file.name}: ${await errorText(response)}`);
      item.result = await response.json();
      item.li.textContent = `${file.name}: ${item.result.label ?? "done"}`;
      select(item);
    } catch (e) {
      item.error = e.message;
      item.li.textContent = `${file.name}: failed`;
      item.li.classList.add("failed");
      showError(e.message);
    }
  }
  setStatus("Ready: drop images");
}

function select(item) {
  for (const c of state.cases) c.li.classList.toggle("selected", c === item);
  if (!item.result) { if (item.error) showError(item.error); return; }
  state.current = item;
  const img = item.result.image;
  state.pixels = img ? decodePixels(img) : null;
  if (img) { state.level = img.window.level; state.width = img.window.width; }
  state.layers = {};
  for (const name of ["heatmap", "mask"]) {
    const layer = item.result[name];
    if (!layer) continue;
    const picture = new Image();
    picture.onload = draw;
    picture.src = `data:image/png;base64,${layer.png}`;
    state.layers[name] = picture;
  }
  $("layer-mask").disabled = !item.result.mask;
  $("layer-heatmap").disabled = !item.result.heatmap;
  if (item.result.mask) $("layer-mask").checked = true;
  else if (item.result.heatmap) $("layer-heatmap").checked = true;
  setupWindowControls(img);
  showResult(item);
  draw();
}

// ---- the image: raw pixels with window/level -------------------------------------------------
function decodePixels(img) {
  const bytes = Uint8Array.from(atob(img.data), (c) => c.charCodeAt(0));
  const types = { int16: Int16Array, float32: Float32Array, uint8: Uint8Array };
  return new types[img.dtype](bytes.buffer);
}

function setupWindowControls(img) {
  $("controls").classList.toggle("hidden", !img);
  $("empty-hint").classList.toggle("hidden", !!img);
  if (!img) return;
  const grey = img.channels === 1;
  $("window-box").disabled = !grey;
  const span = Math.max(img.max - img.min, 1);
  Object.assign($("level"), { min: img.min - span, max: img.max + span });
  Object.assign($("width"), { min: 1, max: span * 2 });
  const presets = $("presets");
  presets.replaceChildren();
  const all = { auto: img.window, ...(img.presets || {}) };
  for (const [name, w] of Object.entries(all)) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "preset";
    button.dataset.preset = name;
    button.textContent = name;
    button.addEventListener("click", () => { state.level = w.level; state.width = w.width; draw(); });
    presets.append(button);
  }
}

function renderImage(img) {
  const off = document.createElement("canvas");
  off.width = img.width; off.height = img.height;
  const octx = off.getContext("2d");
  const out = octx.createImageData(img.width, img.height);
  const px = state.pixels, n = img.width * img.height;
  if (img.channels === 1) {
    const low = state.level - state.width / 2, scale = 255 / state.width;
    for (let i = 0; i < n; i++) {
      const v = Math.max(0, Math.min(255, (px[i] - low) * scale));
      out.data[4 * i] = out.data[4 * i + 1] = out.data[4 * i + 2] = v;
      out.data[4 * i + 3] = 255;
    }
  } else {
    for (let i = 0; i < n; i++) {
      out.data.set([px[3 * i], px[3 * i + 1], px[3 * i + 2], 255], 4 * i);
    }
  }
  octx.putImageData(out, 0, 0);
  return off;
}

function draw() {
  const item = state.current;
  if (!item || !item.result.image) return;
  const img = item.result.image;
  const scale = Math.min(512 / img.width, 512 / img.height);
  canvas.width = Math.round(img.width * scale);
  canvas.height = Math.round(img.height * scale);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(renderImage(img), 0, 0, canvas.width, canvas.height);
  const which = document.querySelector("input[name=layer]:checked").value;
  const layer = state.layers[which];
  if (layer && layer.complete && layer.naturalWidth) {
    ctx.globalAlpha = Number($("opacity").value) / 100;
    ctx.drawImage(layer, 0, 0, canvas.width, canvas.height);
    ctx.globalAlpha = 1;
  }
  $("level").value = state.level; $("width").value = state.width;
  $("level-value").textContent = Math.round(state.level);
  $("width-value").textContent = Math.round(state.width);
  canvas.dataset.drawn = which;  // for tests and accessibility tools: what is shown
}

// ---- the result panel -------------------------------------------------------------------------
function showResult(item) {
  const r = item.result;
  $("result").classList.remove("hidden");
  $("result-file").textContent = `${item.file} · model ${r.model}`;
  $("result-label").textContent = r.label ?? "";
  const box = $("probabilities");
  box.replaceChildren();
  for (const [name, p] of Object.entries(r.probabilities || {})) {
    const row = document.createElement("div");
    row.className = "prob-row" + (name === r.label ? " predicted" : "");
    row.dataset.class = name;
    const text = document.createElement("span");
    text.textContent = `${name}: ${(100 * p).toFixed(1)}%`;
    const bar = document.createElement("div"); bar.className = "prob-bar";
    const fill = document.createElement("div"); fill.className = "prob-fill";
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    bar.append(fill); row.append(text, bar); box.append(row);
  }
  $("result-threshold").textContent = r.threshold != null ? `Decision threshold ${r.threshold}` : "";
  showLesions(r.lesions);
}

function showLesions(lesions) {
  $("lesions").classList.toggle("hidden", !lesions || !lesions.length);
  const body = document.querySelector("#lesion-table tbody");
  body.replaceChildren();
  if (!lesions) return;
  const volume = lesions.some((l) => l.volume_mm3 != null);
  $("size-head").textContent = volume ? "Volume (mm³)" : "Area (mm²)";
  for (const l of lesions) {
    const row = document.createElement("tr");
    const size = volume ? l.volume_mm3 : l.area_mm2;
    for (const v of [l.id, (l.centroid_mm || []).map((c) => c.toFixed(1)).join(", "),
                     size != null ? size.toFixed(1) : "–", l.diameter_mm != null ? l.diameter_mm.toFixed(1) : "–",
                     l.probability != null ? l.probability.toFixed(2) : "–"]) {
      const cell = document.createElement("td"); cell.textContent = String(v); row.append(cell);
    }
    body.append(row);
  }
}

// ---- downloads --------------------------------------------------------------------------------
function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url; a.download = name; document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
function baseName() { return (state.current?.file || "result").replace(/\.[^.]*$/, "").replace(/[^\w.-]+/g, "_"); }
function withoutPixels(r) { const copy = { ...r }; delete copy.image; return copy; }

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function reportHtml(item) {
  const r = item.result;
  const probs = Object.entries(r.probabilities || {})
    .map(([n, p]) => `<tr><td>${escapeHtml(n)}</td><td>${(100 * p).toFixed(1)}%</td></tr>`).join("");
  const lesions = (r.lesions || []).map((l) => `<tr><td>${l.id}</td><td>${escapeHtml((l.centroid_mm || []).join(", "))}</td>`
    + `<td>${l.volume_mm3 ?? l.area_mm2 ?? ""}</td><td>${l.diameter_mm ?? ""}</td><td>${l.probability ?? ""}</td></tr>`).join("");
  return `<!doctype html><html><head><meta charset="utf-8"><title>medsight report</title>
<style>body{font-family:sans-serif;max-width:800px;margin:2rem auto}td,th{border-bottom:1px solid #ccc;padding:4px}</style></head><body>
<h1>medsight report</h1><p>File: ${escapeHtml(item.file)}<br>Model: ${escapeHtml(r.model)} (${escapeHtml(r.task)})<br>
Created: ${new Date().toISOString()}</p><h2>Finding: ${escapeHtml(r.label ?? "")}</h2>
<table><tr><th>Class</th><th>Probability</th></tr>${probs}</table>
${lesions ? `<h2>Lesions</h2><table><tr><th>#</th><th>Centre (mm)</th><th>Size</th><th>Diameter (mm)</th><th>Prob.</th></tr>${lesions}</table>` : ""}
<h2>Image</h2><img alt="image with overlay" src="${canvas.toDataURL("image/png")}">
<p><small>Decision support only: a model's output is not a diagnosis.</small></p></body></html>`;
}

// ---- wiring -----------------------------------------------------------------------------------
function wire() {
  const saved = sessionStorage.getItem("medsight-key");
  if (saved) $("api-key").value = saved;
  $("api-key").addEventListener("change", () => { sessionStorage.setItem("medsight-key", apiKey()); loadModels(); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); analyse([...e.dataTransfer.files]); });
  $("file-input").addEventListener("change", (e) => { analyse([...e.target.files]); e.target.value = ""; });
  $("level").addEventListener("input", (e) => { state.level = Number(e.target.value); draw(); });
  $("width").addEventListener("input", (e) => { state.width = Math.max(1, Number(e.target.value)); draw(); });
  $("opacity").addEventListener("input", (e) => { $("opacity-value").textContent = `${e.target.value}%`; draw(); });
  for (const radio of document.querySelectorAll("input[name=layer]")) radio.addEventListener("change", draw);
  let dragging = null;  // drag: horizontal = width, vertical = level (the usual PACS gesture)
  canvas.addEventListener("pointerdown", (e) => { dragging = { x: e.clientX, y: e.clientY, level: state.level, width: state.width }; });
  window.addEventListener("pointerup", () => { dragging = null; });
  canvas.addEventListener("pointermove", (e) => {
    if (!dragging || !state.current?.result.image) return;
    const span = Math.max(state.current.result.image.max - state.current.result.image.min, 1) / 256;
    state.width = Math.max(1, dragging.width + (e.clientX - dragging.x) * span);
    state.level = dragging.level + (e.clientY - dragging.y) * span;
    draw();
  });
  $("download-json").addEventListener("click", () => {
    if (state.current) download(`${baseName()}.json`, "application/json", JSON.stringify(withoutPixels(state.current.result), null, 2));
  });
  $("download-report").addEventListener("click", () => {
    if (state.current) download(`${baseName()}-report.html`, "text/html", reportHtml(state.current));
  });
  loadModels().catch((e) => showError(`cannot reach the service: ${e.message}`));
}

wire();
