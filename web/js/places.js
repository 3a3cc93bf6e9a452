// The Places view: where the collection's photos were taken (GET /api/places: named offline from their GPS
// position), most photos first, each with its newest photo as cover. A place opens the Photos view filtered
// to it (place= in the URL, a removable chip above the grid).

import { api } from "./api.js";
import { coverCard } from "./cards.js";
import { els } from "./elements.js";
import { placeName } from "./photo.js";
import { isPlainClick, navigate } from "./router.js";
import { PHOTOS_VIEW, collectionLabel, collectionParam, freshQuery, urlWith } from "./state.js";
import { errorText, setListStatus } from "./status.js";

let generation = 0; // bumps per listing, so a late answer of an older one is dropped

// The query that lists one place's photos, newest first.
function placeQuery(filter) {
  return freshQuery({ place: filter, view: PHOTOS_VIEW });
}

function placeCard(entry, collection) {
  return coverCard({
    href: urlWith(placeQuery(entry.filter)),
    name: placeName(entry),
    count: entry.count,
    cover: entry.cover,
    collection,
    data: { filter: entry.filter },
  });
}

export async function showPlaces() {
  generation += 1;
  const thisGeneration = generation;
  document.title = "Places · Image Browser";
  setListStatus(els.placesStatus, "loading", `Loading the places of ${collectionLabel()}…`);
  try {
    const data = await api("/api/places", { collection: collectionParam() });
    if (thisGeneration !== generation) return;
    const places = Array.isArray(data.places) ? data.places : [];
    els.placesList.replaceChildren(...places.map((entry) => placeCard(entry, data.collection)));
    setListStatus(
      els.placesStatus,
      places.length ? "ok" : "empty",
      places.length
        ? `${places.length} ${places.length === 1 ? "place" : "places"} in ${data.collection}, most photos first.`
        : `No photo in ${data.collection} has a place yet: places are named from the GPS position cameras and ` +
            "phones write into photos.",
    );
  } catch (err) {
    if (thisGeneration !== generation) return;
    els.placesList.replaceChildren();
    setListStatus(els.placesStatus, "error", errorText(err, "Loading the places"));
  }
}

export function registerPlacesView() {
  els.placesList.addEventListener("click", (event) => {
    const card = event.target.closest(".card");
    if (!card || !isPlainClick(event)) return; // a modified click opens the link in a new tab
    event.preventDefault();
    navigate(placeQuery(card.dataset.filter));
    window.scrollTo({ top: 0 });
  });
}
