// Search by image: checks a picked, dropped or pasted file, shrinks it for posting, shows it beside the
// status line while it is the query, and tracks file drags over the page for the drop overlay.

import { els } from "./elements.js";
import { navigate } from "./router.js";
import { PHOTOS_VIEW, addUpload, currentImageQuery } from "./state.js";
import { setStatus } from "./status.js";

let dragDepth = 0; // dragenter/dragleave also fire for every child element crossed

// What is posted for a search by image: a JPEG of at most this many pixels on its longest side. The model
// looks at 224 px, and a deployed API takes at most ~4.4 MB (a Lambda request carries 6 MB, base64-encoded).
const SEARCH_SIDE = 1024;
const SEARCH_QUALITY = 0.9;
const SMALL_ENOUGH_BYTES = 512 * 1024; // a small image within the side limit is posted as it is

// The upload to search by, or null (with the reason in the status line) when the file is no image.
function uploadFromFile(file) {
  if (!file) return null;
  if (file.type && !file.type.startsWith("image/")) {
    setStatus(
      "error",
      `${file.name} is ${file.type}, not an image. Drop or pick a JPEG, PNG, WebP, GIF, AVIF or HEIC file.`,
    );
    return null;
  }
  return addUpload(file);
}

// The file to post for this upload (a promise): shrunk once, then kept for its next pages and for back/forward.
export function searchFile(upload) {
  if (!upload.searchFile) upload.searchFile = shrink(upload.file);
  return upload.searchFile;
}

async function shrink(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" }); // EXIF rotation applied
  } catch {
    return file; // a format this browser cannot decode (e.g. HEIC): the server decodes it
  }
  const scale = Math.min(1, SEARCH_SIDE / Math.max(bitmap.width, bitmap.height));
  if (scale === 1 && file.size <= SMALL_ENOUGH_BYTES) {
    bitmap.close();
    return file;
  }
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff"; // transparency on white, as the server flattens it
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", SEARCH_QUALITY));
  if (!blob) return file;
  const name = `${(file.name || "upload").replace(/\.[^.]*$/, "")}.jpg`;
  return new File([blob], name, { type: "image/jpeg" });
}

// A small preview of the uploaded image beside the status line, as the search box is empty then.
export function showQueryImage() {
  const upload = currentImageQuery();
  if (!upload) {
    els.queryImage.hidden = true;
    els.queryImage.removeAttribute("src");
    return;
  }
  if (!upload.previewUrl) upload.previewUrl = URL.createObjectURL(upload.file);
  els.queryImage.onerror = () => {
    els.queryImage.hidden = true; // a format this browser cannot show (e.g. HEIC): the text says enough
  };
  els.queryImage.src = upload.previewUrl;
  els.queryImage.hidden = false;
}

function dragCarriesFiles(event) {
  return Boolean(event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files"));
}

function dragEntered() {
  dragDepth += 1;
  els.dropOverlay.hidden = false;
}

function dragLeft() {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) els.dropOverlay.hidden = true;
}

function dragEnded() {
  dragDepth = 0;
  els.dropOverlay.hidden = true;
}

// The first image of a paste (e.g. a screenshot), or undefined.
function imageFromClipboard(event) {
  return Array.from((event.clipboardData && event.clipboardData.files) || []).find((f) =>
    f.type.startsWith("image/"),
  );
}

// Searches by `file` in the Photos view (nothing when it is no image: the status line says why).
function searchByImage(file) {
  const upload = uploadFromFile(file);
  if (!upload) return;
  navigate({ q: "", view: PHOTOS_VIEW }, { image: upload });
  window.scrollTo({ top: 0 });
}

// Search by image: pick a file, drop one anywhere, or paste one (e.g. a screenshot).
export function registerUpload() {
  els.fileInput.addEventListener("change", () => {
    searchByImage(els.fileInput.files && els.fileInput.files[0]);
    els.fileInput.value = ""; // picking the same file again should search again
  });
  window.addEventListener("dragenter", (event) => {
    if (!dragCarriesFiles(event)) return;
    event.preventDefault();
    dragEntered();
  });
  window.addEventListener("dragover", (event) => {
    if (!dragCarriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  window.addEventListener("dragleave", (event) => {
    if (dragCarriesFiles(event)) dragLeft();
  });
  window.addEventListener("drop", (event) => {
    if (!dragCarriesFiles(event)) return;
    event.preventDefault();
    dragEnded();
    searchByImage(event.dataTransfer.files && event.dataTransfer.files[0]);
  });
  window.addEventListener("paste", (event) => {
    if (event.target.closest && event.target.closest("input, textarea")) return;
    const file = imageFromClipboard(event);
    if (file) searchByImage(file);
  });
}
