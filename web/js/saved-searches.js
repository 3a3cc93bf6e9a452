// Saved searches: "Save this search…" in the Filters panel keeps the current search under a name (POST
// /api/saved-searches); the sidebar's "Saved searches" group lists them with their counts (GET), opens one
// as its live answer in the Photos view (saved=<id> in the URL; GET /api/saved-searches/{id}, paged like a
// search) and deletes one (DELETE). A saved search is per collection. Errors show the API's message.

import { api, apiSend } from "./api.js";
import { els } from "./elements.js";
import { filterParams } from "./filters.js";
import { formatCount } from "./format.js";
import { isPlainClick, navigate, onQueryChange } from "./router.js";
import { searchParams } from "./search-ui.js";
import { closeDrawer, icon } from "./sidebar.js";
import {
  DEFAULT_QUERY,
  PHOTOS_VIEW,
  collectionParam,
  currentMode,
  currentQuery,
  freshQuery,
  rememberSavedNames,
  urlWith,
} from "./state.js";

const BOOKMARK = "M6 3h12v18l-6-4.5L6 21z";

let entries = new Map(); // id -> the list's entry {id, name, query, count}
let listGeneration = 0;

// ---------------------------------------------------------------- query <-> saved parameters

// The current query as /api/search's parameters, as the grid sends them (no limit or cursor; defaults left out).
function savedQueryOf(query) {
  const params = { q: query.q, min_score: query.minScore > 0 ? query.minScore : "", ...filterParams(), ...searchParams() };
  return Object.fromEntries(Object.entries(params).filter(([, value]) => value !== undefined && value !== ""));
}

// The changes for navigate() that open a saved search: its id, and its parameters in the controls, so a change
// of a filter goes on from them as an ordinary search.
function openingChanges(entry) {
  const saved = entry.query || {};
  const text = (name) => (typeof saved[name] === "string" ? saved[name] : "");
  return freshQuery({
    saved: entry.id, view: PHOTOS_VIEW, q: text("q"), place: text("place"),
    takenAfter: text("taken_after").slice(0, 10), takenBefore: text("taken_before").slice(0, 10),
    minScore: typeof saved.min_score === "number" ? Math.max(0, saved.min_score) : 0,
    collapse: saved.collapse === "near", mode: text("mode") || DEFAULT_QUERY.mode,
    sort: text("sort") || DEFAULT_QUERY.sort, cutoff: text("cutoff") || DEFAULT_QUERY.cutoff,
  });
}

// ---------------------------------------------------------------- the sidebar group

function savedItem(entry) {
  const link = document.createElement("a");
  link.className = "saved-item";
  link.href = urlWith(openingChanges(entry));
  link.dataset.id = String(entry.id);
  const name = document.createElement("span");
  name.className = "saved-name";
  name.textContent = entry.name;
  link.append(icon(BOOKMARK), name);
  if (typeof entry.count === "number") {
    const count = document.createElement("span");
    count.className = "saved-count";
    count.textContent = formatCount(entry.count);
    count.title = "Results when last counted";
    link.append(count);
  }
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "saved-delete";
  remove.dataset.id = String(entry.id);
  remove.textContent = "×";
  remove.title = "Delete this saved search";
  remove.setAttribute("aria-label", `Delete the saved search ${entry.name}`);
  const item = document.createElement("li");
  item.append(link, remove);
  return item;
}

function setSavedStatus(text, error = false) {
  els.savedStatus.textContent = text;
  els.savedStatus.classList.toggle("saved-error", error);
}

// The list of the current collection's saved searches, again (at start, after a save or a delete).
export async function loadSavedSearches() {
  listGeneration += 1;
  const thisGeneration = listGeneration;
  try {
    const data = await api("/api/saved-searches", { collection: collectionParam() });
    if (thisGeneration !== listGeneration) return;
    const list = Array.isArray(data.saved_searches) ? data.saved_searches : [];
    entries = new Map(list.map((entry) => [entry.id, entry]));
    rememberSavedNames(list);
    els.savedList.replaceChildren(...list.map(savedItem));
    setSavedStatus(list.length ? "" : "None yet: search, then Filters → Save this search.");
    markCurrent();
  } catch (err) {
    if (thisGeneration !== listGeneration) return;
    if (err.status === 401) return; // the key form is shown
    setSavedStatus(`Saved searches could not be loaded: ${err.message}`, true);
  }
}

function markCurrent() {
  const current = currentQuery().saved;
  for (const link of els.savedList.querySelectorAll(".saved-item")) {
    if (Number(link.dataset.id) === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function deleteSaved(id) {
  const entry = entries.get(id);
  try {
    await api(`/api/saved-searches/${id}`, { collection: collectionParam() }, { method: "DELETE" });
  } catch (err) {
    setSavedStatus(`Deleting “${entry ? entry.name : id}” failed: ${err.message}`, true);
    return;
  }
  if (currentQuery().saved === id) navigate({}, { replace: true }); // its parameters, as an ordinary search
  await loadSavedSearches();
}

function registerSidebarGroup() {
  els.savedList.addEventListener("click", (event) => {
    const remove = event.target.closest(".saved-delete");
    if (remove) {
      deleteSaved(Number(remove.dataset.id));
      return;
    }
    const link = event.target.closest(".saved-item");
    const entry = link && entries.get(Number(link.dataset.id));
    if (!entry || !isPlainClick(event)) return;
    event.preventDefault();
    closeDrawer();
    navigate(openingChanges(entry));
    window.scrollTo({ top: 0 });
  });
}

// ---------------------------------------------------------------- saving (the Filters panel)

// Why the current query cannot be saved, or "" when it can (a saved search is words: q is required).
function notSavable() {
  const kind = currentMode().kind;
  if (kind === "image") return "An uploaded image cannot be saved: search by words or similar:<key>.";
  if (kind === "recent") return "Type a search first: a saved search keeps its words and filters.";
  return "";
}

function syncSaveButton() {
  const why = notSavable();
  els.saveSearchButton.disabled = Boolean(why);
  els.saveSearchButton.title = why || "Keep this search under a name in the sidebar";
  if (why) els.saveSearchForm.hidden = true;
}

function openSaveForm() {
  els.saveSearchForm.hidden = false;
  els.saveSearchMessage.textContent = "";
  const mode = currentMode();
  els.saveSearchName.value = mode.kind === "saved" ? mode.name : currentQuery().q;
  els.saveSearchName.focus();
  els.saveSearchName.select();
}

async function saveSearch() {
  const name = els.saveSearchName.value.trim();
  if (!name) return;
  els.saveSearchMessage.classList.remove("saved-error");
  els.saveSearchMessage.textContent = "Saving…";
  try {
    const body = { name, query: savedQueryOf(currentQuery()) };
    const saved = await apiSend("POST", "/api/saved-searches", { collection: collectionParam() }, body);
    els.saveSearchForm.hidden = true;
    els.saveSearchMessage.textContent = `Saved “${saved.name}”: it is in the sidebar.`;
    await loadSavedSearches();
  } catch (err) {
    els.saveSearchMessage.classList.add("saved-error");
    els.saveSearchMessage.textContent = `Saving failed: ${err.message}`;
  }
}

export function registerSavedSearches() {
  registerSidebarGroup();
  els.saveSearchButton.addEventListener("click", openSaveForm);
  els.saveSearchCancel.addEventListener("click", () => {
    els.saveSearchForm.hidden = true;
  });
  els.saveSearchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    saveSearch();
  });
  onQueryChange(({ collectionChanged }) => {
    if (collectionChanged) loadSavedSearches();
    markCurrent();
    syncSaveButton();
    els.saveSearchMessage.textContent = "";
  });
}
