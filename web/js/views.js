// The gallery's views, in the sidebar's order. The sidebar, the URL (?view=) and the start are built from
// this list, so a new view (People, Places, Discover, a saved search) is one entry here plus one module
// that exports register() (its listeners, once at start) and show() (draws the current query), and its
// <section> in index.html. icon: the path of a 24 × 24 line drawing.

import { registerDuplicatesView, showDuplicates } from "./duplicates.js";
import { els } from "./elements.js";
import { registerPhotosView, showPhotos } from "./photos.js";
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
    name: "duplicates",
    label: "Duplicates",
    icon: "M8 8h12v12H8zM4 16V4h12",
    section: els.duplicates,
    register: registerDuplicatesView,
    show: showDuplicates,
  },
]);
