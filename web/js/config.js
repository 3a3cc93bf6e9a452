// Settings from config.json beside index.html (the deploy rewrites it): where the API is, which
// collection to open, how many images a page holds.

const DEFAULT_CONFIG = Object.freeze({ apiBase: "", collection: "", pageSize: 30 });

// Importers read it; only loadConfig() replaces it, once at start.
export let config = DEFAULT_CONFIG;

export async function loadConfig() {
  config = Object.freeze(await readConfigFile());
}

async function readConfigFile() {
  try {
    const res = await fetch("config.json", { cache: "no-cache" });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const raw = await res.json();
    const read = { ...DEFAULT_CONFIG };
    if (typeof raw.apiBase === "string") read.apiBase = raw.apiBase.replace(/\/+$/, "");
    if (typeof raw.collection === "string") read.collection = raw.collection;
    if (Number.isInteger(raw.pageSize) && raw.pageSize >= 1 && raw.pageSize <= 100) {
      read.pageSize = raw.pageSize;
    }
    return read;
  } catch (err) {
    // The gallery still works against the same origin; say why the file was ignored.
    console.warn(`config.json could not be read (${err.message}); using the defaults.`, DEFAULT_CONFIG);
    return { ...DEFAULT_CONFIG };
  }
}
