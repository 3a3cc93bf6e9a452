// The search box: a search shows its matches in the Photos view; the home link goes back to the newest
// images; "/" focuses the box from anywhere, Escape leaves it.

import { els } from "./elements.js";
import { isPlainClick, navigate, onQueryChange } from "./router.js";
import { PHOTOS_VIEW, currentImageQuery, currentQuery } from "./state.js";

// With an image as the query, its words are in the box beside the image (search-ui.js), not here.
function syncSearchBox() {
  els.input.value = currentImageQuery() ? "" : currentQuery().q;
}

export function registerSearchForm() {
  els.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = els.input.value.trim();
    const query = currentQuery();
    const same = q === query.q && !currentImageQuery() && query.view === PHOTOS_VIEW;
    navigate({ q, view: PHOTOS_VIEW }, { replace: same });
  });
  els.homeLink.addEventListener("click", (event) => {
    if (!isPlainClick(event)) return;
    event.preventDefault();
    navigate({ q: "", view: PHOTOS_VIEW });
  });
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
  onQueryChange(syncSearchBox);
}
