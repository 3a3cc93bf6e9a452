// The Discover view: the built-in categories (GET /api/discover: screenshots, receipts, pets, sunsets…),
// each with its best match as cover and how many photos pass the adaptive cutoff, counted in the
// background (the sweep). Empty categories are left out. A category opens its search in the Photos view:
// its query, pictures only (mode=semantic), with the adaptive cutoff, as the API counted it.

import { api } from "./api.js";
import { coverCard } from "./cards.js";
import { els } from "./elements.js";
import { isPlainClick, navigate } from "./router.js";
import { PHOTOS_VIEW, collectionLabel, collectionParam, freshQuery, urlWith } from "./state.js";
import { errorText, setListStatus } from "./status.js";

let generation = 0; // bumps per listing, so a late answer of an older one is dropped

function categoryQuery(text) {
  return freshQuery({ q: text, mode: "semantic", cutoff: "auto", view: PHOTOS_VIEW });
}

function categoryCard(category, collection) {
  return coverCard({
    href: urlWith(categoryQuery(category.query)),
    name: category.name,
    count: category.count,
    cover: category.cover,
    collection,
    data: { query: category.query, name: category.name },
  });
}

function discoverText(shown, empty, collection) {
  if (!shown) return `Nothing to discover in ${collection} yet: no category has a photo.`;
  const hidden = empty ? ` (${empty} empty ${empty === 1 ? "one" : "ones"} left out)` : "";
  return `${shown} ${shown === 1 ? "category" : "categories"} in ${collection}${hidden}. Counts are refreshed ` +
    "in the background.";
}

export async function showDiscover() {
  generation += 1;
  const thisGeneration = generation;
  document.title = "Discover · Image Browser";
  setListStatus(els.discoverStatus, "loading", `Loading the categories of ${collectionLabel()}…`);
  try {
    const data = await api("/api/discover", { collection: collectionParam() });
    if (thisGeneration !== generation) return;
    const categories = Array.isArray(data.categories) ? data.categories : [];
    const shown = categories.filter((category) => category.count > 0);
    els.discoverList.replaceChildren(...shown.map((category) => categoryCard(category, data.collection)));
    const empty = categories.length - shown.length;
    const text = discoverText(shown.length, empty, data.collection);
    setListStatus(els.discoverStatus, shown.length ? "ok" : "empty", text);
  } catch (err) {
    if (thisGeneration !== generation) return;
    els.discoverList.replaceChildren();
    setListStatus(els.discoverStatus, "error", errorText(err, "Loading Discover"));
  }
}

export function registerDiscoverView() {
  els.discoverList.addEventListener("click", (event) => {
    const card = event.target.closest(".card");
    if (!card || !isPlainClick(event)) return; // a modified click opens the link in a new tab
    event.preventDefault();
    navigate(categoryQuery(card.dataset.query));
    window.scrollTo({ top: 0 });
  });
}
