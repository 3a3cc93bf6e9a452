// How numbers, sizes, dates and keys read on the page. No DOM here, so node can import this file
// (tests/unit/test_web_static.py does).

export function formatScore(score) {
  return typeof score === "number" && Number.isFinite(score) ? score.toFixed(3) : "";
}

export function formatBytes(bytes) {
  if (typeof bytes !== "number" || !Number.isFinite(bytes)) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

export function formatCount(n) {
  return typeof n === "number" ? n.toLocaleString() : "–";
}

export function formatDate(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

export function baseName(key) {
  const parts = String(key).split("/");
  return parts[parts.length - 1] || String(key);
}

export function clampScore(value) {
  return Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : 0;
}

// The `move` block of /api/stats ({from, to, done, total}) while the collection moves to another
// model; "" when there is none (null or absent), so the stats bar hides the note.
export function moveText(move) {
  if (!move || typeof move !== "object" || !move.to) return "";
  return `Moving to ${move.to}: ${formatCount(move.done)}/${formatCount(move.total)}`;
}

// The `backlog` block of /api/stats ({queued, done, per_minute, eta_seconds}) while queued bulk work
// drains (a backfill of an existing bucket); "" when there is none.
export function backlogText(backlog) {
  if (!backlog || typeof backlog !== "object" || !backlog.queued) return "";
  const eta = Number.isFinite(backlog.eta_seconds) && backlog.eta_seconds > 0
    ? `, about ${backlog.eta_seconds < 90 ? `${Math.round(backlog.eta_seconds)} s` : `${Math.round(backlog.eta_seconds / 60)} min`} left`
    : "";
  return `Backlog: ${formatCount(backlog.done)}/${formatCount(backlog.queued)}${eta}`;
}
