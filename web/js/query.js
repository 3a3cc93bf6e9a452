// Running the current query: its first page, further pages as the user scrolls, and dropping the
// late answers of queries that were replaced meanwhile.

import { api } from "./api.js";
import { config } from "./config.js";
import { els } from "./elements.js";
import { appendItems, clearGrid, itemCount, itemKeys } from "./grid.js";
import {
  collectionLabel,
  collectionParam,
  currentImageQuery,
  currentMode,
  currentQuery,
  setResolvedCollection,
} from "./state.js";
import { filterParams } from "./filters.js";
import { clearSearchAnswer, searchParams, showSearchAnswer } from "./search-ui.js";
import { describeQuery, emptyText, errorText, okText, setStatus } from "./status.js";
import { searchFile, showQueryImage } from "./upload.js";

let generation = 0; // bumps on every new query so late answers of old ones are dropped
let shownGeneration = 0; // the query whose first page is on screen
let abort = null;
let nextCursor = null;
let loadingMore = false;
let moreError = null; // the failed next page, until the user retries it
let sentinelObserver = null; // set by main.js; watches the sentinel below the grid

export function hasMorePages() {
  return Boolean(nextCursor);
}

// Changes whenever a new query's first page is shown: the new-images notice counts from there.
export function shownQueryGeneration() {
  return shownGeneration;
}

export function setSentinelObserver(observer) {
  sentinelObserver = observer;
}

// Re-observing makes the observer report the current intersection again, so a page that does not
// yet fill the screen keeps loading until it does.
function rearmSentinel() {
  if (!sentinelObserver) return;
  sentinelObserver.unobserve(els.sentinel);
  if (nextCursor) sentinelObserver.observe(els.sentinel);
}

function pageSummary() {
  return { count: itemCount(), more: hasMorePages() };
}

// One page of the current query; cursor null is the first page.
function fetchPage(cursor, signal) {
  const limit = config.pageSize;
  const collection = collectionParam();
  const minScore = currentQuery().minScore > 0 ? currentQuery().minScore : "";
  const mode = currentMode();
  if (mode.kind === "image") {
    // Posted shrunk (upload.js): the model needs 224 px, and a deployed API takes at most ~4.4 MB.
    return searchFile(currentImageQuery()).then((file) => {
      const body = new FormData();
      body.append("file", file, file.name || "upload");
      const params = { collection, limit, min_score: minScore, cursor, ...filterParams(), ...searchParams() };
      return api("/api/search/image", { ...params, q: currentQuery().q }, { method: "POST", body, signal });
    });
  }
  if (mode.kind === "saved") {
    // Answered live with the parameters it was saved with (the Filters panel shows them).
    return api(`/api/saved-searches/${mode.id}`, { collection, limit, cursor }, { signal });
  }
  if (mode.kind === "similar") {
    const params = {
      key: mode.key, collection, limit, min_score: minScore, cursor, ...filterParams(), ...searchParams(),
    };
    return api("/api/similar", params, { signal });
  }
  if (mode.kind === "search") {
    const params = {
      q: mode.q, collection, limit, min_score: minScore, cursor, ...filterParams(), ...searchParams(),
    };
    return api("/api/search", params, { signal });
  }
  return api("/api/recent", { collection, limit, cursor, ...filterParams() }, { signal });
}

export async function runQuery() {
  generation += 1;
  const thisGeneration = generation;
  if (abort) abort.abort();
  abort = new AbortController();
  nextCursor = null;
  loadingMore = false;
  moreError = null;
  clearGrid();
  clearSearchAnswer();
  els.moreStatus.textContent = "";
  showQueryImage();
  const mode = currentMode();
  const verb = mode.kind === "recent" ? "Loading" : "Searching for";
  setStatus("loading", `${verb} ${describeQuery()} in ${collectionLabel()}…`);
  document.title = mode.kind === "recent" ? "Image Browser" : `${describeQuery()} · Image Browser`;
  els.grid.setAttribute("aria-busy", "true");
  try {
    const data = await fetchPage(null, abort.signal);
    if (thisGeneration !== generation) return;
    if (data.collection) setResolvedCollection(data.collection);
    appendItems(Array.isArray(data.items) ? data.items : []);
    showSearchAnswer(data);
    nextCursor = data.next_cursor || null;
    shownGeneration = thisGeneration;
    els.showNew.hidden = true;
    if (itemCount()) setStatus("ok", okText(data, pageSummary()));
    else setStatus("empty", emptyText());
    rearmSentinel();
  } catch (err) {
    if (err.name === "AbortError" || thisGeneration !== generation) return;
    const what = mode.kind === "recent" ? "Loading images" : "Search";
    setStatus("error", errorText(err, what), { label: "Retry", run: () => runQuery() });
  } finally {
    if (thisGeneration === generation) els.grid.removeAttribute("aria-busy");
  }
}

export async function loadMore() {
  if (loadingMore || !nextCursor || moreError) return;
  const thisGeneration = generation;
  const cursor = nextCursor;
  loadingMore = true;
  els.moreStatus.textContent = "Loading more…";
  try {
    const data = await fetchPage(cursor, abort ? abort.signal : undefined);
    if (thisGeneration !== generation) return;
    const seen = new Set(itemKeys());
    const fresh = (Array.isArray(data.items) ? data.items : []).filter((item) => !seen.has(item.key));
    appendItems(fresh);
    showSearchAnswer(data);
    // A page with nothing new (or the same cursor back) would make the scroll loop refetch forever.
    nextCursor = fresh.length && data.next_cursor !== cursor ? data.next_cursor || null : null;
    els.moreStatus.textContent = nextCursor ? "" : "That is everything.";
    setStatus("ok", okText(data, pageSummary()));
  } catch (err) {
    if (err.name === "AbortError" || thisGeneration !== generation) return;
    // Keep what is shown; say what failed and let the user retry the same page.
    moreError = err;
    els.moreStatus.textContent = "";
    setStatus("error", errorText(err, "Loading the next page"), {
      label: "Retry",
      run: () => {
        moreError = null;
        setStatus("ok", okText(null, pageSummary()));
        loadMore();
      },
    });
  } finally {
    if (thisGeneration === generation) {
      loadingMore = false;
      rearmSentinel();
    }
  }
}
