// crossmedia web page: plain JS, no build step. Talks to the /v1 API of the server that served it.
"use strict";

const $ = (sel) => document.querySelector(sel);
const KEY_STORAGE = "crossmedia.apiKey";
const state = { file: null, objectUrls: [], seq: 0 };

function apiKey() { return localStorage.getItem(KEY_STORAGE) || ""; }

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: "Bearer " + key } : {};
}

function showMessage(text, isError = false) {
  const el = $("#message");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {}, authHeaders());
  let resp;
  try {
    resp = await fetch(path, Object.assign({}, options, { headers }));
  } catch (err) {
    throw new Error("Cannot reach the server: " + err.message);
  }
  if (!resp.ok) {
    let message = resp.status + " " + resp.statusText;
    try {
      const body = await resp.json();
      if (body && body.error) message = body.error.message + " (" + body.error.code + ")";
    } catch (_) { /* not JSON: keep the status line */ }
    if (resp.status === 401) message += " — enter an API key above.";
    if (resp.status === 429) message += " Retry after " + (resp.headers.get("Retry-After") || "a few") + " s.";
    const err = new Error(message);
    err.status = resp.status;
    throw err;
  }
  return resp;
}

// Media URLs: direct when the server is open; fetched with the key into blob URLs otherwise,
// because <img> and <audio> cannot send an Authorization header.
async function mediaSrc(url) {
  if (!apiKey()) return url;
  const resp = await api(url);
  const objectUrl = URL.createObjectURL(await resp.blob());
  state.objectUrls.push(objectUrl);
  return objectUrl;
}

function releaseObjectUrls() {
  state.objectUrls.forEach((u) => URL.revokeObjectURL(u));
  state.objectUrls = [];
}

function selected(name) {
  const el = document.querySelector(`input[name=${name}]:checked`);
  return el ? el.value : "any";
}

async function runSearch() {
  const text = $("#q").value.trim();
  const target = selected("target");
  const k = parseInt($("#k").value, 10);
  const rerank = $("#rerank").checked;
  let options;
  if (state.file) {
    const form = new FormData();
    const field = state.file.type.startsWith("audio/") ? "audio" : "image";
    form.append(field, state.file, state.file.name || field);
    form.append("target", target);
    form.append("k", String(k));
    form.append("rerank", String(rerank));
    options = { method: "POST", body: form };
  } else if (text) {
    options = {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text, target, k, rerank }),
    };
  } else {
    showMessage("Type a query, or drop an image or audio file.", true);
    return;
  }
  showMessage("Searching…");
  $("#go").disabled = true;
  const seq = ++state.seq; // a slower, older answer must not replace a newer one
  try {
    const resp = await api("/v1/search", options);
    const data = await resp.json();
    if (seq !== state.seq) return;
    await renderResults(data);
    const what = state.file ? state.file.name || "the file" : `“${text}”`;
    showMessage(`${data.results.length} result(s) for ${what}.`);
  } catch (err) {
    showMessage(err.message, true);
  } finally {
    $("#go").disabled = false;
  }
}

function formatTimings(t) {
  return Object.entries(t).map(([k, v]) => `${k} ${v.toFixed(1)} ms`).join(" · ");
}

async function renderResults(data) {
  releaseObjectUrls();
  const grid = $("#results");
  grid.replaceChildren();
  $("#timings").textContent = formatTimings(data.timings_ms || {});
  // Cards are built in parallel (media may be fetched with the key), then appended in rank order.
  const cards = await Promise.all(data.results.map(resultCard));
  grid.replaceChildren(...cards);
}

async function resultCard(hit) {
  const card = document.createElement("article");
  card.className = "card";
  card.tabIndex = 0;
  card.dataset.id = hit.id;
  card.dataset.modality = hit.modality;
  if (hit.modality === "image" && hit.thumb_url) {
    const box = document.createElement("div");
    box.className = "thumb";
    const img = document.createElement("img");
    img.alt = hit.text || `image ${hit.id}`;
    img.loading = "lazy";
    try { img.src = await mediaSrc(hit.thumb_url); } catch (err) { img.alt = err.message; }
    box.appendChild(img);
    card.appendChild(box);
  } else if (hit.modality === "audio" && hit.media_url) {
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = "none";
    // Long recordings start where the query matched best (a media fragment).
    const start = hit.segment ? `#t=${hit.segment.offset_s.toFixed(1)}` : "";
    try { audio.src = (await mediaSrc(hit.media_url)) + start; } catch (err) { /* shown on open */ }
    audio.addEventListener("click", (e) => e.stopPropagation());
    card.appendChild(audio);
  } else {
    const p = document.createElement("div");
    p.className = "text";
    p.textContent = hit.text || "";
    card.appendChild(p);
  }
  const body = document.createElement("div");
  body.className = "body";
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.textContent = hit.modality;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = "score " + hit.score.toFixed(3);
  body.append(badge, score);
  const label = hit.attrs && (hit.attrs.label || hit.attrs.filename);
  if (label && hit.modality !== "text") {
    const l = document.createElement("div");
    l.textContent = label;
    body.appendChild(l);
  }
  card.appendChild(body);
  const open = () => openItem(hit.id);
  card.addEventListener("click", open);
  card.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
  return card;
}

async function openItem(id) {
  const dialog = $("#detail");
  const box = $("#detail-body");
  box.replaceChildren();
  try {
    const item = await (await api(`/v1/items/${id}`)).json();
    if (item.modality === "image" && item.media_url) {
      const img = document.createElement("img");
      img.alt = `image ${item.id}`;
      img.src = await mediaSrc(item.media_url);
      box.appendChild(img);
    } else if (item.modality === "audio" && item.media_url) {
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.src = await mediaSrc(item.media_url);
      box.appendChild(audio);
    } else {
      const p = document.createElement("p");
      p.textContent = item.text || "";
      box.appendChild(p);
    }
    const dl = document.createElement("dl");
    const fields = { id: item.id, modality: item.modality, mime: item.mime,
      size: item.width ? `${item.width}×${item.height}` : null,
      duration: item.duration ? item.duration.toFixed(1) + " s" : null,
      attrs: Object.keys(item.attrs || {}).length ? JSON.stringify(item.attrs) : null,
      linked: item.linked.length ? item.linked.join(", ") : null };
    for (const [k, v] of Object.entries(fields)) {
      if (v === null || v === undefined) continue;
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = String(v);
      dl.append(dt, dd);
    }
    box.appendChild(dl);
    dialog.showModal();
  } catch (err) {
    showMessage(err.message, true);
  }
}

function setFile(file) {
  if (!file) return;
  if (!/^(image|audio)\//.test(file.type)) {
    showMessage(`${file.name}: not an image or audio file.`, true);
    return;
  }
  state.file = file;
  const preview = $("#query-preview");
  preview.replaceChildren();
  const url = URL.createObjectURL(file);
  if (file.type.startsWith("image/")) {
    const img = document.createElement("img");
    img.src = url;
    img.alt = file.name || "query image";
    preview.appendChild(img);
  } else {
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.src = url;
    preview.appendChild(audio);
  }
  const name = document.createElement("span");
  name.textContent = file.name || file.type;
  preview.appendChild(name);
  $("#clear-file").hidden = false;
  $("#add").hidden = false;
  showMessage("");
  runSearch();
}

function clearFile() {
  state.file = null;
  $("#query-preview").replaceChildren();
  $("#clear-file").hidden = true;
  $("#add").hidden = true;
  $("#file").value = "";
}

async function addToCatalogue() {
  if (!state.file) return;
  const form = new FormData();
  form.append("file", state.file, state.file.name || "upload");
  const caption = $("#q").value.trim();
  if (caption) form.append("captions", caption);
  showMessage("Adding to the catalogue…");
  try {
    const item = await (await api("/v1/items", { method: "POST", body: form })).json();
    showMessage(`Added as item ${item.id}; it is searchable now.`);
    loadStats();
  } catch (err) {
    showMessage(err.message, true);
  }
}

// Microphone: MediaRecorder output (WebM/Ogg Opus) is decoded by the browser and re-encoded as
// 16-bit mono WAV, which every server build can read.
let recorder = null;
async function toggleRecording() {
  const button = $("#record");
  if (recorder && recorder.state === "recording") { recorder.stop(); return; }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    showMessage("Microphone not available: " + err.message, true);
    return;
  }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => chunks.push(e.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    button.textContent = "● Record";
    try {
      const blob = new Blob(chunks, { type: recorder.mimeType });
      const wav = await toWav(blob);
      setFile(new File([wav], "recording.wav", { type: "audio/wav" }));
    } catch (err) {
      showMessage("Could not use the recording: " + err.message, true);
    }
  };
  recorder.start();
  button.textContent = "■ Stop";
  showMessage("Recording… press Stop when done.");
}

async function toWav(blob) {
  const ctx = new AudioContext();
  const decoded = await ctx.decodeAudioData(await blob.arrayBuffer());
  ctx.close();
  const n = decoded.length;
  const mono = new Float32Array(n);
  for (let c = 0; c < decoded.numberOfChannels; c++) {
    const data = decoded.getChannelData(c);
    for (let i = 0; i < n; i++) mono[i] += data[i] / decoded.numberOfChannels;
  }
  const buffer = new ArrayBuffer(44 + n * 2);
  const v = new DataView(buffer);
  const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  const rate = decoded.sampleRate;
  str(0, "RIFF"); v.setUint32(4, 36 + n * 2, true); str(8, "WAVE"); str(12, "fmt ");
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true);
  v.setUint16(34, 16, true); str(36, "data"); v.setUint32(40, n * 2, true);
  for (let i = 0; i < n; i++) {
    const s = Math.max(-1, Math.min(1, mono[i]));
    v.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([buffer], { type: "audio/wav" });
}

async function loadStats() {
  try {
    const s = await (await api("/v1/stats")).json();
    $("#stats").textContent = Object.entries(s.counts).map(([m, n]) => `${n} ${m}`).join(" · ")
      + ` · model ${s.model}`;
    const rerank = $("#rerank");
    rerank.disabled = !s.reranker;
    rerank.parentElement.title = s.reranker ? "" : "This server has no re-ranker for its model.";
  } catch (err) {
    $("#stats").textContent = err.status === 401 ? "API key needed" : "";
  }
}

function init() {
  $("#api-key").value = apiKey();
  $("#key-save").addEventListener("click", () => {
    localStorage.setItem(KEY_STORAGE, $("#api-key").value.trim());
    showMessage("API key saved in this browser.");
    loadStats();
  });
  $("#key-clear").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE);
    $("#api-key").value = "";
    showMessage("API key forgotten.");
  });
  $("#search-form").addEventListener("submit", (e) => { e.preventDefault(); runSearch(); });
  $("#q").addEventListener("input", () => { if (state.file && $("#q").value) clearFile(); });
  $("#file").addEventListener("change", (e) => setFile(e.target.files[0]));
  $("#clear-file").addEventListener("click", clearFile);
  $("#add").addEventListener("click", addToCatalogue);
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    setFile(e.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter") $("#file").click(); });
  if (window.MediaRecorder && navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    $("#record").hidden = false;
    $("#record").addEventListener("click", toggleRecording);
  }
  for (const el of document.querySelectorAll("input[name=target], #rerank, #k")) {
    el.addEventListener("change", () => { if (state.file || $("#q").value.trim()) runSearch(); });
  }
  loadStats();
}

document.addEventListener("DOMContentLoaded", init);
