// The result grid: the loaded items, one tile each, a masonry layout computed from the API's
// width/height (so every tile has its final size before its image arrives and nothing moves), and a
// roving tabindex so arrow keys move through the tiles.

import { resolveMediaUrl } from "./api.js";
import { els } from "./elements.js";
import { baseName, formatScore } from "./format.js";
import { reasonText } from "./search-ui.js";

const TARGET_COLUMN_WIDTH = 260; // px; the number of columns follows the grid width
const MIN_ASPECT = 0.4; // height / width clamps, so panoramas and strips stay usable tiles
const MAX_ASPECT = 2.5;

let items = []; // in result order; tile i shows items[i]
let focusIndex = 0; // the one tile reachable with Tab
const layout = { width: 0, cols: 0, colWidth: 0, gap: 0, heights: [] };

export function itemAt(index) {
  return items[index];
}

export function itemCount() {
  return items.length;
}

export function itemKeys() {
  return items.map((item) => item.key);
}

// Forgets the items and removes their tiles, for a new query.
export function clearGrid() {
  items = [];
  focusIndex = 0;
  els.grid.replaceChildren();
  layout.heights = [];
  layout.width = 0;
  els.grid.style.height = "0px";
}

function aspectOf(item) {
  const w = Number(item.width);
  const h = Number(item.height);
  if (!(w > 0 && h > 0)) return 1; // unknown size: a square placeholder
  return Math.min(MAX_ASPECT, Math.max(MIN_ASPECT, h / w));
}

// A small label over a tile (score, why it matched, near-duplicates folded into it).
function badge(className, text, title) {
  const span = document.createElement("span");
  span.className = className;
  span.textContent = text;
  span.title = title;
  return span;
}

function makeTile(item, index) {
  const tile = document.createElement("a");
  tile.className = "tile";
  tile.href = item.url || "#";
  tile.dataset.key = item.key;
  tile.dataset.index = String(index);
  tile.tabIndex = index === focusIndex ? 0 : -1;
  const score = formatScore(item.score);
  tile.setAttribute("aria-label", score ? `${item.key}, score ${score}` : item.key);
  tile.title = item.key;

  const img = document.createElement("img");
  img.alt = "";
  img.loading = "lazy";
  img.decoding = "async";
  if (item.width && item.height) {
    img.width = item.width;
    img.height = item.height;
  }
  // Per-image listeners: they belong to the tile's own lifetime, not to the page's wiring.
  img.addEventListener("load", () => tile.classList.add("loaded"), { once: true });
  img.addEventListener("error", () => {
    // No thumbnail yet (or it expired): fall back to the original, then give up visibly.
    if (item.url && img.src !== item.url) img.src = item.url;
    else tile.classList.add("broken");
  });
  img.src = item.thumbnail_url || item.url;
  tile.append(img);

  if (score) tile.append(badge("score", score, "Cosine similarity to the query"));
  const reasons = reasonText(item);
  if (reasons) {
    // Why it matched (name, text, picture): small, in a corner.
    tile.append(badge("reasons", reasons, "Why it matched"));
    tile.setAttribute("aria-label", `${tile.getAttribute("aria-label")}, matched by ${reasons}`);
  }
  if (item.collapsed > 0) {
    // collapse=near: this tile stands for its near-duplicates too.
    const title = `${item.collapsed} near-${item.collapsed === 1 ? "duplicate" : "duplicates"} not shown`;
    tile.append(badge("collapsed", `+${item.collapsed}`, title));
  }
  const caption = document.createElement("span");
  caption.className = "caption";
  caption.textContent = baseName(item.key);
  tile.append(caption);
  return tile;
}

export function appendItems(rawItems) {
  if (!rawItems.length) return;
  const added = rawItems.map((item) => ({
    ...item,
    url: resolveMediaUrl(item.url),
    thumbnail_url: resolveMediaUrl(item.thumbnail_url),
  }));
  const start = items.length;
  const fragment = document.createDocumentFragment();
  const tiles = added.map((item, offset) => {
    items.push(item);
    const tile = makeTile(item, start + offset);
    fragment.append(tile);
    return tile;
  });
  els.grid.append(fragment);
  if (!placeTiles(tiles)) relayout();
}

function measure() {
  const width = els.grid.clientWidth;
  const gap = width < 600 ? 6 : 10;
  const cols = Math.max(2, Math.min(8, Math.round(width / TARGET_COLUMN_WIDTH)));
  return { width, cols, gap, colWidth: (width - gap * (cols - 1)) / cols };
}

// Places tiles in the shortest column using only width/height from the API. Returns false when a
// full relayout is due (the grid width changed since the last one).
function placeTiles(tiles) {
  const m = measure();
  if (!m.width) return true;
  if (m.width !== layout.width || layout.heights.length !== m.cols) return false;
  for (const tile of tiles) {
    const item = items[Number(tile.dataset.index)];
    const height = Math.round(layout.colWidth * aspectOf(item));
    let col = 0;
    for (let c = 1; c < layout.cols; c += 1) if (layout.heights[c] < layout.heights[col]) col = c;
    tile.dataset.col = String(col);
    tile.style.left = `${col * (layout.colWidth + layout.gap)}px`;
    tile.style.top = `${layout.heights[col]}px`;
    tile.style.width = `${layout.colWidth}px`;
    tile.style.height = `${height}px`;
    layout.heights[col] += height + layout.gap;
  }
  els.grid.style.height = `${Math.max(0, ...layout.heights) - layout.gap}px`;
  return true;
}

function relayout() {
  const m = measure();
  if (!m.width) return;
  Object.assign(layout, m, { heights: new Array(m.cols).fill(0) });
  placeTiles(Array.from(els.grid.children));
}

export function relayoutIfResized() {
  if (els.grid.clientWidth !== layout.width) relayout();
}

// ---------------------------------------------------------------- keyboard focus

export function tileAt(index) {
  return els.grid.children[index] || null;
}

export function focusTile(index) {
  const tile = tileAt(index);
  if (!tile) return;
  const previous = tileAt(focusIndex);
  if (previous) previous.tabIndex = -1;
  focusIndex = index;
  tile.tabIndex = 0;
  tile.focus();
}

// A tile got focus some other way (click, Tab): it becomes the one Tab returns to.
export function noteFocusedTile(index) {
  if (index === focusIndex) return;
  const previous = tileAt(focusIndex);
  if (previous) previous.tabIndex = -1;
  focusIndex = index;
  const tile = tileAt(index);
  if (tile) tile.tabIndex = 0;
}

function neighbourInColumn(index, step) {
  const col = tileAt(index)?.dataset.col;
  for (let i = index + step; i >= 0 && i < items.length; i += step) {
    if (tileAt(i)?.dataset.col === col) return i;
  }
  return -1;
}

// Where a key moves focus from tile `index`: left/right in result order, up/down within a column,
// Home/End to the ends. -1 when there is no such tile; null when the key is not a grid key.
export function tileIndexForKey(index, key) {
  if (key === "ArrowRight") return index + 1;
  if (key === "ArrowLeft") return index - 1;
  if (key === "ArrowDown") return neighbourInColumn(index, 1);
  if (key === "ArrowUp") return neighbourInColumn(index, -1);
  if (key === "Home") return 0;
  if (key === "End") return items.length - 1;
  return null;
}
