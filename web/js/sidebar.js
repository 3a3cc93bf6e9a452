// The sidebar: one entry per view (views.js), the current one marked, each a real link to its URL so it
// can be opened in a new tab or shared; below them the saved searches (saved-searches.js). On narrow screens
// it is a drawer behind the menu button.

import { els } from "./elements.js";
import { currentView, isPlainClick, navigate, onQueryChange } from "./router.js";
import { urlWith } from "./state.js";

const SVG = "http://www.w3.org/2000/svg";

// A 24 × 24 line drawing (the views' icons, the saved searches' bookmark).
export function icon(pathData) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "20");
  svg.setAttribute("height", "20");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", pathData);
  path.setAttribute("fill", "none");
  path.setAttribute("stroke", "currentColor");
  path.setAttribute("stroke-width", "2");
  path.setAttribute("stroke-linecap", "round");
  path.setAttribute("stroke-linejoin", "round");
  svg.append(path);
  return svg;
}

function navItem(view) {
  const link = document.createElement("a");
  link.className = "nav-item";
  link.dataset.view = view.name;
  const label = document.createElement("span");
  label.textContent = view.label;
  link.append(icon(view.icon), label);
  const item = document.createElement("li");
  item.append(link);
  return item;
}

// The current view is marked; every link carries the current query (collection, words) to its view.
function syncSidebar() {
  const current = currentView().name;
  for (const link of els.navList.querySelectorAll(".nav-item")) {
    link.href = urlWith({ view: link.dataset.view });
    if (link.dataset.view === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function drawerOpen() {
  return els.sidebar.classList.contains("open");
}

function setDrawer(open) {
  els.sidebar.classList.toggle("open", open);
  els.navBackdrop.hidden = !open;
  els.menuButton.setAttribute("aria-expanded", String(open));
  if (open) els.navList.querySelector("[aria-current]")?.focus();
}

// On a phone: a choice made in the drawer (a view, a saved search) closes it.
export function closeDrawer() {
  if (drawerOpen()) setDrawer(false);
}

export function registerSidebar(views) {
  els.navList.replaceChildren(...views.map(navItem));
  els.navList.addEventListener("click", (event) => {
    const link = event.target.closest(".nav-item");
    if (!link || !isPlainClick(event)) return;
    event.preventDefault();
    setDrawer(false);
    if (link.dataset.view !== currentView().name) navigate({ view: link.dataset.view });
  });
  els.menuButton.addEventListener("click", () => setDrawer(!drawerOpen()));
  els.navBackdrop.addEventListener("click", () => setDrawer(false));
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || !drawerOpen()) return;
    setDrawer(false);
    els.menuButton.focus();
  });
  onQueryChange(syncSidebar);
}
