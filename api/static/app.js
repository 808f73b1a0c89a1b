// crossmedia web page: plain JS modules, no build step. Talks to the /v1 API of the server that
// served it.
import { $, KEY_STORAGE, api, apiKey, showMessage } from "./client.js";
import { FILTER_HINT, FilterError, paramsToSearch, parseWhere, searchToParams } from "./query.js";
import { showEval } from "./quality.js";
import { renderResults } from "./results.js";

const state = { file: null, seq: 0 };

function showFilterError(text) {
  const el = $("#where-error");
  el.textContent = text;
  el.hidden = !text;
  $("#where").setAttribute("aria-invalid", text ? "true" : "false");
}

function selected(name) {
  const el = document.querySelector(`input[name=${name}]:checked`);
  return el ? el.value : "any";
}

// The form's search as plain values (what the URL carries).
function formSearch() {
  return {
    q: state.file ? "" : $("#q").value.trim(),
    target: selected("target"),
    mode: selected("mode"),
    where: $("#where").value.trim(),
    k: parseInt($("#k").value, 10),
    rerank: $("#rerank").checked,
  };
}

function applySearch(s) {
  $("#q").value = s.q;
  for (const name of ["target", "mode"]) {
    const el = document.querySelector(`input[name=${name}][value=${s[name]}]`);
    if (el) el.checked = true;
  }
  $("#where").value = s.where;
  if (s.k) {
    const select = $("#k");
    if (![...select.options].some((o) => o.value === String(s.k))) {
      select.appendChild(new Option(String(s.k)));
    }
    select.value = String(s.k);
  }
  if (!$("#rerank").disabled) $("#rerank").checked = s.rerank;
}

// A new text query is a new history entry; other changes (options, a file) replace the current.
function updateUrl(s) {
  const url = new URL(window.location.href);
  const params = searchToParams(s);
  url.search = params.toString();
  if (url.href === window.location.href) return;
  const previous = paramsToSearch(new URLSearchParams(window.location.search)).q;
  if (s.q && s.q !== previous) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

async function runSearch() {
  const s = formSearch();
  const text = s.q;
  const { target, k, rerank } = s;
  const mode = s.mode === "auto" ? null : s.mode;
  let where;
  try {
    where = parseWhere(s.where);
    showFilterError("");
  } catch (err) {
    if (!(err instanceof FilterError)) throw err;
    showFilterError(err.message);
    showMessage("Fix the filter to search.", true);
    return;
  }
  const hasWhere = Object.keys(where).length > 0;
  let options;
  if (state.file) {
    const form = new FormData();
    const field = state.file.type.startsWith("audio/") ? "audio" : "image";
    form.append(field, state.file, state.file.name || field);
    form.append("target", target);
    form.append("k", String(k));
    form.append("rerank", String(rerank));
    if ($("#collapse").checked) form.append("collapse", "true");
    if (mode) form.append("mode", mode);
    if (hasWhere) form.append("where", JSON.stringify(where));
    options = { method: "POST", body: form };
  } else if (text) {
    const body = { text, target, k, rerank };
    if ($("#collapse").checked) body.collapse = true;
    if (mode) body.mode = mode;
    if (hasWhere) body.where = where;
    options = {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    };
  } else {
    showMessage("Type a query, or drop an image or audio file.", true);
    return;
  }
  updateUrl(s);
  showMessage("Searching…");
  $("#go").disabled = true;
  const seq = ++state.seq; // a slower, older answer must not replace a newer one
  try {
    const resp = await api("/v1/search", options);
    const data = await resp.json();
    if (seq !== state.seq) return;
    await renderResults(data, text);
    const what = state.file ? state.file.name || "the file" : `“${text}”`;
    showMessage(`${data.results.length} result(s) for ${what}.`);
  } catch (err) {
    if (seq !== state.seq) return;
    if (isFilterError(err)) {
      showFilterError(err.detail);
      showMessage("The server did not accept the filter: " + err.message, true);
    } else {
      showMessage(err.message, true);
    }
  } finally {
    $("#go").disabled = false;
  }
}

function isFilterError(err) {
  return err.status === 422 && (/filter|where/.test(err.code || "") || /^where\b/.test(err.message));
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
    showEval(s.info && s.info.last_eval);
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
  for (const el of document.querySelectorAll("input[name=target], input[name=mode], #rerank, #collapse, #k")) {
    el.addEventListener("change", () => { if (state.file || $("#q").value.trim()) runSearch(); });
  }
  $("#where").placeholder = FILTER_HINT;
  $("#where").addEventListener("input", () => showFilterError(""));
  window.addEventListener("popstate", searchFromUrl);
  loadStats();
  searchFromUrl();
}

// A shared or reloaded link (?q=...) runs its search.
function searchFromUrl() {
  const s = paramsToSearch(new URLSearchParams(window.location.search));
  if (state.file) clearFile();
  applySearch(s);
  if (s.q) runSearch();
}

document.addEventListener("DOMContentLoaded", init);
