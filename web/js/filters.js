// The filters beside the search box: the dates the photos were taken between (EXIF) and "one per
// near-duplicate group". They live in the URL with the rest of the query (state.js) and go with every
// listing the grid asks the API for (taken_after, taken_before; collapse for searches).

import { els } from "./elements.js";
import { currentMode, currentQuery } from "./state.js";

// The API parameters of the current filters, for /api/recent and the searches.
export function filterParams() {
  const query = currentQuery();
  const params = { taken_after: query.takenAfter, taken_before: query.takenBefore };
  if (query.collapse && currentMode().kind !== "recent") params.collapse = "near";
  return params;
}

// The controls show the query: after navigation, back/forward and at start.
export function syncFilterControls() {
  const query = currentQuery();
  els.takenAfter.value = query.takenAfter;
  els.takenBefore.value = query.takenBefore;
  els.takenBefore.setCustomValidity("");
  els.clearDates.hidden = !(query.takenAfter || query.takenBefore);
  els.collapse.checked = query.collapse;
}

// What the date inputs ask for, or null while the range runs backwards (the input says why).
export function dateChanges() {
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

// " taken 2023-07-01 to 2023-07-31" (or from / until one date), for the status line; "" without dates.
export function filterNote() {
  const { takenAfter, takenBefore } = currentQuery();
  if (takenAfter && takenBefore) return ` taken ${takenAfter} to ${takenBefore}`;
  if (takenAfter) return ` taken from ${takenAfter}`;
  if (takenBefore) return ` taken until ${takenBefore}`;
  return "";
}
