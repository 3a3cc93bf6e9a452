// The faces in the lightbox's photo: a box per face of item.people (box: left, top, right, bottom as fractions
// of the picture) over the image as it is displayed, with the person's name; a click on a face opens the
// person's photos. The layer follows the image's displayed size (it changes with the window and the original).

import { els } from "./elements.js";
import { personQuery } from "./people.js";
import { navigate } from "./router.js";
import { rememberPersonNames } from "./state.js";

function validBox(box) {
  return Array.isArray(box) && box.length === 4 && box.every((value) => Number.isFinite(value));
}

function faceBox(person) {
  const [left, top, right, bottom] = person.box;
  const button = document.createElement("button");
  button.type = "button";
  button.className = `face-box${person.name ? "" : " unnamed"}`;
  button.dataset.person = String(person.id);
  Object.assign(button.style, {
    left: `${left * 100}%`,
    top: `${top * 100}%`,
    width: `${(right - left) * 100}%`,
    height: `${(bottom - top) * 100}%`,
  });
  const label = person.name || "Unnamed";
  button.title = `${label}: show the photos of this person`;
  button.setAttribute("aria-label", `${label}: show the photos of this person`);
  const name = document.createElement("span");
  name.className = "face-name";
  name.textContent = label;
  button.append(name);
  return button;
}

// Lays the layer exactly over the image's box in the figure.
function fitLayer() {
  const img = els.lbImage;
  Object.assign(els.lbFaces.style, {
    left: `${img.offsetLeft}px`,
    top: `${img.offsetTop}px`,
    width: `${img.offsetWidth}px`,
    height: `${img.offsetHeight}px`,
  });
}

export function showFaceBoxes(item) {
  const people = Array.isArray(item.people) ? item.people.filter((person) => validBox(person.box)) : [];
  rememberPersonNames(people);
  els.lbFaces.replaceChildren(...people.map(faceBox));
  els.lbFaces.hidden = !people.length;
  if (people.length) fitLayer();
}

export function clearFaceBoxes() {
  els.lbFaces.replaceChildren();
  els.lbFaces.hidden = true;
}

export function registerFaceBoxes() {
  new ResizeObserver(() => {
    if (!els.lbFaces.hidden) fitLayer();
  }).observe(els.lbImage);
  els.lbImage.addEventListener("load", () => {
    if (!els.lbFaces.hidden) fitLayer();
  });
  els.lbFaces.addEventListener("click", (event) => {
    const box = event.target.closest(".face-box");
    if (!box) return;
    els.lightbox.close();
    navigate(personQuery(box.dataset.person));
    window.scrollTo({ top: 0 });
  });
}
