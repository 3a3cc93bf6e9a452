// Moving through the gallery: a change of the query (words, filters, view) is recorded in the URL and
// the history (state.js), every control shows the query again, and the current view draws it. Modules
// hook in with onQueryChange (their controls) and through the views list (views.js); this module
// imports no view, so every view module may import it.

import { els } from "./elements.js";
import { changeQuery, currentImageQuery, currentQuery, restoreFromHistory, setViewNames } from "./state.js";

let views = []; // views.js's list, set once at start
const syncs = []; // each shows the query in some controls: sync({collectionChanged})

// The views the sidebar lists and the URL may name; called once, before the query is read from the URL.
export function setViews(list) {
  views = list;
  setViewNames(list.map((view) => view.name));
}

// `sync` shows the query in a module's controls after every change, back/forward and at start.
export function onQueryChange(sync) {
  syncs.push(sync);
}

export function currentView() {
  return views.find((view) => view.name === currentQuery().view) || views[0];
}

export function syncControls({ collectionChanged = false } = {}) {
  for (const sync of syncs) sync({ collectionChanged });
}

// Shows the view the query names (the others' sections are hidden) and lets it draw the query.
export function runView() {
  const shown = currentView();
  els.main.dataset.view = shown.name;
  for (const view of views) view.section.hidden = view !== shown;
  shown.show();
}

// Changes the query, records it in history (push: a new back-button step) and runs it.
export function navigate(changes, { replace = false, image = null, via = "" } = {}) {
  const collectionChanged = changeQuery(changes, { image, replace, via });
  syncControls({ collectionChanged });
  runView();
}

// Changes an option of the query (filters, mode, collection…), keeping the uploaded image searched by, if any.
export function refine(changes) {
  navigate(changes, { image: currentImageQuery() });
}

// Back/forward: the URL is the truth.
export function registerHistory() {
  window.addEventListener("popstate", (event) => {
    const collectionChanged = restoreFromHistory(event.state);
    syncControls({ collectionChanged });
    runView();
  });
}

// A click on a link that the gallery handles itself; modified clicks keep their usual meaning (a new
// tab or window with the link's URL).
export function isPlainClick(event) {
  return event.button === 0 && !event.metaKey && !event.ctrlKey && !event.shiftKey && !event.altKey;
}
