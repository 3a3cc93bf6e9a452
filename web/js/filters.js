// The Filters panel behind the search bar's "Filters" button: how to match and sort (search-ui.js owns
// those two), the minimum score, the dates the photos were taken between (EXIF) and "one per
// near-duplicate group". They live in the URL with the rest of the query (state.js) and go with every
// listing the grid asks the API for; the button shows how many differ from their defaults.

import { els } from "./elements.js";
import { clampScore } from "./format.js";
import { navigate, onQueryChange, refine, syncControls } from "./router.js";
import {
  DEFAULT_QUERY,
  changeQuery,
  currentImageQuery,
  currentMode,
  currentQuery,
  historyEntryMadeBy,
} from "./state.js";

const SLIDER_SETTLE_MS = 350;
// The panel's settings as a new query has them; "Reset" goes back to these.
const FILTER_DEFAULTS = Object.freeze(Object.fromEntries(
  ["takenAfter", "takenBefore", "minScore", "collapse", "mode", "sort"].map((name) => [name, DEFAULT_QUERY[name]]),
));

let sliderTimer = 0;

// The API parameters of the current filters, for /api/recent and the searches. The place is shown (and
// removed) as a chip above the grid (search-ui.js), not in the panel.
export function filterParams() {
  const query = currentQuery();
  const params = { taken_after: query.takenAfter, taken_before: query.takenBefore, place: query.place };
  if (query.collapse && currentMode().kind !== "recent") params.collapse = "near";
  return params;
}

// How many of the panel's settings differ from their defaults; the date range counts once.
export function activeFilterCount() {
  const query = currentQuery();
  const dates = query.takenAfter || query.takenBefore ? 1 : 0;
  const others = ["minScore", "collapse", "mode", "sort"].filter((name) => query[name] !== FILTER_DEFAULTS[name]);
  return dates + others.length;
}

// " taken 2023-07-01 to 2023-07-31" (or from / until one date) and " at Paris, France", for the status line;
// "" without dates or place.
export function filterNote() {
  const { takenAfter, takenBefore, place } = currentQuery();
  const at = place ? ` at ${place}` : "";
  if (takenAfter && takenBefore) return ` taken ${takenAfter} to ${takenBefore}${at}`;
  if (takenAfter) return ` taken from ${takenAfter}${at}`;
  if (takenBefore) return ` taken until ${takenBefore}${at}`;
  return at;
}

// The controls show the query: after navigation, back/forward and at start.
function syncFilterControls() {
  const query = currentQuery();
  els.takenAfter.value = query.takenAfter;
  els.takenBefore.value = query.takenBefore;
  els.takenBefore.setCustomValidity("");
  els.clearDates.hidden = !(query.takenAfter || query.takenBefore);
  els.collapse.checked = query.collapse;
  els.minScore.value = String(query.minScore);
  els.minScoreValue.textContent = query.minScore.toFixed(2);
  const count = activeFilterCount();
  els.filtersCount.textContent = String(count);
  els.filtersCount.hidden = count === 0;
  els.filtersButton.setAttribute("aria-label", count ? `Filters, ${count} active` : "Filters");
}

// What the date inputs ask for, or null while the range runs backwards (the input says why).
function dateChanges() {
  const takenAfter = els.takenAfter.value;
  const takenBefore = els.takenBefore.value;
  if (takenAfter && takenBefore && takenAfter > takenBefore) {
    els.takenBefore.setCustomValidity("The end date is before the start date.");
    els.takenBefore.reportValidity();
    return null;
  }
  els.takenBefore.setCustomValidity("");
  return { takenAfter, takenBefore };
}

function commitMinScore() {
  clearTimeout(sliderTimer);
  const value = clampScore(Number.parseFloat(els.minScore.value));
  if (Math.abs(value - currentQuery().minScore) < 0.001) return;
  if (currentMode().kind === "recent") {
    // The newest-images view has no scores, so there is nothing to refetch; the URL keeps the value.
    changeQuery({ minScore: value }, { replace: true, via: "slider" });
    syncControls();
    return;
  }
  // Dragging the slider should leave one history step, not one per pixel.
  const replace = historyEntryMadeBy("slider");
  navigate({ minScore: value }, { replace, image: currentImageQuery(), via: "slider" });
}

// ---------------------------------------------------------------- the panel

function panelOpen() {
  return !els.filtersPanel.hidden;
}

function setPanel(open) {
  els.filtersPanel.hidden = !open;
  els.filtersButton.setAttribute("aria-expanded", String(open));
}

// The panel closes on its Done button, on Escape and on a click outside it, and stays open while its
// settings change, so the results can be watched as they follow.
function registerPanel() {
  els.filtersButton.addEventListener("click", () => setPanel(!panelOpen()));
  els.filtersDone.addEventListener("click", () => {
    setPanel(false);
    els.filtersButton.focus();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || !panelOpen()) return;
    setPanel(false);
    els.filtersButton.focus();
  });
  document.addEventListener("pointerdown", (event) => {
    if (panelOpen() && !els.filtersPanel.contains(event.target) && !els.filtersButton.contains(event.target)) {
      setPanel(false);
    }
  });
}

export function registerFilters() {
  registerPanel();
  for (const input of [els.takenAfter, els.takenBefore]) {
    input.addEventListener("change", () => {
      const changes = dateChanges();
      if (changes) refine(changes);
    });
  }
  els.clearDates.addEventListener("click", () => refine({ takenAfter: "", takenBefore: "" }));
  els.collapse.addEventListener("change", () => refine({ collapse: els.collapse.checked }));
  els.minScore.addEventListener("input", () => {
    els.minScoreValue.textContent = clampScore(Number.parseFloat(els.minScore.value)).toFixed(2);
    clearTimeout(sliderTimer);
    sliderTimer = setTimeout(commitMinScore, SLIDER_SETTLE_MS);
  });
  els.minScore.addEventListener("change", commitMinScore);
  els.filtersReset.addEventListener("click", () => refine(FILTER_DEFAULTS));
  onQueryChange(syncFilterControls);
}
