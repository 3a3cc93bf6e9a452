// Image Browser gallery: plain ES modules, no build step, no third-party code. This file only starts
// the gallery: every module registers its own listeners (only handlers tied to one image or one status
// message stay where those are made), and a module whose controls show the query hooks into router.js.
//   config.js     config.json              api.js        calls to the search API, the API key
//   state.js      URL <-> query state      router.js     navigate, back/forward, the current view
//   views.js      the views, in order      sidebar.js    the navigation between them
//   photos.js     the Photos view          duplicates.js the Duplicates view
//   places.js     the Places view          discover.js   the Discover view
//   cards.js      the list views' cards    saved-searches.js saving a search, the sidebar's saved searches
//   query.js      first page, next pages   grid.js       tiles and masonry
//   lightbox.js   one image large          upload.js     search by an image
//   search-form.js the search box          filters.js    the Filters panel: dates, score, one per near-duplicate
//   search-ui.js  mode, sort, cutoff, the query's terms as chips, words beside an image
//   collection.js picker and statistics    status.js     status line and health banners
//   key-form.js   the API key form         elements.js   the page's elements
//   format.js     numbers, sizes, dates    photo.js      EXIF facts and delete commands as text

import { loadCollections, refreshStats, registerCollection } from "./collection.js";
import { loadConfig } from "./config.js";
import { registerFilters } from "./filters.js";
import { registerKeyForm } from "./key-form.js";
import { registerLightbox } from "./lightbox.js";
import { registerHistory, runView, setViews, syncControls } from "./router.js";
import { registerSearchForm } from "./search-form.js";
import { loadSavedSearches, registerSavedSearches } from "./saved-searches.js";
import { registerSearchUi } from "./search-ui.js";
import { registerSidebar } from "./sidebar.js";
import { startFromUrl } from "./state.js";
import { checkHealth } from "./status.js";
import { registerUpload } from "./upload.js";
import { VIEWS } from "./views.js";

function startAll() {
  checkHealth();
  loadCollections();
  refreshStats();
  loadSavedSearches();
  runView();
}

function registerListeners() {
  setViews(VIEWS);
  for (const view of VIEWS) view.register();
  registerSidebar(VIEWS);
  registerSavedSearches();
  registerSearchForm();
  registerFilters();
  registerSearchUi();
  registerCollection();
  registerLightbox();
  registerUpload();
  registerKeyForm(startAll);
  registerHistory();
}

async function main() {
  registerListeners();
  await loadConfig();
  startFromUrl();
  syncControls();
  startAll();
}

main();
