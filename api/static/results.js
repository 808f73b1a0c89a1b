// Search results as cards (media first, with the caption or transcript that matched) and an
// item's detail dialog.
import { $, api, mediaSrc, releaseObjectUrls, showMessage } from "./client.js";
import { bestMatch, highlighted, queryWords } from "./query.js";

function formatTimings(t) {
  return Object.entries(t).map(([k, v]) => `${k} ${v.toFixed(1)} ms`).join(" · ");
}

function renderQueryInfo(query) {
  const info = $("#query-info");
  const mode = document.createElement("span");
  mode.className = "mode";
  mode.textContent = "mode: " + (query.mode || "auto");
  info.replaceChildren(mode);
  if (query.transcript !== null && query.transcript !== undefined) {
    const heard = document.createElement("span");
    heard.className = "heard";
    heard.textContent = query.transcript.trim() ? `heard: “${query.transcript.trim()}”`
      : "heard: no speech";
    info.appendChild(heard);
  }
}

export async function renderResults(data, text) {
  releaseObjectUrls();
  const grid = $("#results");
  grid.replaceChildren();
  $("#timings").textContent = formatTimings(data.timings_ms || {});
  renderQueryInfo(data.query || {});
  // The words to mark: the typed query, or what the system heard in a spoken one.
  const words = queryWords(text || (data.query && data.query.transcript) || "");
  // Cards are built in parallel (media may be fetched with the key), then appended in rank order.
  const cards = await Promise.all(data.results.map((hit) => resultCard(hit, words)));
  grid.replaceChildren(...cards);
}

// Why a media item matched: its best caption or transcript, with the query's words marked.
function matchBlock(hit, words) {
  const best = bestMatch(hit.matched, words);
  if (!best) return null;
  const box = document.createElement("div");
  box.className = "match";
  const quote = document.createElement("q");
  quote.append(...highlighted(best.text, words));
  const via = document.createElement("span");
  via.className = "via";
  const kind = best.id === hit.id ? "transcript" : "caption";
  via.textContent = `${kind} · ${best.channel}`;
  box.append(quote, " ", via);
  const others = new Set(hit.matched.map((m) => m.text).filter((t) => t && t !== best.text));
  if (others.size) box.title = "Also matched: " + [...others].join(" / ");
  return box;
}

async function resultCard(hit, words) {
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
    p.append(...highlighted(hit.text || "", words));
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
    l.className = "label";
    l.textContent = label;
    body.appendChild(l);
  }
  if (hit.modality !== "text") {
    const match = matchBlock(hit, words);
    if (match) body.appendChild(match);
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
