// Search by image: checks a picked, dropped or pasted file, shows it beside the status line while
// it is the query, and tracks file drags over the page for the drop overlay.

import { els } from "./elements.js";
import { addUpload, currentImageQuery } from "./state.js";
import { setStatus } from "./status.js";

let dragDepth = 0; // dragenter/dragleave also fire for every child element crossed

// The upload to search by, or null (with the reason in the status line) when the file is no image.
export function uploadFromFile(file) {
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

export function dragCarriesFiles(event) {
  return Boolean(event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files"));
}

export function dragEntered() {
  dragDepth += 1;
  els.dropOverlay.hidden = false;
}

export function dragLeft() {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) els.dropOverlay.hidden = true;
}

export function dragEnded() {
  dragDepth = 0;
  els.dropOverlay.hidden = true;
}

// The first image of a paste (e.g. a screenshot), or undefined.
export function imageFromClipboard(event) {
  return Array.from((event.clipboardData && event.clipboardData.files) || []).find((f) =>
    f.type.startsWith("image/"),
  );
}
