// Image Browser gallery: plain ES module, no build step, no third-party code.
// Talks to the search API (see README): /api/recent, /api/search, /api/similar, /api/search/image,
// /api/collections, /api/stats, /api/health. All state that a link should carry (query, collection,
// relevance cutoff) lives in the URL; everything else is in memory.

const DEFAULT_CONFIG = Object.freeze({ apiBase: "", collection: "", pageSize: 30 });
const API_KEY_STORAGE = "imageBrowser.apiKey";
const STATS_INTERVAL_MS = 5000;
const SIMILAR_PREFIX = "similar:";
const TARGET_COLUMN_WIDTH = 260; // px; the number of columns follows the grid width
const MIN_ASPECT = 0.4; // height / width clamps, so panoramas and strips stay usable tiles
const MAX_ASPECT = 2.5;
const SCROLL_MARGIN_PX = 1200; // start fetching the next page this far before the end

const $ = (selector) => document.querySelector(selector);

const els = {
  banner: $("#test-model-banner"),
  healthBanner: $("#health-banner"),
  form: $("#search-form"),
  input: $("#search-input"),
  fileInput: $("#file-input"),
  collection: $("#collection-select"),
  minScore: $("#min-score"),
  minScoreValue: $("#min-score-value"),
  stats: $("#stats"),
  showNew: $("#show-new"),
  apiKeyForm: $("#api-key-form"),
  apiKeyInput: $("#api-key-input"),
  status: $("#status"),
  statusText: $("#status-text"),
  queryImage: $("#query-image"),
  statusAction: $("#status-action"),
  grid: $("#grid"),
  sentinel: $("#sentinel"),
  moreStatus: $("#more-status"),
  dropOverlay: $("#drop-overlay"),
  lightbox: $("#lightbox"),
  lbImage: $("#lb-image"),
  lbLoading: $("#lb-loading"),
  lbKey: $("#lb-key"),
  lbDetails: $("#lb-details"),
  lbOpen: $("#lb-open"),
  lbPrev: $("#lb-prev"),
  lbNext: $("#lb-next"),
  lbClose: $("#lb-close"),
  moreLikeThis: $("#more-like-this"),
  homeLink: $("#home-link"),
};

const app = {
  config: { ...DEFAULT_CONFIG },
  state: { q: "", collection: "", minScore: 0 }, // mirrors the URL
  imageQuery: null, // {id, file, previewUrl} while searching by an uploaded image
  uploads: new Map(), // history entries of image searches: id -> {id, file, previewUrl}
  nextUploadId: 1,
  items: [],
  nextCursor: null,
  resolvedCollection: "", // the collection the server actually answered for
  serverDefaultCollection: "",
  generation: 0, // bumps on every new query so late answers of old ones are dropped
  abort: null,
  loadingMore: false,
  moreError: null,
  focusIndex: 0,
  lightboxIndex: -1,
  lightboxToken: 0,
  layout: { width: 0, cols: 0, colWidth: 0, gap: 0, heights: [] },
  embeddedAtLoad: null,
  statsTimer: 0,
  statsSeq: 0,
  sliderTimer: 0,
};

// ---------------------------------------------------------------- formatting

function formatScore(score) {
  return typeof score === "number" && Number.isFinite(score) ? score.toFixed(3) : "";
}

function formatBytes(bytes) {
  if (typeof bytes !== "number" || !Number.isFinite(bytes)) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

function formatCount(n) {
  return typeof n === "number" ? n.toLocaleString() : "–";
}

function formatDate(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

function baseName(key) {
  const parts = String(key).split("/");
  return parts[parts.length - 1] || String(key);
}

function clampScore(value) {
  return Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : 0;
}

// ---------------------------------------------------------------- config and API

async function loadConfig() {
  try {
    const res = await fetch("config.json", { cache: "no-cache" });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const raw = await res.json();
    const config = { ...DEFAULT_CONFIG };
    if (typeof raw.apiBase === "string") config.apiBase = raw.apiBase.replace(/\/+$/, "");
    if (typeof raw.collection === "string") config.collection = raw.collection;
    if (Number.isInteger(raw.pageSize) && raw.pageSize >= 1 && raw.pageSize <= 100) {
      config.pageSize = raw.pageSize;
    }
    return config;
  } catch (err) {
    // The gallery still works against the same origin; say why the file was ignored.
    console.warn(`config.json could not be read (${err.message}); using the defaults.`, DEFAULT_CONFIG);
    return { ...DEFAULT_CONFIG };
  }
}

class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function readApiKey() {
  try {
    return localStorage.getItem(API_KEY_STORAGE) || "";
  } catch {
    return ""; // storage disabled (private mode): no key
  }
}

function apiUrl(path, params = {}) {
  const url = new URL(`${app.config.apiBase}${path}`, location.href);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
  }
  return url;
}

async function api(path, params = {}, init = {}) {
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
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok) {
    if (res.status === 401) showApiKeyForm();
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

function collectionParam() {
  return app.state.collection || app.config.collection || "";
}

function currentModeLabel() {
  if (app.imageQuery) return { kind: "image", name: app.imageQuery.file.name || "uploaded image" };
  const q = app.state.q;
  if (q.toLowerCase().startsWith(SIMILAR_PREFIX)) return { kind: "similar", key: q.slice(SIMILAR_PREFIX.length).trim() };
  if (q) return { kind: "search", q };
  return { kind: "recent" };
}

// One page of the current query; cursor null is the first page.
function fetchPage(cursor, signal) {
  const limit = app.config.pageSize;
  const collection = collectionParam();
  const minScore = app.state.minScore > 0 ? app.state.minScore : "";
  const mode = currentModeLabel();
  if (mode.kind === "image") {
    const body = new FormData();
    body.append("file", app.imageQuery.file, app.imageQuery.file.name || "upload");
    return api("/api/search/image", { collection, limit, min_score: minScore, cursor }, { method: "POST", body, signal });
  }
  if (mode.kind === "similar") {
    return api("/api/similar", { key: mode.key, collection, limit, min_score: minScore, cursor }, { signal });
  }
  if (mode.kind === "search") {
    return api("/api/search", { q: mode.q, collection, limit, min_score: minScore, cursor }, { signal });
  }
  return api("/api/recent", { collection, limit, cursor }, { signal });
}

// ---------------------------------------------------------------- status line

function setStatus(state, text, action = null) {
  els.status.dataset.state = state;
  els.statusText.textContent = text;
  if (action) {
    els.statusAction.textContent = action.label;
    els.statusAction.onclick = action.run;
    els.statusAction.hidden = false;
  } else {
    els.statusAction.hidden = true;
    els.statusAction.onclick = null;
  }
}

function describeQuery() {
  const mode = currentModeLabel();
  if (mode.kind === "image") return `images similar to ${mode.name}`;
  if (mode.kind === "similar") return `images like ${mode.key}`;
  if (mode.kind === "search") return `“${mode.q}”`;
  return "the newest images";
}

function collectionLabel() {
  return app.resolvedCollection || collectionParam() || app.serverDefaultCollection || "the default collection";
}

function okText(data) {
  const mode = currentModeLabel();
  const count = app.items.length;
  const more = app.nextCursor ? "; more load as you scroll" : "";
  const cutoff = app.state.minScore > 0 && mode.kind !== "recent" ? `, score ≥ ${app.state.minScore.toFixed(2)}` : "";
  const timing = data && typeof data.took_ms === "number" ? ` in ${Math.round(data.took_ms)} ms` : "";
  const model = data && data.model ? ` · ${data.model}` : "";
  if (mode.kind === "recent") return `${count} newest images in ${collectionLabel()}${more}.`;
  return `${count} ${count === 1 ? "match" : "matches"} for ${describeQuery()}${cutoff}${timing}${model}${more}.`;
}

function emptyText() {
  const mode = currentModeLabel();
  if (mode.kind === "recent") {
    return (
      `No images in ${collectionLabel()} yet. Upload some to its bucket; ` +
      "they appear here once they are embedded (watch the Pending count)."
    );
  }
  const cutoff = app.state.minScore > 0 ? ` with a score of at least ${app.state.minScore.toFixed(2)}` : "";
  const hint = app.state.minScore > 0 ? "Lower the Min score slider" : "Try other words";
  return `No matches for ${describeQuery()}${cutoff} in ${collectionLabel()}. ${hint}.`;
}

function errorText(err, what) {
  if (err.status === 401) return `${what} failed: the API needs a key. Enter it in the form above.`;
  return `${what} failed: ${err.message}`;
}

// ---------------------------------------------------------------- query lifecycle

async function runQuery() {
  app.generation += 1;
  const generation = app.generation;
  if (app.abort) app.abort.abort();
  app.abort = new AbortController();
  app.items = [];
  app.nextCursor = null;
  app.loadingMore = false;
  app.moreError = null;
  app.focusIndex = 0;
  clearGrid();
  els.moreStatus.textContent = "";
  showQueryImage();
  const mode = currentModeLabel();
  const verb = mode.kind === "recent" ? "Loading" : "Searching for";
  setStatus("loading", `${verb} ${describeQuery()} in ${collectionLabel()}…`);
  document.title = mode.kind === "recent" ? "Image Browser" : `${describeQuery()} · Image Browser`;
  els.grid.setAttribute("aria-busy", "true");
  try {
    const data = await fetchPage(null, app.abort.signal);
    if (generation !== app.generation) return;
    app.resolvedCollection = data.collection || app.resolvedCollection;
    appendItems(Array.isArray(data.items) ? data.items : []);
    app.nextCursor = data.next_cursor || null;
    app.embeddedAtLoad = null; // the next stats tick records the count these results reflect
    els.showNew.hidden = true;
    if (app.items.length) setStatus("ok", okText(data));
    else setStatus("empty", emptyText());
    rearmSentinel();
  } catch (err) {
    if (err.name === "AbortError" || generation !== app.generation) return;
    const what = mode.kind === "recent" ? "Loading images" : "Search";
    setStatus("error", errorText(err, what), { label: "Retry", run: () => runQuery() });
  } finally {
    if (generation === app.generation) els.grid.removeAttribute("aria-busy");
  }
}

async function loadMore() {
  if (app.loadingMore || !app.nextCursor || app.moreError) return;
  const generation = app.generation;
  const cursor = app.nextCursor;
  app.loadingMore = true;
  els.moreStatus.textContent = "Loading more…";
  try {
    const data = await fetchPage(cursor, app.abort ? app.abort.signal : undefined);
    if (generation !== app.generation) return;
    const seen = new Set(app.items.map((item) => item.key));
    const fresh = (Array.isArray(data.items) ? data.items : []).filter((item) => !seen.has(item.key));
    appendItems(fresh);
    // A page with nothing new (or the same cursor back) would make the scroll loop refetch forever.
    app.nextCursor = fresh.length && data.next_cursor !== cursor ? data.next_cursor || null : null;
    els.moreStatus.textContent = app.nextCursor ? "" : "That is everything.";
    setStatus("ok", okText(data));
  } catch (err) {
    if (err.name === "AbortError" || generation !== app.generation) return;
    // Keep what is shown; say what failed and let the user retry the same page.
    app.moreError = err;
    els.moreStatus.textContent = "";
    setStatus("error", errorText(err, "Loading the next page"), {
      label: "Retry",
      run: () => {
        app.moreError = null;
        setStatus("ok", okText(null));
        loadMore();
      },
    });
  } finally {
    if (generation === app.generation) {
      app.loadingMore = false;
      rearmSentinel();
    }
  }
}

// Re-observing makes the observer report the current intersection again, so a page that does not
// yet fill the screen keeps loading until it does.
const scrollObserver = new IntersectionObserver(
  (entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadMore();
  },
  { rootMargin: `0px 0px ${SCROLL_MARGIN_PX}px 0px` },
);

function rearmSentinel() {
  scrollObserver.unobserve(els.sentinel);
  if (app.nextCursor) scrollObserver.observe(els.sentinel);
}

// ---------------------------------------------------------------- grid and masonry

function clearGrid() {
  els.grid.replaceChildren();
  app.layout.heights = [];
  app.layout.width = 0;
  els.grid.style.height = "0px";
}

function aspectOf(item) {
  const w = Number(item.width);
  const h = Number(item.height);
  if (!(w > 0 && h > 0)) return 1; // unknown size: a square placeholder
  return Math.min(MAX_ASPECT, Math.max(MIN_ASPECT, h / w));
}

function makeTile(item, index) {
  const tile = document.createElement("a");
  tile.className = "tile";
  tile.href = item.url || "#";
  tile.dataset.key = item.key;
  tile.dataset.index = String(index);
  tile.tabIndex = index === app.focusIndex ? 0 : -1;
  const score = formatScore(item.score);
  tile.setAttribute("aria-label", score ? `${item.key}, score ${score}` : item.key);
  tile.title = item.key;

  const img = document.createElement("img");
  img.alt = "";
  img.loading = "lazy";
  img.decoding = "async";
  if (item.width && item.height) {
    img.width = item.width;
    img.height = item.height;
  }
  img.addEventListener("load", () => tile.classList.add("loaded"), { once: true });
  img.addEventListener("error", () => {
    // No thumbnail yet (or it expired): fall back to the original, then give up visibly.
    if (item.url && img.src !== item.url) img.src = item.url;
    else tile.classList.add("broken");
  });
  img.src = item.thumbnail_url || item.url;
  tile.append(img);

  if (score) {
    const badge = document.createElement("span");
    badge.className = "score";
    badge.textContent = score;
    badge.title = "Cosine similarity to the query";
    tile.append(badge);
  }
  const caption = document.createElement("span");
  caption.className = "caption";
  caption.textContent = baseName(item.key);
  tile.append(caption);
  return tile;
}

// Item URLs are normally absolute (presigned or CDN); a relative one (e.g. the API's own redirect
// route) belongs to the API, which may be on another origin than this page.
function resolveMediaUrl(url) {
  if (!url) return null;
  try {
    return new URL(url, new URL(`${app.config.apiBase}/`, location.href)).href;
  } catch {
    return null;
  }
}

function appendItems(rawItems) {
  if (!rawItems.length) return;
  const items = rawItems.map((item) => ({
    ...item,
    url: resolveMediaUrl(item.url),
    thumbnail_url: resolveMediaUrl(item.thumbnail_url),
  }));
  const start = app.items.length;
  const fragment = document.createDocumentFragment();
  const tiles = items.map((item, offset) => {
    app.items.push(item);
    const tile = makeTile(item, start + offset);
    fragment.append(tile);
    return tile;
  });
  els.grid.append(fragment);
  if (!placeTiles(tiles)) relayout();
}

function measure() {
  const width = els.grid.clientWidth;
  const gap = width < 600 ? 6 : 10;
  const cols = Math.max(2, Math.min(8, Math.round(width / TARGET_COLUMN_WIDTH)));
  return { width, cols, gap, colWidth: (width - gap * (cols - 1)) / cols };
}

// Places tiles in the shortest column using only width/height from the API, so every tile has its
// final size before its image arrives and nothing moves. Returns false when a full relayout is due.
function placeTiles(tiles) {
  const layout = app.layout;
  const m = measure();
  if (!m.width) return true;
  if (m.width !== layout.width || layout.heights.length !== m.cols) return false;
  for (const tile of tiles) {
    const item = app.items[Number(tile.dataset.index)];
    const height = Math.round(layout.colWidth * aspectOf(item));
    let col = 0;
    for (let c = 1; c < layout.cols; c += 1) if (layout.heights[c] < layout.heights[col]) col = c;
    tile.dataset.col = String(col);
    tile.style.left = `${col * (layout.colWidth + layout.gap)}px`;
    tile.style.top = `${layout.heights[col]}px`;
    tile.style.width = `${layout.colWidth}px`;
    tile.style.height = `${height}px`;
    layout.heights[col] += height + layout.gap;
  }
  els.grid.style.height = `${Math.max(0, ...layout.heights) - layout.gap}px`;
  return true;
}

function relayout() {
  const m = measure();
  if (!m.width) return;
  Object.assign(app.layout, m, { heights: new Array(m.cols).fill(0) });
  placeTiles(Array.from(els.grid.children));
}

new ResizeObserver(() => {
  if (els.grid.clientWidth !== app.layout.width) relayout();
}).observe(els.grid);

function tileAt(index) {
  return els.grid.children[index] || null;
}

function focusTile(index) {
  const tile = tileAt(index);
  if (!tile) return;
  const previous = tileAt(app.focusIndex);
  if (previous) previous.tabIndex = -1;
  app.focusIndex = index;
  tile.tabIndex = 0;
  tile.focus();
}

// Arrow keys move through the grid: left/right in result order, up/down within a column.
function neighbourInColumn(index, step) {
  const col = tileAt(index)?.dataset.col;
  for (let i = index + step; i >= 0 && i < app.items.length; i += step) {
    if (tileAt(i)?.dataset.col === col) return i;
  }
  return -1;
}

els.grid.addEventListener("keydown", (event) => {
  const tile = event.target.closest(".tile");
  if (!tile) return;
  const index = Number(tile.dataset.index);
  let target = -1;
  if (event.key === "ArrowRight") target = index + 1;
  else if (event.key === "ArrowLeft") target = index - 1;
  else if (event.key === "ArrowDown") target = neighbourInColumn(index, 1);
  else if (event.key === "ArrowUp") target = neighbourInColumn(index, -1);
  else if (event.key === "Home") target = 0;
  else if (event.key === "End") target = app.items.length - 1;
  else if (event.key === " ") {
    event.preventDefault();
    openLightbox(index);
    return;
  } else return;
  event.preventDefault();
  if (target >= 0 && target < app.items.length) focusTile(target);
  if (target >= app.items.length - 1) loadMore();
});

els.grid.addEventListener("focusin", (event) => {
  const tile = event.target.closest(".tile");
  if (!tile) return;
  const index = Number(tile.dataset.index);
  if (index !== app.focusIndex) {
    const previous = tileAt(app.focusIndex);
    if (previous) previous.tabIndex = -1;
    app.focusIndex = index;
    tile.tabIndex = 0;
  }
});

els.grid.addEventListener("click", (event) => {
  const tile = event.target.closest(".tile");
  if (!tile) return;
  // Modified clicks keep their usual meaning (open the original in a new tab).
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  openLightbox(Number(tile.dataset.index));
});

// ---------------------------------------------------------------- lightbox

function addDetail(name, value) {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = value;
  els.lbDetails.append(dt, dd);
}

function renderLightbox() {
  const index = app.lightboxIndex;
  const item = app.items[index];
  if (!item) return;
  app.lightboxToken += 1;
  const token = app.lightboxToken;
  els.lbKey.textContent = item.key;
  els.lbDetails.replaceChildren();
  const score = formatScore(item.score);
  if (score) addDetail("Score", score);
  if (item.width && item.height) addDetail("Dimensions", `${item.width} × ${item.height} px`);
  addDetail("Size", formatBytes(item.size));
  addDetail("Modified", formatDate(item.last_modified));
  if (item.content_type) addDetail("Type", item.content_type);
  addDetail("Collection", collectionLabel());
  addDetail("Position", `${index + 1} of ${app.items.length}${app.nextCursor ? "+" : ""}`);
  els.lbOpen.href = item.url || "#";

  // Show the thumbnail at once (already cached), then swap in the original when it has loaded.
  els.lbImage.alt = item.key;
  els.lbImage.src = item.thumbnail_url || item.url;
  if (item.width && item.height) {
    els.lbImage.width = item.width;
    els.lbImage.height = item.height;
  } else {
    els.lbImage.removeAttribute("width");
    els.lbImage.removeAttribute("height");
  }
  if (item.thumbnail_url && item.url && item.thumbnail_url !== item.url) {
    els.lbLoading.hidden = false;
    els.lbLoading.textContent = "Loading original…";
    const original = new Image();
    original.onload = () => {
      if (token !== app.lightboxToken) return;
      els.lbImage.src = item.url;
      els.lbLoading.hidden = true;
    };
    original.onerror = () => {
      if (token !== app.lightboxToken) return;
      els.lbLoading.textContent = "The original could not be loaded; showing the thumbnail.";
    };
    original.src = item.url;
  } else {
    els.lbLoading.hidden = true;
  }
  els.lbPrev.disabled = index <= 0;
  els.lbNext.disabled = index >= app.items.length - 1 && !app.nextCursor;
}

function openLightbox(index) {
  if (!app.items[index]) return;
  app.lightboxIndex = index;
  renderLightbox();
  if (!els.lightbox.open) els.lightbox.showModal();
  els.moreLikeThis.focus();
}

async function stepLightbox(step) {
  let target = app.lightboxIndex + step;
  if (target < 0) return;
  if (target >= app.items.length) {
    if (!app.nextCursor) return;
    await loadMore();
    if (target >= app.items.length) return;
  }
  app.lightboxIndex = target;
  renderLightbox();
}

els.lightbox.addEventListener("keydown", (event) => {
  if (event.key === "ArrowRight") {
    event.preventDefault();
    stepLightbox(1);
  } else if (event.key === "ArrowLeft") {
    event.preventDefault();
    stepLightbox(-1);
  }
});

els.lightbox.addEventListener("close", () => {
  app.lightboxToken += 1;
  els.lbImage.removeAttribute("src");
  // Return focus to the tile of the image last shown, which may differ from the one clicked.
  const index = app.lightboxIndex;
  if (tileAt(index)) {
    focusTile(index);
    tileAt(index).scrollIntoView({ block: "nearest" });
  }
});

// A click on the dark area around the image closes, like most lightboxes.
els.lightbox.addEventListener("click", (event) => {
  if (event.target === els.lightbox || event.target.classList.contains("lb-figure")) els.lightbox.close();
});
els.lbClose.addEventListener("click", () => els.lightbox.close());
els.lbPrev.addEventListener("click", () => stepLightbox(-1));
els.lbNext.addEventListener("click", () => stepLightbox(1));
els.moreLikeThis.addEventListener("click", () => {
  const item = app.items[app.lightboxIndex];
  if (!item) return;
  els.lightbox.close();
  navigate({ q: `${SIMILAR_PREFIX}${item.key}` });
  window.scrollTo({ top: 0 });
});

// ---------------------------------------------------------------- URL state

function readUrlState() {
  const params = new URLSearchParams(location.search);
  return {
    q: (params.get("q") || "").trim(),
    collection: (params.get("collection") || "").trim(),
    minScore: clampScore(Number.parseFloat(params.get("min_score") || "0")),
  };
}

function urlFor(state) {
  const params = new URLSearchParams();
  if (state.q) params.set("q", state.q);
  if (state.collection) params.set("collection", state.collection);
  if (state.minScore > 0) params.set("min_score", state.minScore.toFixed(2));
  const search = params.toString();
  return `${location.pathname}${search ? `?${search}` : ""}`;
}

function syncControls() {
  els.input.value = app.state.q;
  els.minScore.value = String(app.state.minScore);
  els.minScoreValue.textContent = app.state.minScore.toFixed(2);
  const collection = collectionParam() || app.serverDefaultCollection;
  if (collection && els.collection.value !== collection) {
    ensureCollectionOption(collection);
    els.collection.value = collection;
  }
}

// Changes the query state, records it in history (push: a new back-button step) and runs it.
function navigate(changes, { replace = false, imageQuery = null, via = "" } = {}) {
  const previousCollection = collectionParam();
  app.state = { ...app.state, ...changes };
  app.imageQuery = imageQuery;
  const historyState = { imageId: imageQuery ? imageQuery.id : null, via };
  const url = urlFor(app.state);
  if (replace) history.replaceState(historyState, "", url);
  else history.pushState(historyState, "", url);
  syncControls();
  if (collectionParam() !== previousCollection) {
    app.resolvedCollection = "";
    refreshStats();
  }
  runQuery();
}

window.addEventListener("popstate", (event) => {
  const previousCollection = collectionParam();
  app.state = readUrlState();
  const imageId = event.state && event.state.imageId;
  app.imageQuery = imageId ? app.uploads.get(imageId) || null : null;
  syncControls();
  if (collectionParam() !== previousCollection) {
    app.resolvedCollection = "";
    refreshStats();
  }
  if (els.lightbox.open) els.lightbox.close();
  runQuery();
});

// ---------------------------------------------------------------- controls

els.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const q = els.input.value.trim();
  const same = q === app.state.q && !app.imageQuery;
  navigate({ q }, { replace: same });
});

els.homeLink.addEventListener("click", (event) => {
  if (event.button !== 0 || event.metaKey || event.ctrlKey) return;
  event.preventDefault();
  navigate({ q: "" });
});

function commitMinScore() {
  clearTimeout(app.sliderTimer);
  const value = clampScore(Number.parseFloat(els.minScore.value));
  if (Math.abs(value - app.state.minScore) < 0.001) return;
  // Dragging the slider should leave one history step, not one per pixel.
  const replace = Boolean(history.state && history.state.via === "slider");
  if (currentModeLabel().kind === "recent") {
    app.state = { ...app.state, minScore: value };
    history.replaceState({ imageId: null, via: "slider" }, "", urlFor(app.state));
    return; // the newest-images view has no scores, so there is nothing to refetch
  }
  navigate({ minScore: value }, { replace, imageQuery: app.imageQuery, via: "slider" });
}

els.minScore.addEventListener("input", () => {
  els.minScoreValue.textContent = clampScore(Number.parseFloat(els.minScore.value)).toFixed(2);
  clearTimeout(app.sliderTimer);
  app.sliderTimer = setTimeout(commitMinScore, 350);
});
els.minScore.addEventListener("change", commitMinScore);

els.collection.addEventListener("change", () => {
  const value = els.collection.value;
  if (!value) return;
  // The same uploaded image can be searched in another collection, so keep it.
  navigate({ collection: value }, { imageQuery: app.imageQuery });
});

els.showNew.addEventListener("click", () => runQuery());

document.addEventListener("keydown", (event) => {
  const typing = event.target.closest && event.target.closest("input, textarea, select, [contenteditable]");
  if (event.key === "/" && !typing && !els.lightbox.open) {
    event.preventDefault();
    els.input.focus();
    els.input.select();
  } else if (event.key === "Escape" && event.target === els.input) {
    els.input.blur();
  }
});

// ---------------------------------------------------------------- search by image

function searchByImage(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    setStatus(
      "error",
      `${file.name} is ${file.type}, not an image. Drop or pick a JPEG, PNG, WebP, GIF, AVIF or HEIC file.`,
    );
    return;
  }
  const upload = { id: app.nextUploadId, file };
  app.nextUploadId += 1;
  app.uploads.set(upload.id, upload);
  navigate({ q: "" }, { imageQuery: upload });
  window.scrollTo({ top: 0 });
}

// A small preview of the uploaded image beside the status line, as the search box is empty then.
function showQueryImage() {
  const upload = app.imageQuery;
  if (!upload) {
    els.queryImage.hidden = true;
    els.queryImage.removeAttribute("src");
    return;
  }
  if (!upload.previewUrl) upload.previewUrl = URL.createObjectURL(upload.file);
  els.queryImage.onerror = () => {
    els.queryImage.hidden = true; // a format this browser cannot show (e.g. HEIC): the text says enough
  };
  els.queryImage.src = upload.previewUrl;
  els.queryImage.hidden = false;
}

els.fileInput.addEventListener("change", () => {
  const file = els.fileInput.files && els.fileInput.files[0];
  searchByImage(file);
  els.fileInput.value = ""; // picking the same file again should search again
});

let dragDepth = 0;
function hasFiles(event) {
  return Boolean(event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files"));
}
window.addEventListener("dragenter", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  dragDepth += 1;
  els.dropOverlay.hidden = false;
});
window.addEventListener("dragover", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = "copy";
});
window.addEventListener("dragleave", (event) => {
  if (!hasFiles(event)) return;
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) els.dropOverlay.hidden = true;
});
window.addEventListener("drop", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  dragDepth = 0;
  els.dropOverlay.hidden = true;
  const file = event.dataTransfer.files && event.dataTransfer.files[0];
  searchByImage(file);
});
// Pasting an image (e.g. a screenshot) searches by it too.
window.addEventListener("paste", (event) => {
  const typing = event.target.closest && event.target.closest("input, textarea");
  if (typing) return;
  const file = Array.from((event.clipboardData && event.clipboardData.files) || []).find((f) =>
    f.type.startsWith("image/"),
  );
  if (file) searchByImage(file);
});

// ---------------------------------------------------------------- collections, stats, health

function ensureCollectionOption(name) {
  if (Array.from(els.collection.options).some((option) => option.value === name)) return;
  const option = document.createElement("option");
  option.value = name;
  option.textContent = name;
  els.collection.append(option);
}

async function loadCollections() {
  try {
    const data = await api("/api/collections");
    app.serverDefaultCollection = data.default || "";
    const list = Array.isArray(data.collections) ? data.collections : [];
    els.collection.replaceChildren();
    for (const info of list) {
      const option = document.createElement("option");
      option.value = info.name;
      const embedded = info.counts && typeof info.counts.embedded === "number" ? info.counts.embedded : null;
      option.textContent = embedded === null ? info.name : `${info.name} (${embedded.toLocaleString()})`;
      option.title = [info.bucket && `bucket ${info.bucket}`, info.model && `model ${info.model}`]
        .filter(Boolean)
        .join(", ");
      els.collection.append(option);
    }
    const current = collectionParam() || app.serverDefaultCollection;
    if (current) {
      ensureCollectionOption(current);
      els.collection.value = current;
    }
    els.collection.disabled = false;
  } catch (err) {
    els.collection.replaceChildren();
    const current = collectionParam();
    const option = document.createElement("option");
    option.value = current;
    option.textContent = current || "default";
    els.collection.append(option);
    els.collection.title = `Collections could not be listed: ${err.message}`;
    els.collection.disabled = true;
  }
}

function setStat(name, text) {
  const el = els.stats.querySelector(`[data-stat="${name}"]`);
  if (el) el.textContent = text;
}

async function refreshStats() {
  clearTimeout(app.statsTimer);
  app.statsSeq += 1;
  const seq = app.statsSeq; // only the newest refresh schedules the next one: one timer chain
  const requestedFor = collectionParam();
  try {
    const data = await api("/api/stats", { collection: requestedFor });
    if (requestedFor !== collectionParam()) return; // the collection changed meanwhile
    const counts = data.counts || {};
    setStat("embedded", formatCount(counts.embedded));
    setStat("pending", formatCount(counts.pending));
    setStat("failed", formatCount(counts.failed));
    setStat("bytes", formatBytes(data.bytes));
    setStat("last_update", data.last_update ? formatDate(data.last_update) : "never");
    els.stats.dataset.state = "ok";
    els.stats.title = `${data.collection || collectionLabel()} · ${data.model || ""}`;
    noticeNewImages(counts.embedded);
  } catch (err) {
    els.stats.dataset.state = "error";
    els.stats.title = `Statistics could not be loaded: ${err.message}`;
    for (const name of ["embedded", "pending", "failed", "bytes", "last_update"]) setStat(name, "–");
  } finally {
    if (seq === app.statsSeq && !document.hidden) app.statsTimer = setTimeout(refreshStats, STATS_INTERVAL_MS);
  }
}

// New embeddings since the results were loaded: offer them, or just show them if the grid was empty.
function noticeNewImages(embedded) {
  if (typeof embedded !== "number") return;
  if (app.embeddedAtLoad === null) {
    app.embeddedAtLoad = embedded;
    return;
  }
  const fresh = embedded - app.embeddedAtLoad;
  if (fresh <= 0) return;
  const state = els.status.dataset.state;
  if (state === "empty" && !app.imageQuery) {
    runQuery();
    return;
  }
  if (state === "loading") return;
  els.showNew.textContent = `${fresh.toLocaleString()} new ${fresh === 1 ? "image" : "images"}: refresh`;
  els.showNew.hidden = false;
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refreshStats();
});

async function checkHealth() {
  try {
    const data = await api("/api/health");
    els.banner.hidden = data.test_model !== true;
    if (data.status && data.status !== "ok") {
      els.healthBanner.textContent =
        data.database === false
          ? "The API cannot reach its database: searches will fail until it is back. Check that PostgreSQL is running."
          : `The API reports status “${data.status}”: some features may not work.`;
      els.healthBanner.hidden = false;
    } else {
      els.healthBanner.hidden = true;
    }
  } catch (err) {
    if (err.status === 401) return; // the key form is already shown
    els.healthBanner.textContent = `Health check failed: ${err.message}`;
    els.healthBanner.hidden = false;
  }
}

// ---------------------------------------------------------------- API key

function showApiKeyForm() {
  els.apiKeyForm.hidden = false;
}

els.apiKeyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = els.apiKeyInput.value.trim();
  if (!key) return;
  try {
    localStorage.setItem(API_KEY_STORAGE, key);
  } catch {
    setStatus("error", "This browser does not allow storing the key (storage disabled); enable site storage.");
    return;
  }
  els.apiKeyInput.value = "";
  els.apiKeyForm.hidden = true;
  startAll();
});

// ---------------------------------------------------------------- start

function startAll() {
  checkHealth();
  loadCollections();
  refreshStats();
  runQuery();
}

async function main() {
  app.config = await loadConfig();
  app.state = readUrlState();
  app.uploads.clear();
  history.replaceState({ imageId: null, via: "" }, "", urlFor(app.state));
  syncControls();
  startAll();
}

main();
