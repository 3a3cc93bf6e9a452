// The Photos view: the grid of the current query's images (the newest, or a search's matches), more pages
// as the user scrolls, arrow keys through the tiles, and a tile opening the lightbox.

import { els } from "./elements.js";
import { focusTile, itemCount, noteFocusedTile, relayoutIfResized, tileIndexForKey } from "./grid.js";
import { openLightbox } from "./lightbox.js";
import { loadMore, runQuery, setSentinelObserver } from "./query.js";
import { isPlainClick } from "./router.js";

const SCROLL_MARGIN_PX = 1200; // start fetching the next page this far before the end

export function showPhotos() {
  runQuery();
}

export function registerPhotosView() {
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
  els.grid.addEventListener("keydown", gridKey);
  els.grid.addEventListener("focusin", (event) => {
    const tile = event.target.closest(".tile");
    if (tile) noteFocusedTile(Number(tile.dataset.index));
  });
  els.grid.addEventListener("click", (event) => {
    const tile = event.target.closest(".tile");
    if (!tile) return;
    if (!isPlainClick(event)) return; // a modified click opens the original in a new tab
    event.preventDefault();
    openLightbox(Number(tile.dataset.index));
  });
}

// Arrow keys move through the tiles (loading more at the end), Space opens the lightbox.
function gridKey(event) {
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
}
