// The cards of the list views (Places, Discover): a cover picture, a name and how many photos, each a
// real link to the photos it stands for, so it can be opened in a new tab or shared. The views handle a
// plain click themselves (one listener on their list).

import { resolveMediaUrl } from "./api.js";
import { formatCount } from "./format.js";

// The API's redirect to an image (/api/images/{collection}/{key}), for a cover whose thumbnail is missing.
function imageRoute(collection, key) {
  const path = String(key).split("/").map(encodeURIComponent).join("/");
  return resolveMediaUrl(`/api/images/${encodeURIComponent(collection)}/${path}`);
}

function coverImage(cover, collection) {
  const img = document.createElement("img");
  img.alt = "";
  img.loading = "lazy";
  img.decoding = "async";
  if (!cover) return img; // no photo to show: the card's placeholder colour stays
  // Per-image listeners: they belong to this card's lifetime.
  img.addEventListener("load", () => img.classList.add("loaded"), { once: true });
  img.addEventListener("error", () => {
    const original = imageRoute(collection, cover.key);
    if (img.src !== original) img.src = original;
  });
  img.src = resolveMediaUrl(cover.thumbnail_url) || imageRoute(collection, cover.key);
  return img;
}

// One card: {href, name, count, cover ({key, thumbnail_url} or null), collection, data (its dataset)}.
export function coverCard({ href, name, count, cover, collection, data }) {
  const link = document.createElement("a");
  link.className = "card";
  link.href = href;
  Object.assign(link.dataset, data, { count: String(count) });
  const title = document.createElement("span");
  title.className = "card-name";
  title.textContent = name;
  const number = document.createElement("span");
  number.className = "card-count";
  number.textContent = `${formatCount(count)} ${count === 1 ? "photo" : "photos"}`;
  const text = document.createElement("span");
  text.className = "card-text";
  text.append(title, number);
  link.append(coverImage(cover, collection), text);
  link.setAttribute("aria-label", `${name}, ${number.textContent}`);
  const item = document.createElement("li");
  item.append(link);
  return item;
}
