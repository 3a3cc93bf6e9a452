// Photo metadata and duplicates as text: when a photo was taken, where (its place's name, a map link), and the
// command that deletes the copies a duplicate group does not keep. No DOM here, so node can import this
// file (tests/unit/test_web_static.py does).

// The map a place links to (a link the user may follow; nothing is loaded from it).
const MAP_BASE = "https://www.openstreetmap.org/";

// "2023-07-14T15:30:00+02:00" -> "14 Jul 2023, 15:30:00 (UTC+02:00)": the time on the camera's clock where
// the photo was taken, not converted to this browser's zone. Without an offset, the clock time alone.
export function formatTakenAt(iso, locale = undefined) {
  if (!iso) return "";
  const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?$/.exec(String(iso));
  if (!match) return String(iso);
  const clock = new Date(`${match[1]}Z`);
  if (Number.isNaN(clock.getTime())) return String(iso);
  const text = clock.toLocaleString(locale, { timeZone: "UTC", dateStyle: "medium", timeStyle: "medium" });
  const offset = match[3] === "Z" ? "+00:00" : match[3];
  return offset ? `${text} (UTC${offset})` : text;
}

// {lat, lon} -> "48.85837, 2.29448" (5 decimals: about a metre); "" without a place.
export function placeText(location) {
  if (!location || !Number.isFinite(location.lat) || !Number.isFinite(location.lon)) return "";
  return `${location.lat.toFixed(5)}, ${location.lon.toFixed(5)}`;
}

// An item's or a Places entry's {city, state, country} -> "Paris, Île-de-France, France"; a name repeated
// (Tokyo, Tokyo, Japan) reads once; "" without a place.
export function placeName(place) {
  if (!place || typeof place !== "object") return "";
  const parts = [place.city, place.state, place.country].filter((part) => typeof part === "string" && part);
  return parts.filter((part, i) => part !== parts[i - 1]).join(", ");
}

// The OpenStreetMap page with a marker on the place; "" without a place.
export function mapUrl(location) {
  if (!placeText(location)) return "";
  const lat = location.lat.toFixed(5);
  const lon = location.lon.toFixed(5);
  return `${MAP_BASE}?mlat=${lat}&mlon=${lon}#map=16/${lat}/${lon}`;
}

// A word for the shell, quoted so spaces, $ and quotes in keys stay literal.
export function shellQuote(text) {
  return `'${String(text).replaceAll("'", "'\\''")}'`;
}

// The AWS CLI commands that delete `keys` from `bucket`, one per line (other S3 tools: the same URLs).
export function deleteCommands(bucket, keys) {
  return keys.map((key) => `aws s3 rm ${shellQuote(`s3://${bucket}/${key}`)}`).join("\n");
}
