// The lightbox: one image large with its details, previous/next through the results (loading the
// next page when the end is reached), the thumbnail first and the original once it has loaded.

import { els } from "./elements.js";
import { formatBytes, formatDate, formatScore } from "./format.js";
import { focusTile, itemAt, itemCount, tileAt } from "./grid.js";
import { formatTakenAt, mapUrl, placeName, placeText } from "./photo.js";
import { hasMorePages, loadMore } from "./query.js";
import { navigate, onQueryChange } from "./router.js";
import { reasonText } from "./search-ui.js";
import { PHOTOS_VIEW, SIMILAR_PREFIX, collectionLabel, freshQuery } from "./state.js";

let shownIndex = -1;
let loadToken = 0; // bumps per image shown, so a slow original cannot replace a later image

function addDetail(name, value) {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.append(value); // text, or an element (the map link)
  els.lbDetails.append(dt, dd);
}

// A button in the details that searches: a tag, or the photo's place (the click is handled in registerLightbox).
function searchButton(className, text, title, data) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = className;
  button.textContent = text;
  button.title = title;
  Object.assign(button.dataset, data);
  return button;
}

// Where: the place's name (a click lists the photos taken there) and the GPS position linking to OpenStreetMap.
function placeDetail(item) {
  const where = document.createDocumentFragment();
  const name = placeName(item.place);
  if (name) {
    const filter = [item.place.city, item.place.state, item.place.country].filter(Boolean).join(", ");
    where.append(searchButton("lb-place-name", name, "Show the photos taken here", { place: filter }));
  }
  const position = placeText(item.location);
  if (position) {
    const link = document.createElement("a");
    link.className = "lb-place";
    link.href = mapUrl(item.location);
    link.target = "_blank";
    link.rel = "noopener";
    link.textContent = position;
    link.title = "Open the place on OpenStreetMap";
    where.append(link);
  }
  return where.childNodes.length ? where : null;
}

// When and where the photo was taken, and with what (EXIF); the keywords and caption written into it.
function addPhotoDetails(item) {
  if (item.taken_at) addDetail("Taken", formatTakenAt(item.taken_at));
  if (item.camera) addDetail("Camera", item.camera);
  const where = placeDetail(item);
  if (where) addDetail("Place", where);
  if (Array.isArray(item.tags) && item.tags.length) {
    const chips = document.createElement("span");
    chips.className = "lb-tags";
    chips.append(...item.tags.map((tag) => searchButton("chip chip-tag", tag, `Search “${tag}”`, { tag })));
    addDetail("Tags", chips);
  }
  if (item.caption) addDetail("Caption", item.caption);
  if (item.collapsed > 0) addDetail("Near-duplicates", `${item.collapsed} more not shown`);
}

function renderLightbox() {
  const index = shownIndex;
  const item = itemAt(index);
  if (!item) return;
  loadToken += 1;
  const token = loadToken;
  els.lbKey.textContent = item.key;
  els.lbDetails.replaceChildren();
  const score = formatScore(item.score);
  if (score) addDetail("Score", score);
  if (reasonText(item)) addDetail("Matched by", reasonText(item));
  if (item.width && item.height) addDetail("Dimensions", `${item.width} × ${item.height} px`);
  addDetail("Size", formatBytes(item.size));
  addDetail("Modified", formatDate(item.last_modified));
  addPhotoDetails(item);
  if (item.text) addDetail("Text", item.text.split("\n").join(" · ")); // the words the OCR stage read in it
  if (item.content_type) addDetail("Type", item.content_type);
  addDetail("Collection", collectionLabel());
  addDetail("Position", `${index + 1} of ${itemCount()}${hasMorePages() ? "+" : ""}`);
  els.lbOpen.href = item.url || "#";

  // Show the thumbnail at once (already cached), then swap in the original when it has loaded.
  els.lbImage.alt = item.key;
  els.lbImage.src = item.thumbnail_url || item.url;
  if (item.width && item.height) {
    els.lbImage.width = item.width;
    els.lbImage.height = item.height;
  } else {
    els.lbImage.removeAttribute("width");
    els.lbImage.removeAttribute("height");
  }
  if (item.thumbnail_url && item.url && item.thumbnail_url !== item.url) {
    els.lbLoading.hidden = false;
    els.lbLoading.textContent = "Loading original…";
    const original = new Image();
    original.onload = () => {
      if (token !== loadToken) return;
      els.lbImage.src = item.url;
      els.lbLoading.hidden = true;
    };
    original.onerror = () => {
      if (token !== loadToken) return;
      els.lbLoading.textContent = "The original could not be loaded; showing the thumbnail.";
    };
    original.src = item.url;
  } else {
    els.lbLoading.hidden = true;
  }
  els.lbPrev.disabled = index <= 0;
  els.lbNext.disabled = index >= itemCount() - 1 && !hasMorePages();
}

export function openLightbox(index) {
  if (!itemAt(index)) return;
  shownIndex = index;
  renderLightbox();
  if (!els.lightbox.open) els.lightbox.showModal();
  els.moreLikeThis.focus();
}

async function stepLightbox(step) {
  const target = shownIndex + step;
  if (target < 0) return;
  if (target >= itemCount()) {
    if (!hasMorePages()) return;
    await loadMore();
    if (target >= itemCount()) return;
  }
  shownIndex = target;
  renderLightbox();
}

function closeLightbox() {
  els.lightbox.close();
}

// After the dialog closed (Esc, button, backdrop): stop loading and return focus to the tile of the
// image last shown, which may differ from the one clicked.
function lightboxClosed() {
  loadToken += 1;
  els.lbImage.removeAttribute("src");
  const tile = tileAt(shownIndex);
  if (tile) {
    focusTile(shownIndex);
    tile.scrollIntoView({ block: "nearest" });
  }
}

// "More like this": the images like the one on show, in the Photos view.
function moreLikeThis() {
  const item = itemAt(shownIndex);
  if (!item) return;
  closeLightbox();
  navigate({ q: `${SIMILAR_PREFIX}${item.key}`, view: PHOTOS_VIEW });
  window.scrollTo({ top: 0 });
}

// A tag or the place in the details: a new query of its photos in the Photos view (a tag as exact words,
// "quoted"; the other filters dropped).
function searchFromDetails(event) {
  const button = event.target.closest("button[data-tag], button[data-place]");
  if (!button) return;
  closeLightbox();
  const tag = button.dataset.tag;
  if (tag) navigate(freshQuery({ q: `"${tag.replaceAll('"', "")}"`, view: PHOTOS_VIEW }));
  else navigate(freshQuery({ place: button.dataset.place, view: PHOTOS_VIEW }));
  window.scrollTo({ top: 0 });
}

export function registerLightbox() {
  els.lbDetails.addEventListener("click", searchFromDetails);
  els.lightbox.addEventListener("keydown", (event) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    event.preventDefault();
    stepLightbox(step);
  });
  els.lightbox.addEventListener("close", () => lightboxClosed());
  // A click on the dark area around the image closes, like most lightboxes.
  els.lightbox.addEventListener("click", (event) => {
    if (event.target === els.lightbox || event.target.classList.contains("lb-figure")) closeLightbox();
  });
  els.lbClose.addEventListener("click", () => closeLightbox());
  els.lbPrev.addEventListener("click", () => stepLightbox(-1));
  els.lbNext.addEventListener("click", () => stepLightbox(1));
  els.moreLikeThis.addEventListener("click", moreLikeThis);
  // Back/forward to another query: the image on show belongs to the old one.
  onQueryChange(() => {
    if (els.lightbox.open) closeLightbox();
  });
}
