// medsight viewer: pick a model, drop images, see the image (window/level), the prediction,
// the heatmap or segmentation overlay, the lesion list and (for a model with an index) similar
// earlier cases; download the JSON and a report.
// The Worklist tab lists the node's studies, most urgent first, with accept/reject per row.
// Plain JS, no dependencies; every text from the server goes through textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { cases: [], current: null, level: 0, width: 1, layers: {}, models: [], modelsAsked: 0,
                worklist: { next: null } };
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

// The model list, loaded at start and again as the key is typed or pasted (the latest answer wins).
async function loadModels() {
  const asked = ++state.modelsAsked;
  const response = await fetch("/v1/models", { headers: headers() });
  if (asked !== state.modelsAsked) return;  // a newer key was typed meanwhile
  if (response.status === 401) {
    setStatus("Enter the API key");
    if (document.activeElement !== $("api-key")) $("api-key").focus();
    return;
  }
  if (!response.ok) { showError(await errorText(response)); return; }
  const models = await response.json();
  state.models = models;
  const select = $("model");
  const before = select.value;
  select.replaceChildren();
  for (const m of models) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = `${m.name} (${m.task})`;
    select.append(option);
  }
  if (models.some((m) => m.name === before)) select.value = before;
  else if (models.length === 1) select.value = models[0].name;  // a single model: use it
  showSimilarBox();
  setStatus(models.length ? "Ready: drop images" : "No models loaded");
  if (!$("worklist-page").classList.contains("hidden")) loadWorklist(true);
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

function keyChanged() {
  sessionStorage.setItem("medsight-key", apiKey());
  loadModels().catch((e) => showError(`cannot reach the service: ${e.message}`));
}

// The model to ask for: the one picked, or none when the service has a single model (it uses it).
async function chosenModel() {
  if (!$("model").value && !state.models.length) await loadModels();
  return $("model").value || (state.models.length === 1 ? state.models[0].name : "");
}

// Similar cases: asked for only of a model served with an index (its similar_cases > 0).
function modelInfo(name) { return state.models.find((m) => m.name === name); }
function showSimilarBox() {
  const info = modelInfo($("model").value);
  $("similar-box").classList.toggle("hidden", !(info && info.similar_cases));
}
function similarK(model) {
  const info = modelInfo(model);
  if (!info || !info.similar_cases) return 0;
  const k = Math.round(Number($("similar-k").value));
  return Number.isFinite(k) ? Math.min(50, Math.max(1, k)) : 5;
}

function markFailed(item, message) {
  item.error = message;
  const name = document.createElement("span");
  name.textContent = `${item.file}: `;
  const detail = document.createElement("span");
  detail.className = "error-detail";
  detail.textContent = message;  // the service's own words (its JSON "detail")
  item.li.replaceChildren(name, detail);
  item.li.classList.add("failed");
  item.li.title = message;
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
    try {
      const model = await chosenModel();
      const params = new URLSearchParams({ heatmap: "true", image: "true" });
      if (model) params.set("model", model);
      const k = similarK(model);
      if (k) params.set("similar", String(k));
      const response = await fetch(`/v1/predict?${params}`, { method: "POST", headers: headers(), body: form });
      if (!response.ok) throw new Error(await errorText(response));
      item.result = await response.json();
      item.li.textContent = `${file.name}: ${item.result.label ?? "done"}`;
      select(item);
    } catch (e) {
      markFailed(item, e.message);
      showError(`${file.name}: ${e.message}`);
    }
  }
  setStatus("Ready: drop images");
}

function select(item) {
  for (const c of state.cases) c.li.classList.toggle("selected", c === item);
  if (!item.result) { if (item.error) showError(`${item.file}: ${item.error}`); return; }
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
  showSimilar(r.similar);
}

function showSimilar(similar) {
  $("similar").classList.toggle("hidden", !similar || !similar.length);
  const body = document.querySelector("#similar-table tbody");
  body.replaceChildren();
  for (const s of similar || []) {
    const row = document.createElement("tr");
    for (const v of [s.case, s.label, s.distance.toFixed(3)]) {
      const cell = document.createElement("td"); cell.textContent = String(v); row.append(cell);
    }
    body.append(row);
  }
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
  const similar = (r.similar || []).map((c) => `<tr><td>${escapeHtml(c.case)}</td><td>${escapeHtml(c.label)}</td>`
    + `<td>${c.distance.toFixed(3)}</td></tr>`).join("");
  return `<!doctype html><html><head><meta charset="utf-8"><title>medsight report</title>
<style>body{font-family:sans-serif;max-width:800px;margin:2rem auto}td,th{border-bottom:1px solid #ccc;padding:4px}</style></head><body>
<h1>medsight report</h1><p>File: ${escapeHtml(item.file)}<br>Model: ${escapeHtml(r.model)} (${escapeHtml(r.task)})<br>
Created: ${new Date().toISOString()}</p><h2>Finding: ${escapeHtml(r.label ?? "")}</h2>
<table><tr><th>Class</th><th>Probability</th></tr>${probs}</table>
${lesions ? `<h2>Lesions</h2><table><tr><th>#</th><th>Centre (mm)</th><th>Size</th><th>Diameter (mm)</th><th>Prob.</th></tr>${lesions}</table>` : ""}
${similar ? `<h2>Similar earlier cases</h2><table><tr><th>Case</th><th>Label</th><th>Distance</th></tr>${similar}</table>` : ""}
<h2>Image</h2><img alt="image with overlay" src="${canvas.toDataURL("image/png")}">
<p><small>Decision support only: a model's output is not a diagnosis.</small></p></body></html>`;
}

// ---- the worklist ------------------------------------------------------------------------------
function showPage(name) {
  const worklist = name === "worklist";
  $("viewer-page").classList.toggle("hidden", worklist);
  $("worklist-page").classList.toggle("hidden", !worklist);
  $("tab-viewer").classList.toggle("active", !worklist);
  $("tab-worklist").classList.toggle("active", worklist);
  $("tab-viewer").setAttribute("aria-pressed", String(!worklist));
  $("tab-worklist").setAttribute("aria-pressed", String(worklist));
  if (worklist) loadWorklist(true);
}

function worklistQuery(reset) {
  const params = new URLSearchParams({ limit: "50" });
  const status = $("wl-status").value, modality = $("wl-modality").value.trim();
  if (status) params.set("status", status);
  if (modality) params.set("modality", modality);
  if ($("wl-since").value) params.set("since", $("wl-since").value);
  if ($("wl-until").value) params.set("until", $("wl-until").value);
  if (!reset && state.worklist.next) params.set("cursor", state.worklist.next);
  return params;
}

async function loadWorklist(reset) {
  const body = document.querySelector("#worklist-table tbody");
  let response;
  try {
    response = await fetch(`/v1/worklist?${worklistQuery(reset)}`, { headers: headers() });
  } catch (e) { $("wl-message").textContent = `cannot reach the service: ${e.message}`; return; }
  if (!response.ok) {
    $("wl-message").textContent = response.status === 401 ? "Enter the API key" : await errorText(response);
    if (reset) body.replaceChildren();
    $("wl-more").classList.add("hidden");
    return;
  }
  const page = await response.json();
  if (reset) body.replaceChildren();
  for (const item of page.items) body.append(worklistRow(item));
  state.worklist.next = page.next;
  $("wl-more").classList.toggle("hidden", !page.next);
  const shown = body.children.length;
  $("wl-message").textContent = shown ? `${shown} row${shown === 1 ? "" : "s"}${page.next ? " (more below)" : ""}`
                                      : "No studies match.";
}

function percent(p) { return p == null ? "–" : `${(100 * p).toFixed(1)}%`; }
function duration(minutes) {
  if (minutes == null) return "–";
  return minutes < 1 ? `${Math.round(minutes * 60)} s` : minutes < 120 ? `${minutes.toFixed(1)} min`
                                                                       : `${(minutes / 60).toFixed(1)} h`;
}
function verdictText(feedback) {
  if (!feedback) return "–";
  const word = feedback.accepted ? "accepted" : "rejected";
  return feedback.comment ? `${word}: ${feedback.comment}` : word;
}

function worklistRow(item) {
  const row = document.createElement("tr");
  row.dataset.study = item.study_uid;
  row.dataset.job = String(item.job_id);
  row.classList.add(`status-${item.status}`);
  if (item.out_of_distribution) row.classList.add("flagged");
  const study = item.patient_name != null || item.patient_id != null
    ? `${item.patient_name ?? ""} ${item.patient_id ?? ""} · ${item.study_uid}` : item.study_uid;
  const finding = item.finding ?? "";
  const cells = [item.priority == null ? "–" : item.priority.toFixed(2), study, item.status,
                 finding + (item.out_of_distribution ? " (unusual image)" : ""), percent(item.probability),
                 percent(item.uncertainty), duration(item.minutes_to_result), item.modality ?? "–",
                 new Date(item.received_at).toLocaleString(), verdictText(item.feedback)];
  const names = ["priority", "study", "status", "finding", "probability", "uncertainty", "time", "modality",
                 "received", "verdict"];
  cells.forEach((text, i) => {
    const cell = document.createElement("td");
    cell.className = `wl-${names[i]}`;
    cell.textContent = text;
    if (names[i] === "study") cell.title = item.study_uid;
    row.append(cell);
  });
  row.append(worklistActions(item, row));
  return row;
}

function worklistActions(item, row) {
  const cell = document.createElement("td");
  cell.className = "wl-actions";
  const open = document.createElement("button");
  open.type = "button"; open.className = "wl-open"; open.textContent = "Open";
  open.disabled = !item.viewable;
  open.title = item.viewable ? "Open the image this finding refers to in the viewer"
                             : "Cannot be opened here (the service needs the PACS and this row's model)";
  open.addEventListener("click", () => openStudy(item, open));
  const comment = document.createElement("input");
  comment.className = "wl-comment"; comment.placeholder = "comment (optional)"; comment.maxLength = 2000;
  comment.setAttribute("aria-label", "Comment");
  const accept = document.createElement("button");
  accept.type = "button"; accept.className = "wl-accept"; accept.textContent = "Accept";
  const reject = document.createElement("button");
  reject.type = "button"; reject.className = "wl-reject"; reject.textContent = "Reject";
  for (const [button, accepted] of [[accept, true], [reject, false]]) {
    button.disabled = item.status !== "done";
    button.addEventListener("click", () => sendVerdict(item, accepted, comment, row));
  }
  cell.append(open, comment, accept, reject);
  return cell;
}

async function sendVerdict(item, accepted, comment, row) {
  const body = { accepted, job_id: item.job_id };
  if (comment.value.trim()) body.comment = comment.value.trim();
  const response = await fetch(`/v1/worklist/${encodeURIComponent(item.study_uid)}/feedback`, {
    method: "POST", headers: { ...headers(), "Content-Type": "application/json" }, body: JSON.stringify(body) });
  if (!response.ok) { showError(await errorText(response)); return; }
  const saved = await response.json();
  item.feedback = saved;
  row.querySelector(".wl-verdict").textContent = verdictText(saved);
  row.dataset.verdict = accepted ? "accepted" : "rejected";
  comment.value = "";
}

async function openStudy(item, button) {
  button.disabled = true;
  try {
    const response = await fetch(`/v1/worklist/${encodeURIComponent(item.study_uid)}/view?job_id=${item.job_id}`,
                                 { headers: headers() });
    if (!response.ok) throw new Error(await errorText(response));
    const result = await response.json();
    const entry = { file: `study …${item.study_uid.slice(-12)}`, result, error: null,
                    li: document.createElement("li") };
    entry.li.textContent = `${entry.file}: ${result.label ?? "done"}`;
    entry.li.addEventListener("click", () => select(entry));
    $("cases").append(entry.li);
    state.cases.push(entry);
    showPage("viewer");
    select(entry);
  } catch (e) {
    showError(`study ${item.study_uid}: ${e.message}`);
  } finally {
    button.disabled = !item.viewable;
  }
}

// ---- wiring -----------------------------------------------------------------------------------
function wire() {
  const saved = sessionStorage.getItem("medsight-key");
  if (saved) $("api-key").value = saved;
  // typed, pasted or filled in: no need to leave the field
  $("api-key").addEventListener("input", debounce(keyChanged, 300));
  $("api-key").addEventListener("change", keyChanged);
  $("model").addEventListener("change", showSimilarBox);
  $("tab-viewer").addEventListener("click", () => showPage("viewer"));
  $("tab-worklist").addEventListener("click", () => showPage("worklist"));
  $("worklist-filters").addEventListener("submit", (e) => { e.preventDefault(); loadWorklist(true); });
  $("wl-more").addEventListener("click", () => loadWorklist(false));
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
