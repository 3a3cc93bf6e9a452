// Steering a search: the parsed terms as chips (click one to remove it), the mode (hybrid / pictures /
// words), the sort, the cutoff ("N more below the cutoff"), why each result matched, and the words typed
// beside an image searched by. The options live in the URL with the rest of the query (state.js).

import { els } from "./elements.js";
import { navigate, onQueryChange, refine } from "./router.js";
import { currentImageQuery, currentMode, currentQuery } from "./state.js";

const REASONS = { name: "name", text: "text", visual: "picture" };
const KINDS = { text: "words and meaning", keyword: "exact words", image: "image" };

let shownTerms = []; // the terms of the answer on screen, as the API read them

// The API parameters of the search options; defaults are left out of the request.
export function searchParams() {
  const { mode, sort, cutoff } = currentQuery();
  return {
    mode: mode === "hybrid" || (mode === "keyword" && !wordsPossible()) ? "" : mode,
    sort: sort === "relevance" ? "" : sort,
    cutoff: cutoff === "auto" ? "" : cutoff,
  };
}

// Words alone cannot search by an image: "Words" is off while an image is the query.
function wordsPossible() {
  return !["image", "similar"].includes(currentMode().kind);
}

// The controls show the query: after navigation, back/forward and at start.
function syncSearchControls() {
  const { mode, sort, q } = currentQuery();
  for (const radio of els.modeInputs) {
    radio.checked = radio.value === mode;
    radio.disabled = radio.value === "keyword" && !wordsPossible();
  }
  els.sortSelect.value = sort;
  const image = currentImageQuery();
  els.imageTermsForm.hidden = !image;
  if (image) els.imageTerms.value = q;
}

// One term written back in the query language: weight, similar:, quotes.
function termText(term) {
  const weight = Math.abs(term.weight);
  const prefix = weight === 1 ? "" : `${weight}:`;
  if (term.kind === "image") return `${prefix}similar:${term.value}`;
  if (term.kind === "keyword") return `${prefix}"${term.value}"`;
  return `${prefix}${term.value}`;
}

// The text of a query made of `terms` (a minus first term keeps its sign).
export function queryText(terms) {
  return terms
    .map((term, i) => `${term.weight < 0 ? (i ? " - " : "- ") : i ? " + " : ""}${termText(term)}`)
    .join("");
}

function chip(term, index) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `chip chip-${term.kind}${term.weight < 0 ? " chip-minus" : ""}`;
  button.dataset.index = String(index);
  const weight = Math.abs(term.weight) === 1 ? "" : ` ×${Math.abs(term.weight)}`;
  const value = term.kind === "keyword" ? `“${term.value}”` : term.value;
  button.textContent = `${term.weight < 0 ? "− " : ""}${value}${weight}`;
  button.title = `${KINDS[term.kind] || term.kind}: click to remove`;
  button.setAttribute("aria-label", `Remove ${term.weight < 0 ? "minus " : ""}term ${value}`);
  return button;
}

// The place filter as a chip before the terms (a Places entry or the lightbox's place set it): click to remove.
function placeChip() {
  const { place } = currentQuery();
  if (!place) return [];
  const button = document.createElement("button");
  button.type = "button";
  button.className = "chip chip-place";
  button.textContent = `Place: ${place}`;
  button.title = "Only photos taken here: click to remove";
  button.setAttribute("aria-label", `Remove the place filter ${place}`);
  return [button];
}

// The answer's terms as chips above the grid (after the place filter's), and the cutoff's button beside them.
export function showSearchAnswer(data) {
  shownTerms = (data && data.query && data.query.terms) || [];
  const filters = placeChip();
  els.filterChips.replaceChildren(...filters);
  els.queryTerms.replaceChildren(...shownTerms.map(chip));
  const hidden = data && typeof data.hidden === "number" ? data.hidden : 0;
  const auto = currentQuery().cutoff === "auto";
  els.cutoffButton.hidden = currentMode().kind === "recent" || (auto && hidden === 0);
  els.cutoffButton.textContent = auto ? `${hidden} more below the cutoff` : "Hide the weak matches";
  els.cutoffButton.title = auto
    ? "Weak picture matches the cutoff held back: show them too"
    : "Keep only picture matches scoring at least halfway from the model's floor to the best match";
  els.searchBar.hidden = !shownTerms.length && !filters.length && els.cutoffButton.hidden;
}

export function clearSearchAnswer() {
  showSearchAnswer(null);
}

// What removing chip `index` does: {changes, image} for navigate(). The uploaded image is the first
// term of an image search: removing it searches the words alone.
function withoutTerm(index) {
  const image = currentImageQuery();
  if (image && index === 0) return { changes: { q: currentQuery().q }, image: null };
  const terms = shownTerms.slice(image ? 1 : 0);
  return { changes: { q: queryText(terms.filter((_, i) => i !== index - (image ? 1 : 0))) }, image };
}

// Why a result matched, as a short discreet text ("name · picture"), or "" when the answer says nothing.
export function reasonText(item) {
  return Array.isArray(item.matched) ? item.matched.map((reason) => REASONS[reason] || reason).join(" · ") : "";
}

export function registerSearchUi() {
  for (const radio of els.modeInputs) radio.addEventListener("change", () => refine({ mode: radio.value }));
  els.sortSelect.addEventListener("change", () => refine({ sort: els.sortSelect.value }));
  els.cutoffButton.addEventListener("click", () =>
    refine({ cutoff: currentQuery().cutoff === "auto" ? "none" : "auto" }),
  );
  els.filterChips.addEventListener("click", (event) => {
    if (event.target.closest(".chip-place")) refine({ place: "" });
  });
  els.queryTerms.addEventListener("click", (event) => {
    const chip = event.target.closest(".chip");
    if (!chip) return;
    const { changes, image } = withoutTerm(Number(chip.dataset.index));
    navigate(changes, { image });
  });
  els.imageTermsForm.addEventListener("submit", (event) => {
    event.preventDefault();
    refine({ q: els.imageTerms.value.trim() });
  });
  onQueryChange(syncSearchControls);
}
