// What the gallery is asked to show. The query (words, collection, score cutoff) lives in the URL, so
// links and back/forward carry it. An uploaded image cannot: its history entry names it by id and
// the file stays in memory. Other modules read this through the getters and change it only through
// the setters below.

import { config } from "./config.js";
import { clampScore } from "./format.js";

export const SIMILAR_PREFIX = "similar:";
// The view of images (the grid): searches show their results there. The default, left out of the URL.
export const PHOTOS_VIEW = "photos";

// Mirrors the URL. takenAfter/takenBefore: "YYYY-MM-DD" or ""; collapse: one image per near-duplicate
// group; view: one of the views' names (views.js), e.g. "duplicates" with its level and threshold
// (null = the server's default);
// mode, sort, cutoff: the search options (search-ui.js). While an uploaded image is the query, q holds the
// words combined with it. place: the place= filter (a Places entry's filter, "Paris, Île-de-France, France");
// saved: the id of the saved search shown (its live answer), null otherwise.
export const DEFAULT_QUERY = Object.freeze({
  q: "", collection: "", minScore: 0, takenAfter: "", takenBefore: "", collapse: false,
  view: PHOTOS_VIEW, level: "near", threshold: null, mode: "hybrid", sort: "relevance", cutoff: "auto",
  place: "", saved: null,
});
let query = { ...DEFAULT_QUERY };
// What a query starts from when a list entry (a place, a Discover category, a saved search) replaces it: no
// words, no filters, the default options; the collection and the view are kept.
const SEARCH_DEFAULTS = Object.freeze(Object.fromEntries(
  ["q", "minScore", "takenAfter", "takenBefore", "collapse", "mode", "sort", "cutoff", "place", "saved"]
    .map((name) => [name, DEFAULT_QUERY[name]]),
));
let imageQuery = null; // {id, file, previewUrl} while searching by an uploaded image
const uploads = new Map(); // every image searched by on this page: id -> {id, file, previewUrl}
let nextUploadId = 1;
let resolvedCollection = ""; // the collection the server actually answered for
let serverDefaultCollection = "";
let viewNames = [PHOTOS_VIEW]; // the views a URL may name (router.js sets them from views.js)
const savedNames = new Map(); // saved search id -> its name, for the status line (saved-searches.js sets them)

// ---------------------------------------------------------------- getters

export function currentQuery() {
  return query;
}

export function currentImageQuery() {
  return imageQuery;
}

// The collection to ask the API for; "" lets the server pick its default.
export function collectionParam() {
  return query.collection || config.collection || "";
}

export function collectionLabel() {
  return resolvedCollection || collectionParam() || serverDefaultCollection || "the default collection";
}

export function defaultCollectionOfServer() {
  return serverDefaultCollection;
}

// Which kind of listing the query asks for: an uploaded image, a saved search, "similar:<key>", words, or
// the newest.
export function currentMode() {
  if (imageQuery) return { kind: "image", name: imageQuery.file.name || "uploaded image" };
  if (query.saved) {
    return { kind: "saved", id: query.saved, name: savedNames.get(query.saved) || `#${query.saved}` };
  }
  const q = query.q;
  if (q.toLowerCase().startsWith(SIMILAR_PREFIX)) return { kind: "similar", key: q.slice(SIMILAR_PREFIX.length).trim() };
  if (q) return { kind: "search", q };
  return { kind: "recent" };
}

// True when the current history entry was made by `via` (e.g. "slider").
export function historyEntryMadeBy(via) {
  return Boolean(history.state && history.state.via === via);
}

// ---------------------------------------------------------------- URL <-> state

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const LEVELS = ["exact", "near", "similar"];
const SEARCH_OPTIONS = { mode: ["hybrid", "semantic", "keyword"], sort: ["relevance", "newest", "oldest"],
  cutoff: ["auto", "none"] }; // the first of each is the default, left out of the URL

function option(params, name) {
  const value = params.get(name);
  return SEARCH_OPTIONS[name].includes(value) ? value : SEARCH_OPTIONS[name][0];
}

function readUrlState() {
  const params = new URLSearchParams(location.search);
  const threshold = Number.parseFloat(params.get("threshold") || "");
  return {
    q: (params.get("q") || "").trim(),
    collection: (params.get("collection") || "").trim(),
    minScore: clampScore(Number.parseFloat(params.get("min_score") || "0")),
    takenAfter: DATE.test(params.get("taken_after") || "") ? params.get("taken_after") : "",
    takenBefore: DATE.test(params.get("taken_before") || "") ? params.get("taken_before") : "",
    collapse: params.get("collapse") === "near",
    view: viewNames.includes(params.get("view")) ? params.get("view") : PHOTOS_VIEW,
    level: LEVELS.includes(params.get("level")) ? params.get("level") : "near",
    threshold: threshold > 0 && threshold <= 1 ? threshold : null,
    mode: option(params, "mode"),
    sort: option(params, "sort"),
    cutoff: option(params, "cutoff"),
    place: (params.get("place") || "").trim(),
    saved: /^[1-9]\d{0,15}$/.test(params.get("saved") || "") ? Number(params.get("saved")) : null,
  };
}

function urlFor(state) {
  const params = new URLSearchParams();
  if (state.q) params.set("q", state.q);
  if (state.collection) params.set("collection", state.collection);
  if (state.minScore > 0) params.set("min_score", state.minScore.toFixed(2));
  if (state.takenAfter) params.set("taken_after", state.takenAfter);
  if (state.takenBefore) params.set("taken_before", state.takenBefore);
  if (state.collapse) params.set("collapse", "near");
  if (state.place) params.set("place", state.place);
  if (state.saved) params.set("saved", String(state.saved));
  if (state.view !== PHOTOS_VIEW) params.set("view", state.view);
  if (state.view === "duplicates") {
    params.set("level", state.level);
    if (state.threshold !== null && state.level !== "exact") params.set("threshold", String(state.threshold));
  }
  for (const name of Object.keys(SEARCH_OPTIONS)) {
    if (state[name] !== SEARCH_OPTIONS[name][0]) params.set(name, state[name]);
  }
  const search = params.toString();
  return `${location.pathname}${search ? `?${search}` : ""}`;
}

// The changes for navigate() that make a new query of `changes` alone (see SEARCH_DEFAULTS).
export function freshQuery(changes) {
  return { ...SEARCH_DEFAULTS, ...changes };
}

// The address of the current query with `changes` (e.g. another view), for links that can be shared.
export function urlWith(changes) {
  return urlFor({ ...query, ...changes });
}

// ---------------------------------------------------------------- setters

// Which views a URL may name; called once, before startFromUrl().
export function setViewNames(names) {
  viewNames = [...names];
}

// At page load: the query comes from the URL, written back in its normal form.
export function startFromUrl() {
  query = readUrlState();
  uploads.clear();
  history.replaceState({ imageId: null, via: "" }, "", urlFor(query));
}

// Changes the query and records it in history: push makes a new back-button step, replace does not.
// `via` marks the entry (the slider replaces its own entries). Returns whether the collection changed.
// A saved search stays shown only while the changes name it: any other change (words, a filter, the
// collection) makes the query an ordinary one, starting from the saved search's parameters.
export function changeQuery(changes, { image = null, replace = false, via = "" } = {}) {
  const previousCollection = collectionParam();
  query = { ...query, saved: null, ...changes };
  imageQuery = image;
  const entry = { imageId: image ? image.id : null, via };
  if (replace) history.replaceState(entry, "", urlFor(query));
  else history.pushState(entry, "", urlFor(query));
  return forgetResolvedCollectionIfChanged(previousCollection);
}

// Back/forward: the URL is the truth; the uploaded image comes back if this page still has it.
// Returns whether the collection changed.
export function restoreFromHistory(entry) {
  const previousCollection = collectionParam();
  query = readUrlState();
  const imageId = entry && entry.imageId;
  imageQuery = imageId ? uploads.get(imageId) || null : null;
  return forgetResolvedCollectionIfChanged(previousCollection);
}

function forgetResolvedCollectionIfChanged(previousCollection) {
  if (collectionParam() === previousCollection) return false;
  resolvedCollection = "";
  return true;
}

// Keeps an uploaded file for the life of the page, so back/forward can search by it again.
export function addUpload(file) {
  const upload = { id: nextUploadId, file };
  nextUploadId += 1;
  uploads.set(upload.id, upload);
  return upload;
}

export function setResolvedCollection(name) {
  resolvedCollection = name;
}

export function setServerDefaultCollection(name) {
  serverDefaultCollection = name;
}

// The names of the saved searches, so the status line can say which one is shown.
export function rememberSavedNames(entries) {
  for (const entry of entries) savedNames.set(entry.id, entry.name);
}
