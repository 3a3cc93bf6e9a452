// The gallery's views, in the sidebar's order. The sidebar, the URL (?view=) and the start are built from
// this list, so a new view (People, …) is one entry here plus one module
// that exports register() (its listeners, once at start) and show() (draws the current query), and its
// <section> in index.html. icon: the path of a 24 × 24 line drawing.

import { registerDiscoverView, showDiscover } from "./discover.js";
import { registerDuplicatesView, showDuplicates } from "./duplicates.js";
import { els } from "./elements.js";
import { registerPhotosView, showPhotos } from "./photos.js";
import { registerPlacesView, showPlaces } from "./places.js";
import { PHOTOS_VIEW } from "./state.js";

export const VIEWS = Object.freeze([
  {
    name: PHOTOS_VIEW,
    label: "Photos",
    icon: "M3 5h18v14H3zM3 16l5-5 4 4 3-3 6 6M15.5 9.5h.01",
    section: els.photosView,
    register: registerPhotosView,
    show: showPhotos,
  },
  {
    name: "places",
    label: "Places",
    icon: "M12 21s-7-6.1-7-11.2a7 7 0 0 1 14 0C19 14.9 12 21 12 21zM12 12.3a2.5 2.5 0 1 0 0-5 2.5 2.5 0 0 0 0 5z",
    section: els.placesView,
    register: registerPlacesView,
    show: showPlaces,
  },
  {
    name: "discover",
    label: "Discover",
    icon: "M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18zM15.5 8.5l-2.2 4.8-4.8 2.2 2.2-4.8z",
    section: els.discoverView,
    register: registerDiscoverView,
    show: showDiscover,
  },
  {
    name: "duplicates",
    label: "Duplicates",
    icon: "M8 8h12v12H8zM4 16V4h12",
    section: els.duplicates,
    register: registerDuplicatesView,
    show: showDuplicates,
  },
]);
