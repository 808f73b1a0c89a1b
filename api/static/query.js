// The query side of the page, without the DOM of the form: the filter syntax, highlighting of the
// query's words, the best matching caption of a hit, and the search in the page's URL.

export const MODES = ["auto", "hybrid", "vector", "lexical"];
export const TARGETS = ["any", "image", "text", "audio"];

// Filters: the CLI's --where clauses in one line, e.g. `label=cat, duration>=2, label in cat|dog`.
// Clauses are separated by commas or semicolons; the values of `in` by `|` (or, as in the CLI,
// by commas: a piece without an operator continues the `in` list before it). Quote a value
// ("a, b" or 'x') to keep its commas, or to keep a number-looking value as text.
export const FILTER_HINT = "label=cat, duration>=2, label in cat|dog";
const CLAUSE = /^\s*((?:attrs\.)?\w+)\s*(<=|>=|!=|==|=|<|>|\s+in\s+)\s*(.*?)\s*$/i;
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

export class FilterError extends Error {}

function splitOutsideQuotes(text, separators) {
  const parts = [];
  let current = "";
  let quote = null;
  for (const ch of text) {
    if (quote) {
      if (ch === quote) quote = null;
      current += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      current += ch;
    } else if (separators.includes(ch)) {
      parts.push(current);
      current = "";
    } else {
      current += ch;
    }
  }
  if (quote) throw new FilterError(`Unclosed quote ${quote} in the filter.`);
  parts.push(current);
  return parts;
}

function scalar(raw) {
  const text = raw.trim();
  if (text === "") throw new FilterError("A filter value is missing.");
  if (NUMBER.test(text)) return Number(text);
  const quoted = /^(["'])(.*)\1$/s.exec(text);
  return quoted ? quoted[2] : text;
}

/** A filter line -> the API's `where` object ({} for an empty line); throws FilterError. */
export function parseWhere(line) {
  const where = {};
  let lastIn = null; // the list an operator-less piece continues
  for (const piece of splitOutsideQuotes(line, ",;")) {
    if (!piece.trim()) { lastIn = null; continue; }
    const m = CLAUSE.exec(piece);
    if (!m) {
      if (lastIn && !/[<>=!]/.test(piece)) { lastIn.push(scalar(piece)); continue; }
      throw new FilterError(`Cannot read the filter “${piece.trim()}”. Use FIELD=VALUE, ` +
        `FIELD!=VALUE, FIELD>=NUMBER, FIELD<NUMBER or FIELD in A|B, separated by commas ` +
        `(e.g. ${FILTER_HINT}).`);
    }
    const field = m[1];
    const op = m[2].trim().toLowerCase() === "==" ? "=" : m[2].trim().toLowerCase();
    const conds = (where[field] = where[field] || {});
    if (op in conds) throw new FilterError(`“${field} ${op}” is given twice.`);
    if (op === "in") {
      conds.in = splitOutsideQuotes(m[3], "|").map(scalar);
      lastIn = conds.in;
    } else {
      conds[op] = scalar(m[3]);
      lastIn = null;
    }
  }
  return where;
}

// Highlighting: whole words of the query, case-insensitive, words of two letters or more.
// The same function words the engine's lexical channel ignores (retrieval/store/lexical.py).
const STOP_WORDS = new Set(("a an and are as at be but by for from has have he her his i in into " +
  "is it its of on or our she so that the their them there these they this to was we were what " +
  "when where which who will with you your").split(" "));

export function queryWords(text) {
  const words = (text || "").toLowerCase().match(/[\p{L}\p{N}]+/gu) || [];
  return [...new Set(words.filter((w) => w.length > 1 && !STOP_WORDS.has(w)))];
}

function wordPattern(words) {
  if (!words.length) return null;
  const alternation = [...words].sort((a, b) => b.length - a.length)
    .map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|");
  return new RegExp(`(?<![\\p{L}\\p{N}])(?:${alternation})(?![\\p{L}\\p{N}])`, "giu");
}

/** Text nodes and <mark> elements for `text` with `words` marked: data never becomes markup. */
export function highlighted(text, words) {
  const nodes = [];
  const pattern = wordPattern(words);
  let last = 0;
  if (pattern) {
    for (const m of text.matchAll(pattern)) {
      if (m.index > last) nodes.push(document.createTextNode(text.slice(last, m.index)));
      const mark = document.createElement("mark");
      mark.textContent = m[0];
      nodes.push(mark);
      last = m.index + m[0].length;
    }
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

function countWords(text, words) {
  const pattern = wordPattern(words);
  if (!pattern || !text) return 0;
  return new Set([...text.matchAll(pattern)].map((m) => m[0].toLowerCase())).size;
}

/** The caption or transcript to show for a hit: the one sharing the most query words; among
 *  equals the first, i.e. the best-ranked of the first channel that found one. */
export function bestMatch(matched, words) {
  let best = null;
  let bestCount = -1;
  for (const m of matched || []) {
    if (!m.text) continue;
    const n = countWords(m.text, words);
    if (n > bestCount) { best = m; bestCount = n; }
  }
  return best;
}

// The search in the URL: ?q=&target=&mode=&where=&k= (and rerank=0 when it is off); the default
// target and mode are left out so shared links stay short.
export function searchToParams(s) {
  const p = new URLSearchParams();
  if (s.q) p.set("q", s.q);
  if (s.target && s.target !== "any") p.set("target", s.target);
  if (s.mode && s.mode !== "auto") p.set("mode", s.mode);
  if (s.where) p.set("where", s.where);
  if (s.k) p.set("k", String(s.k));
  if (s.rerank === false) p.set("rerank", "0");
  return p;
}

export function paramsToSearch(p) {
  const pick = (name, allowed, fallback) => (allowed.includes(p.get(name)) ? p.get(name) : fallback);
  const k = parseInt(p.get("k") || "", 10);
  return {
    q: p.get("q") || "",
    target: pick("target", TARGETS, "any"),
    mode: pick("mode", MODES, "auto"),
    where: p.get("where") || "",
    k: Number.isFinite(k) && k > 0 ? k : null,
    rerank: p.get("rerank") !== "0",
  };
}
