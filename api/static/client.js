// The page's side of the /v1 API: the stored key, requests with errors as messages, media
// URLs.

export const $ = (sel) => document.querySelector(sel);
export const KEY_STORAGE = "crossmedia.apiKey";
const objectUrls = [];

export function apiKey() { return localStorage.getItem(KEY_STORAGE) || ""; }

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: "Bearer " + key } : {};
}

export function showMessage(text, isError = false) {
  const el = $("#message");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

export async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {}, authHeaders());
  let resp;
  try {
    resp = await fetch(path, Object.assign({}, options, { headers }));
  } catch (err) {
    throw new Error("Cannot reach the server: " + err.message);
  }
  if (!resp.ok) {
    let message = resp.status + " " + resp.statusText;
    let code = null;
    let detail = null;
    try {
      const body = await resp.json();
      if (body && body.error) {
        code = body.error.code;
        detail = body.error.message;
        message = body.error.message + " (" + body.error.code + ")";
      }
    } catch (_) { /* not JSON: keep the status line */ }
    if (resp.status === 401) message += " — enter an API key above.";
    if (resp.status === 429) message += " Retry after " + (resp.headers.get("Retry-After") || "a few") + " s.";
    const err = new Error(message);
    err.status = resp.status;
    err.code = code;
    err.detail = detail || message;
    throw err;
  }
  return resp;
}

// Media URLs: direct when the server is open; fetched with the key into blob URLs otherwise,
// because <img> and <audio> cannot send an Authorization header.
export async function mediaSrc(url) {
  if (!apiKey()) return url;
  const resp = await api(url);
  const objectUrl = URL.createObjectURL(await resp.blob());
  objectUrls.push(objectUrl);
  return objectUrl;
}

export function releaseObjectUrls() {
  objectUrls.forEach((u) => URL.revokeObjectURL(u));
  objectUrls.length = 0;
}
