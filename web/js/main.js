// Image Browser gallery: plain ES modules, no build step, no third-party code. This file starts the
// gallery and is the one place where listeners are registered (only handlers tied to one image or
// one status message stay where those are made); the other modules do the work:
//   config.js     config.json            api.js       calls to the search API, the API key
//   state.js      URL <-> query state    query.js     first page, next pages, stale answers
//   grid.js       tiles and masonry      lightbox.js  one image large
//   upload.js     search by an image     status.js    status line and health banners
//   collection.js picker and statistics  format.js    numbers, sizes, dates as text
//   elements.js   the page's elements      filters.js   date range, one per near-duplicate
//   duplicates.js the Duplicates view      photo.js     EXIF facts and delete commands as text
//   search-ui.js  mode, sort, cutoff, the query's terms as chips, words beside an image

import { saveApiKey, setUnauthorizedHandler } from "./api.js";
import { ensureCollectionOption, loadCollections, refreshStats } from "./collection.js";
import { loadConfig } from "./config.js";
import { els } from "./elements.js";
import { copyCommand, duplicatesShown, loadGroups, syncDuplicatesView, thresholdInput } from "./duplicates.js";
import { dateChanges, syncFilterControls } from "./filters.js";
import { clampScore } from "./format.js";
import { focusTile, itemCount, noteFocusedTile, relayoutIfResized, tileIndexForKey } from "./grid.js";
import {
  closeLightbox,
  isLightboxOpen,
  lightboxClosed,
  openLightbox,
  shownItem,
  stepLightbox,
} from "./lightbox.js";
import { loadMore, runQuery, setSentinelObserver } from "./query.js";
import { syncSearchControls, withoutTerm } from "./search-ui.js";
import {
  SIMILAR_PREFIX,
  changeQuery,
  collectionParam,
  currentImageQuery,
  currentMode,
  currentQuery,
  defaultCollectionOfServer,
  historyEntryMadeBy,
  restoreFromHistory,
  startFromUrl,
} from "./state.js";
import { checkHealth, setStatus } from "./status.js";
import {
  dragCarriesFiles,
  dragEnded,
  dragEntered,
  dragLeft,
  imageFromClipboard,
  uploadFromFile,
} from "./upload.js";

const SCROLL_MARGIN_PX = 1200; // start fetching the next page this far before the end
const SLIDER_SETTLE_MS = 350;

let sliderTimer = 0;

// ---------------------------------------------------------------- actions

// The controls show the query: after navigation, back/forward and at start.
function syncControls() {
  const query = currentQuery();
  els.input.value = currentImageQuery() ? "" : query.q; // with an image, q is in the box beside it
  els.minScore.value = String(query.minScore);
  els.minScoreValue.textContent = query.minScore.toFixed(2);
  const collection = collectionParam() || defaultCollectionOfServer();
  if (collection && els.collection.value !== collection) {
    ensureCollectionOption(collection);
    els.collection.value = collection;
  }
  syncFilterControls();
  syncSearchControls();
}

// The view the query asks for: the Duplicates view, or the grid of images.
function runView() {
  syncDuplicatesView();
  if (!duplicatesShown()) runQuery();
}

// Changes the query, records it in history (push: a new back-button step) and runs it.
function navigate(changes, { replace = false, image = null, via = "" } = {}) {
  const collectionChanged = changeQuery(changes, { image, replace, via });
  syncControls();
  if (collectionChanged) refreshStats();
  runView();
}

function commitMinScore() {
  clearTimeout(sliderTimer);
  const value = clampScore(Number.parseFloat(els.minScore.value));
  if (Math.abs(value - currentQuery().minScore) < 0.001) return;
  if (currentMode().kind === "recent") {
    // The newest-images view has no scores, so there is nothing to refetch; the URL keeps the value.
    changeQuery({ minScore: value }, { replace: true, via: "slider" });
    return;
  }
  // Dragging the slider should leave one history step, not one per pixel.
  const replace = historyEntryMadeBy("slider");
  navigate({ minScore: value }, { replace, image: currentImageQuery(), via: "slider" });
}

function searchByImage(file) {
  const upload = uploadFromFile(file);
  if (!upload) return;
  navigate({ q: "" }, { image: upload });
  window.scrollTo({ top: 0 });
}

function startAll() {
  checkHealth();
  loadCollections();
  refreshStats();
  runView();
}

// ---------------------------------------------------------------- listeners

function registerListeners() {
  setUnauthorizedHandler(() => {
    els.apiKeyForm.hidden = false;
  });

  // Infinite scroll: the sentinel below the grid comes near the viewport.
  setSentinelObserver(
    new IntersectionObserver(
      (entries) => {
        if (entries.some((entry) => entry.isIntersecting)) loadMore();
      },
      { rootMargin: `0px 0px ${SCROLL_MARGIN_PX}px 0px` },
    ),
  );
  new ResizeObserver(() => relayoutIfResized()).observe(els.grid);

  // Search box, home link, slider, collection picker.
  els.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = els.input.value.trim();
    const same = q === currentQuery().q && !currentImageQuery() && !duplicatesShown();
    navigate({ q, view: "" }, { replace: same });
  });
  els.homeLink.addEventListener("click", (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey) return;
    event.preventDefault();
    navigate({ q: "", view: "" });
  });
  els.minScore.addEventListener("input", () => {
    els.minScoreValue.textContent = clampScore(Number.parseFloat(els.minScore.value)).toFixed(2);
    clearTimeout(sliderTimer);
    sliderTimer = setTimeout(commitMinScore, SLIDER_SETTLE_MS);
  });
  els.minScore.addEventListener("change", commitMinScore);
  els.collection.addEventListener("change", () => {
    const value = els.collection.value;
    if (!value) return;
    // The same uploaded image can be searched in another collection, so keep it.
    navigate({ collection: value }, { image: currentImageQuery() });
  });
  els.showNew.addEventListener("click", () => runQuery());

  // Search options: mode, sort, the cutoff's button, the terms' chips, words beside an image.
  for (const radio of els.modeInputs) {
    radio.addEventListener("change", () => navigate({ mode: radio.value }, { image: currentImageQuery() }));
  }
  els.sortSelect.addEventListener("change", () =>
    navigate({ sort: els.sortSelect.value }, { image: currentImageQuery() }),
  );
  els.cutoffButton.addEventListener("click", () =>
    navigate({ cutoff: currentQuery().cutoff === "auto" ? "none" : "auto" }, { image: currentImageQuery() }),
  );
  els.queryTerms.addEventListener("click", (event) => {
    const chip = event.target.closest(".chip");
    if (!chip) return;
    const { changes, image } = withoutTerm(Number(chip.dataset.index));
    navigate(changes, { image });
  });
  els.imageTermsForm.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate({ q: els.imageTerms.value.trim() }, { image: currentImageQuery() });
  });

  // Filters: the dates photos were taken between, one image per near-duplicate group.
  for (const input of [els.takenAfter, els.takenBefore]) {
    input.addEventListener("change", () => {
      const changes = dateChanges();
      if (changes) navigate(changes, { image: currentImageQuery() });
    });
  }
  els.clearDates.addEventListener("click", () =>
    navigate({ takenAfter: "", takenBefore: "" }, { image: currentImageQuery() }),
  );
  els.collapse.addEventListener("change", () =>
    navigate({ collapse: els.collapse.checked }, { image: currentImageQuery() }),
  );

  // The Duplicates view: open and close, level, threshold, more groups, copy a group's command.
  els.duplicatesButton.addEventListener("click", () => navigate({ view: duplicatesShown() ? "" : "duplicates" }));
  els.dupClose.addEventListener("click", () => navigate({ view: "" }));
  els.dupLevel.addEventListener("change", () => navigate({ level: els.dupLevel.value, threshold: null }));
  els.dupThreshold.addEventListener("input", () => thresholdInput());
  els.dupThreshold.addEventListener("change", () => navigate({ threshold: thresholdInput() }, { replace: true }));
  els.dupMore.addEventListener("click", () => loadGroups(true));
  els.dupGroups.addEventListener("click", (event) => {
    const button = event.target.closest(".dup-copy");
    if (button) copyCommand(button);
  });

  window.addEventListener("popstate", (event) => {
    const collectionChanged = restoreFromHistory(event.state);
    syncControls();
    if (collectionChanged) refreshStats();
    if (isLightboxOpen()) closeLightbox();
    runView();
  });

  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest && event.target.closest("input, textarea, select, [contenteditable]");
    if (event.key === "/" && !typing && !isLightboxOpen()) {
      event.preventDefault();
      els.input.focus();
      els.input.select();
    } else if (event.key === "Escape" && event.target === els.input) {
      els.input.blur();
    }
  });

  // Grid: arrow keys move through the tiles, Space or a plain click opens the lightbox.
  els.grid.addEventListener("keydown", (event) => {
    const tile = event.target.closest(".tile");
    if (!tile) return;
    const index = Number(tile.dataset.index);
    if (event.key === " ") {
      event.preventDefault();
      openLightbox(index);
      return;
    }
    const target = tileIndexForKey(index, event.key);
    if (target === null) return;
    event.preventDefault();
    if (target >= 0 && target < itemCount()) focusTile(target);
    if (target >= itemCount() - 1) loadMore();
  });
  els.grid.addEventListener("focusin", (event) => {
    const tile = event.target.closest(".tile");
    if (tile) noteFocusedTile(Number(tile.dataset.index));
  });
  els.grid.addEventListener("click", (event) => {
    const tile = event.target.closest(".tile");
    if (!tile) return;
    // Modified clicks keep their usual meaning (open the original in a new tab).
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    openLightbox(Number(tile.dataset.index));
  });

  // Lightbox.
  els.lightbox.addEventListener("keydown", (event) => {
    if (event.key === "ArrowRight") {
      event.preventDefault();
      stepLightbox(1);
    } else if (event.key === "ArrowLeft") {
      event.preventDefault();
      stepLightbox(-1);
    }
  });
  els.lightbox.addEventListener("close", () => lightboxClosed());
  // A click on the dark area around the image closes, like most lightboxes.
  els.lightbox.addEventListener("click", (event) => {
    if (event.target === els.lightbox || event.target.classList.contains("lb-figure")) closeLightbox();
  });
  els.lbClose.addEventListener("click", () => closeLightbox());
  els.lbPrev.addEventListener("click", () => stepLightbox(-1));
  els.lbNext.addEventListener("click", () => stepLightbox(1));
  els.moreLikeThis.addEventListener("click", () => {
    const item = shownItem();
    if (!item) return;
    closeLightbox();
    navigate({ q: `${SIMILAR_PREFIX}${item.key}` });
    window.scrollTo({ top: 0 });
  });

  // Search by image: pick a file, drop one anywhere, or paste one (e.g. a screenshot).
  els.fileInput.addEventListener("change", () => {
    const file = els.fileInput.files && els.fileInput.files[0];
    searchByImage(file);
    els.fileInput.value = ""; // picking the same file again should search again
  });
  window.addEventListener("dragenter", (event) => {
    if (!dragCarriesFiles(event)) return;
    event.preventDefault();
    dragEntered();
  });
  window.addEventListener("dragover", (event) => {
    if (!dragCarriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  window.addEventListener("dragleave", (event) => {
    if (!dragCarriesFiles(event)) return;
    dragLeft();
  });
  window.addEventListener("drop", (event) => {
    if (!dragCarriesFiles(event)) return;
    event.preventDefault();
    dragEnded();
    searchByImage(event.dataTransfer.files && event.dataTransfer.files[0]);
  });
  window.addEventListener("paste", (event) => {
    if (event.target.closest && event.target.closest("input, textarea")) return;
    const file = imageFromClipboard(event);
    if (file) searchByImage(file);
  });

  // Statistics poll only while the page is visible; coming back refreshes at once.
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refreshStats();
  });

  els.apiKeyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = els.apiKeyInput.value.trim();
    if (!key) return;
    try {
      saveApiKey(key);
    } catch {
      setStatus("error", "This browser does not allow storing the key (storage disabled); enable site storage.");
      return;
    }
    els.apiKeyInput.value = "";
    els.apiKeyForm.hidden = true;
    startAll();
  });
}

// ---------------------------------------------------------------- start

async function main() {
  registerListeners();
  await loadConfig();
  startFromUrl();
  syncControls();
  startAll();
}

main();
