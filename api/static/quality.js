// The "Search quality" panel: the last `crossmedia eval` of this catalogue (GET /v1/stats,
// info.last_eval): recall of its own captions as queries, with chance, and the drift note.
import { $ } from "./client.js";

const pct = (x) => `${(100 * x).toFixed(1)}%`;

export function showEval(last) {
  const panel = $("#eval-panel");
  const body = $("#eval-body");
  if (!last) {
    panel.hidden = false;
    body.replaceChildren(text("p", "No evaluation yet: run `crossmedia eval` on the server."));
    return;
  }
  panel.hidden = false;
  if (last.error) {
    body.replaceChildren(text("p", last.error));
    return;
  }
  const parts = [text("p", `Measured ${last.at || ""} on ${last.model}, its own captions as queries.`)];
  const table = document.createElement("table");
  table.appendChild(row("th", ["task", "stage", "R@1", "R@5", "R@10", "gallery", "chance R@10"]));
  for (const [task, r] of Object.entries(last.tasks || {})) {
    for (const stage of ["first_stage", "reranked"]) {
      const m = r[stage];
      if (!m) continue;
      table.appendChild(row("td", [task.replaceAll("_", " "), stage.replace("_", " "),
        pct(m["R@1"]), pct(m["R@5"]), pct(m["R@10"]), String(r.gallery), pct(r["chance_R@10"])]));
    }
  }
  parts.push(table);
  for (const [modality, d] of Object.entries(last.drift || {})) {
    const p = text("p", `Drift (${modality}): ${d.note}`);
    if (d.warning) p.className = "error";
    parts.push(p);
  }
  body.replaceChildren(...parts);
}

function text(tag, content) {
  const el = document.createElement(tag);
  el.textContent = content;
  return el;
}

function row(cell, values) {
  const tr = document.createElement("tr");
  for (const v of values) tr.appendChild(text(cell, v));
  return tr;
}
