// The search API client (see docs/api.md): /api/recent, /api/search, /api/similar, /api/search/image,
// /api/collections, /api/stats, /api/health, /api/places, /api/discover, /api/saved-searches. Every call goes
// through api(), which sends the stored API key and turns every failure into an ApiError whose message says
// what to do.

import { config } from "./config.js";

const API_KEY_STORAGE = "imageBrowser.apiKey";

// Set by main.js: what to do when the API asks for a key (show the key form).
let onUnauthorized = () => {};

class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

function readApiKey() {
  try {
    return localStorage.getItem(API_KEY_STORAGE) || "";
  } catch {
    return ""; // storage disabled (private mode): no key
  }
}

// Throws when the browser does not allow site storage.
export function saveApiKey(key) {
  localStorage.setItem(API_KEY_STORAGE, key);
}

function apiUrl(path, params = {}) {
  const url = new URL(`${config.apiBase}${path}`, location.href);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
  }
  return url;
}

export async function api(path, params = {}, init = {}) {
  const url = apiUrl(path, params);
  const headers = new Headers(init.headers || {});
  headers.set("accept", "application/json");
  const key = readApiKey();
  if (key) headers.set("x-api-key", key);
  let res;
  try {
    res = await fetch(url, { ...init, headers });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(
      `Could not reach the API at ${url.origin} (${err.message}). ` +
        "Check that the server is running and that apiBase in config.json points at it.",
      0,
      "network",
    );
  }
  if (res.status === 204) return null; // No Content: a DELETE done
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok) {
    if (res.status === 401) onUnauthorized();
    const message =
      body && body.error && body.error.message
        ? body.error.message
        : `The API answered ${res.status} ${res.statusText || ""} for ${url.pathname}.`;
    throw new ApiError(message, res.status, (body && body.error && body.error.code) || `http_${res.status}`);
  }
  if (body === null || typeof body !== "object") {
    throw new ApiError(`The API answered ${url.pathname} with something that is not JSON.`, res.status, "bad_json");
  }
  return body;
}

// A write with a JSON body (POST a saved search); the answer as api() gives it.
export function apiSend(method, path, params, body) {
  return api(path, params, {
    method,
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

// Item URLs are normally absolute (presigned or CDN); a relative one (e.g. the API's own redirect
// route) belongs to the API, which may be on another origin than this page.
export function resolveMediaUrl(url) {
  if (!url) return null;
  try {
    return new URL(url, new URL(`${config.apiBase}/`, location.href)).href;
  } catch {
    return null;
  }
}
