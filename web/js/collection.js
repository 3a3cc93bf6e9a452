// The collection picker and the statistics bar: counts polled every few seconds, an offer to show
// images embedded since the results were loaded, and the progress of a move to another model.

import { api } from "./api.js";
import { els } from "./elements.js";
import { backlogText, formatBytes, formatCount, formatDate, moveText } from "./format.js";
import { runQuery, shownQueryGeneration } from "./query.js";
import { onQueryChange, refine } from "./router.js";
import {
  collectionLabel,
  collectionParam,
  currentImageQuery,
  defaultCollectionOfServer,
  setServerDefaultCollection,
} from "./state.js";
import { statusState } from "./status.js";

const STATS_INTERVAL_MS = 5000;
const STAT_NAMES = ["embedded", "pending", "failed", "bytes", "last_update"];

let statsTimer = 0;
let statsSeq = 0; // only the newest refresh schedules the next one: one timer chain
let embeddedAtLoad = null; // {generation, embedded}: the count the results on screen reflect

// ---------------------------------------------------------------- collection picker

function ensureCollectionOption(name) {
  if (Array.from(els.collection.options).some((option) => option.value === name)) return;
  const option = document.createElement("option");
  option.value = name;
  option.textContent = name;
  els.collection.append(option);
}

export async function loadCollections() {
  try {
    const data = await api("/api/collections");
    setServerDefaultCollection(data.default || "");
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
    const current = collectionParam() || defaultCollectionOfServer();
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

// The picker shows the query's collection (the server's default when the URL names none).
function syncCollectionPicker() {
  const collection = collectionParam() || defaultCollectionOfServer();
  if (collection && els.collection.value !== collection) {
    ensureCollectionOption(collection);
    els.collection.value = collection;
  }
}

export function registerCollection() {
  els.collection.addEventListener("change", () => {
    // The same uploaded image can be searched in another collection, so refine() keeps it.
    if (els.collection.value) refine({ collection: els.collection.value });
  });
  els.showNew.addEventListener("click", () => runQuery());
  // Statistics poll only while the page is visible; coming back refreshes at once.
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refreshStats();
  });
  onQueryChange(({ collectionChanged }) => {
    syncCollectionPicker();
    if (collectionChanged) refreshStats();
  });
}

// ---------------------------------------------------------------- statistics bar

function setStat(name, text) {
  const el = els.stats.querySelector(`[data-stat="${name}"]`);
  if (el) el.textContent = text;
}

// "Moving to <model>: done/total" while /api/stats carries a `move` block, and "Backlog: done/queued"
// while queued bulk work drains; hidden when there is neither.
function showMove(move, backlog) {
  const text = [moveText(move), backlogText(backlog)].filter(Boolean).join(" · ");
  els.statsMove.textContent = text;
  els.statsMove.hidden = !text;
  els.statsMove.title = moveText(move) && move.from ? `Moving from ${move.from} to ${move.to}` : "";
}

export async function refreshStats() {
  clearTimeout(statsTimer);
  statsSeq += 1;
  const seq = statsSeq;
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
    showMove(data.move, data.backlog);
    els.stats.dataset.state = "ok";
    els.stats.title = `${data.collection || collectionLabel()} · ${data.model || ""}`;
    noticeNewImages(counts.embedded);
  } catch (err) {
    els.stats.dataset.state = "error";
    els.stats.title = `Statistics could not be loaded: ${err.message}`;
    for (const name of STAT_NAMES) setStat(name, "–");
    showMove(null);
  } finally {
    if (seq === statsSeq && !document.hidden) statsTimer = setTimeout(refreshStats, STATS_INTERVAL_MS);
  }
}

// New embeddings since the results were loaded: offer them, or just show them if the grid was empty.
// The first count after a new query's first page is shown is the baseline for that query.
function noticeNewImages(embedded) {
  if (typeof embedded !== "number") return;
  const generation = shownQueryGeneration();
  if (embeddedAtLoad === null || embeddedAtLoad.generation !== generation) {
    embeddedAtLoad = { generation, embedded };
    return;
  }
  const fresh = embedded - embeddedAtLoad.embedded;
  if (fresh <= 0) return;
  const state = statusState();
  if (state === "empty" && !currentImageQuery()) {
    runQuery();
    return;
  }
  if (state === "loading") return;
  els.showNew.textContent = `${fresh.toLocaleString()} new ${fresh === 1 ? "image" : "images"}: refresh`;
  els.showNew.hidden = false;
}
