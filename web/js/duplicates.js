// The Duplicates view: groups of copies side by side (exact: the same file; near: re-encodes and
// resizes; similar: bursts and retakes), the copy to keep marked, level and threshold controls, and the
// commands that delete the other copies with the user's own S3 tool. The gallery deletes nothing.

import { api, resolveMediaUrl } from "./api.js";
import { els } from "./elements.js";
import { formatBytes } from "./format.js";
import { deleteCommands, formatTakenAt } from "./photo.js";
import { navigate } from "./router.js";
import { collectionLabel, collectionParam, currentQuery } from "./state.js";
import { errorText, setListStatus } from "./status.js";

const GROUPS_PER_PAGE = 20;
const LEVEL_NAMES = { exact: "exact copies", near: "near-duplicates", similar: "similar shots" };

let generation = 0; // bumps per listing, so a late answer of an older one is dropped
let nextCursor = null;

// Draws the view for the query's level and threshold (router.js shows its section).
export function showDuplicates() {
  const { level, threshold } = currentQuery();
  els.dupLevel.value = level;
  els.dupThreshold.disabled = level === "exact";
  if (threshold !== null) showThreshold(threshold);
  loadGroups(false);
}

export function registerDuplicatesView() {
  els.dupLevel.addEventListener("change", () => navigate({ level: els.dupLevel.value, threshold: null }));
  els.dupThreshold.addEventListener("input", () => thresholdInput());
  els.dupThreshold.addEventListener("change", () => navigate({ threshold: thresholdInput() }, { replace: true }));
  els.dupMore.addEventListener("click", () => loadGroups(true));
  els.dupGroups.addEventListener("click", (event) => {
    const button = event.target.closest(".dup-copy");
    if (button) copyCommand(button);
  });
}

function showThreshold(value) {
  els.dupThreshold.value = String(value);
  els.dupThresholdValue.textContent = Number(value).toFixed(3);
}

// The slider moved: its value as a threshold (committed to the query when the slider is let go).
function thresholdInput() {
  const value = Number.parseFloat(els.dupThreshold.value);
  els.dupThresholdValue.textContent = value.toFixed(3);
  return value;
}

function setDupStatus(state, text) {
  setListStatus(els.dupStatus, state, text);
}

async function loadGroups(more) {
  generation += 1;
  const thisGeneration = generation;
  const { level, threshold } = currentQuery();
  const params = { collection: collectionParam(), level, limit: GROUPS_PER_PAGE, cursor: more ? nextCursor : "" };
  if (level !== "exact" && threshold !== null) params.threshold = threshold;
  els.dupMore.hidden = true;
  if (!more) els.dupGroups.replaceChildren();
  setDupStatus("loading", `Finding ${LEVEL_NAMES[level]} in ${collectionLabel()}…`);
  try {
    const data = await api("/api/duplicates", params);
    if (thisGeneration !== generation) return;
    for (const group of data.groups) els.dupGroups.append(groupElement(group, data.bucket));
    nextCursor = data.next_cursor || null;
    els.dupMore.hidden = !nextCursor;
    if (data.threshold !== null && threshold === null) showThreshold(data.threshold);
    const within = data.threshold !== null ? ` (cosine distance ≤ ${data.threshold.toFixed(3)})` : "";
    const waiting = data.waiting
      ? ` ${data.waiting.toLocaleString()} new images are not compared yet: look again soon.`
      : "";
    setDupStatus(
      data.total_groups ? "ok" : "empty",
      data.total_groups
        ? `${data.total_groups} ${data.total_groups === 1 ? "group" : "groups"} of ${LEVEL_NAMES[level]}${within} ` +
            `in ${data.collection}, biggest first. The suggested copy to keep is marked.${waiting}`
        : `No ${LEVEL_NAMES[level]}${within} in ${data.collection}.${waiting}`,
    );
  } catch (err) {
    if (thisGeneration !== generation) return;
    setDupStatus("error", errorText(err, "Finding duplicates"));
  }
}

function itemFigure(item, keep) {
  const figure = document.createElement("figure");
  figure.className = keep ? "dup-item dup-keep" : "dup-item";
  figure.dataset.key = item.key;
  const link = document.createElement("a");
  link.href = resolveMediaUrl(item.url) || "#";
  link.target = "_blank";
  link.rel = "noopener";
  const img = document.createElement("img");
  img.alt = item.key;
  img.loading = "lazy";
  img.src = resolveMediaUrl(item.thumbnail_url) || link.href;
  link.append(img);
  const caption = document.createElement("figcaption");
  const name = document.createElement("strong");
  name.textContent = item.key;
  const facts = [item.width && item.height ? `${item.width} × ${item.height}` : "", formatBytes(item.size),
    formatTakenAt(item.taken_at), keep ? "" : `similarity ${Number(item.score).toFixed(4)}`];
  caption.append(name, document.createElement("br"), facts.filter(Boolean).join(" · "));
  figure.append(link, caption);
  if (keep) {
    const badge = document.createElement("span");
    badge.className = "dup-keep-badge";
    badge.textContent = "Keep";
    badge.title = "Suggested copy to keep: most pixels, then taken earliest, then the shortest name";
    figure.append(badge);
  }
  return figure;
}

function groupElement(group, bucket) {
  const article = document.createElement("article");
  article.className = "dup-group";
  article.dataset.keep = group.keep;
  const title = document.createElement("h3");
  title.textContent = `${group.items.length} ${LEVEL_NAMES[group.level]} · keep ${group.keep}`;
  const row = document.createElement("div");
  row.className = "dup-items";
  for (const item of group.items) row.append(itemFigure(item, item.key === group.keep));
  const others = group.items.map((item) => item.key).filter((key) => key !== group.keep);
  const how = document.createElement("p");
  how.className = "dup-how";
  how.textContent = `Delete the other ${others.length === 1 ? "copy" : `${others.length} copies`} with your S3 tool:`;
  const command = document.createElement("pre");
  command.className = "dup-command";
  command.textContent = deleteCommands(bucket, others);
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "btn btn-small dup-copy";
  copy.textContent = "Copy command";
  article.append(title, row, how, command, copy);
  return article;
}

// "Copy command" of one group: the commands onto the clipboard.
async function copyCommand(button) {
  const command = button.closest(".dup-group")?.querySelector(".dup-command")?.textContent || "";
  try {
    await navigator.clipboard.writeText(command);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Select the text to copy it"; // no clipboard access (http, permissions)
  }
}
