// What the gallery says about itself: the status line above the grid (loading, what is shown, empty,
// failed with a Retry button) and the banners for the test model and an unhealthy API.

import { api } from "./api.js";
import { els } from "./elements.js";
import { filterNote } from "./filters.js";
import { collectionLabel, currentMode, currentQuery } from "./state.js";

// state is "loading", "ok", "empty" or "error" (style.css colours by it); action is {label, run}.
export function setStatus(state, text, action = null) {
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

// The status line of a list view (Places, Discover, Duplicates): the same states as the Photos view's.
export function setListStatus(element, state, text) {
  element.dataset.state = state;
  element.textContent = text;
}

export function statusState() {
  return els.status.dataset.state;
}

export function describeQuery() {
  const mode = currentMode();
  if (mode.kind === "image") return `images similar to ${mode.name}`;
  if (mode.kind === "similar") return `images like ${mode.key}`;
  if (mode.kind === "saved") return `the saved search “${mode.name}”`;
  if (mode.kind === "search") return `“${mode.q}”`;
  return "the newest images";
}

// data is the API's answer for the last page (null when there is none at hand); count is the number
// of images shown and more whether further pages exist.
export function okText(data, { count, more }) {
  const mode = currentMode();
  const minScore = currentQuery().minScore;
  const moreNote = more ? "; more load as you scroll" : "";
  const cutoff = minScore > 0 && mode.kind !== "recent" ? `, score ≥ ${minScore.toFixed(2)}` : "";
  const timing = data && typeof data.took_ms === "number" ? ` in ${Math.round(data.took_ms)} ms` : "";
  const model = data && data.model ? ` · ${data.model}` : "";
  const dates = filterNote();
  if (mode.kind === "recent") return `${count} newest images in ${collectionLabel()}${dates}${moreNote}.`;
  return `${count} ${count === 1 ? "match" : "matches"} for ${describeQuery()}${dates}${cutoff}${timing}${model}${moreNote}.`;
}

export function emptyText() {
  const mode = currentMode();
  const minScore = currentQuery().minScore;
  if (filterNote()) {
    const what = mode.kind === "recent" ? "images" : `matches for ${describeQuery()}`;
    return `No ${what}${filterNote()} in ${collectionLabel()}. Widen or clear the filters.`;
  }
  if (mode.kind === "recent") {
    return (
      `No images in ${collectionLabel()} yet. Upload some to its bucket; ` +
      "they appear here once they are embedded (watch the Pending count)."
    );
  }
  const cutoff = minScore > 0 ? ` with a score of at least ${minScore.toFixed(2)}` : "";
  const hint = minScore > 0 ? "Lower the Min score in Filters" : "Try other words";
  return `No matches for ${describeQuery()}${cutoff} in ${collectionLabel()}. ${hint}.`;
}

export function errorText(err, what) {
  if (err.status === 401) return `${what} failed: the API needs a key. Enter it in the form above.`;
  return `${what} failed: ${err.message}`;
}

// The test-model banner and the health banner, from /api/health.
export async function checkHealth() {
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
