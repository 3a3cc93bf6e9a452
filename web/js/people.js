// The People view: the faces the faces stage grouped into people (GET /api/people), most faces first, each as
// its cover face cropped from the photo, with its name and how many faces. A name is edited in place (click
// it: Enter saves with PATCH /api/people/{id}, Escape cancels); a face opens the Photos view filtered to the
// person (person= in the URL, a removable chip above the grid).

import { api, apiSend } from "./api.js";
import { coverImage } from "./cards.js";
import { els } from "./elements.js";
import { formatCount } from "./format.js";
import { isPlainClick, navigate } from "./router.js";
import {
  PHOTOS_VIEW,
  collectionLabel,
  collectionParam,
  freshQuery,
  rememberPersonNames,
  urlWith,
} from "./state.js";
import { errorText, setListStatus } from "./status.js";

const FACE_MARGIN = 1.6; // the crop shows a little around the face box: hair, chin
const UNNAMED = "Add a name";

let generation = 0; // bumps per listing, so a late answer of an older one is dropped

// The query that lists one person's photos, newest first.
export function personQuery(id) {
  return freshQuery({ person: Number(id), view: PHOTOS_VIEW });
}

// Sizes and moves the picture in its square frame so the face box (fractions of the picture) fills the middle.
function cropToFace(img, box) {
  const [left, top, right, bottom] = box;
  const width = img.naturalWidth;
  const height = img.naturalHeight;
  const side = Math.max((right - left) * width, (bottom - top) * height) * FACE_MARGIN;
  if (!(side > 0)) return;
  const centreX = ((left + right) / 2) * width;
  const centreY = ((top + bottom) / 2) * height;
  img.style.width = `${(width / side) * 100}%`;
  img.style.left = `${((side / 2 - centreX) / side) * 100}%`;
  img.style.top = `${((side / 2 - centreY) / side) * 100}%`; // the frame is square: % of its height = of its width
}

function faceCrop(person, collection) {
  const frame = document.createElement("span");
  frame.className = "face-crop";
  const img = coverImage(person.cover, collection);
  if (person.cover && Array.isArray(person.cover.box) && person.cover.box.length === 4) {
    img.addEventListener("load", () => cropToFace(img, person.cover.box)); // again after the fallback's load
  }
  frame.append(img);
  return frame;
}

function nameButton(name) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `card-name person-name${name ? "" : " unnamed"}`;
  button.textContent = name || UNNAMED;
  button.title = name ? "Click to rename" : "Click to name this person";
  return button;
}

function personCard(person, collection) {
  const item = document.createElement("li");
  item.className = "card person-card";
  item.dataset.id = String(person.id);
  item.dataset.name = person.name || "";
  item.dataset.faces = String(person.faces);
  const link = document.createElement("a");
  link.className = "person-face";
  link.href = urlWith(personQuery(person.id));
  link.setAttribute("aria-label", `The photos of ${person.name || `person ${person.id}`}`);
  link.append(faceCrop(person, collection));
  const count = document.createElement("span");
  count.className = "card-count";
  count.textContent = `${formatCount(person.faces)} ${person.faces === 1 ? "face" : "faces"}`;
  const error = document.createElement("span");
  error.className = "person-error";
  error.setAttribute("role", "alert");
  error.hidden = true;
  const text = document.createElement("span");
  text.className = "card-text";
  text.append(nameButton(person.name), count, error);
  item.append(link, text);
  return item;
}

export async function showPeople() {
  generation += 1;
  const thisGeneration = generation;
  document.title = "People · Image Browser";
  setListStatus(els.peopleStatus, "loading", `Loading the people of ${collectionLabel()}…`);
  try {
    const data = await api("/api/people", { collection: collectionParam() });
    if (thisGeneration !== generation) return;
    const people = Array.isArray(data.people) ? data.people : [];
    rememberPersonNames(people);
    els.peopleList.replaceChildren(...people.map((person) => personCard(person, data.collection)));
    setListStatus(
      els.peopleStatus,
      people.length ? "ok" : "empty",
      people.length
        ? `${people.length} ${people.length === 1 ? "person" : "people"} in ${data.collection}, most faces first. ` +
            "Click a name to change it."
        : `No person found in ${data.collection} yet: a person needs 3 photos of their face (with faces on).`,
    );
  } catch (err) {
    if (thisGeneration !== generation) return;
    els.peopleList.replaceChildren();
    setListStatus(els.peopleStatus, "error", errorText(err, "Loading the people"));
  }
}

// ---------------------------------------------------------------- naming in place

function showError(card, text) {
  const error = card.querySelector(".person-error");
  error.textContent = text;
  error.hidden = !text;
}

function startEditing(button) {
  const card = button.closest(".person-card");
  const input = document.createElement("input");
  input.type = "text";
  input.className = "person-name-input";
  input.maxLength = 200;
  input.value = card.dataset.name;
  input.placeholder = "Name";
  input.setAttribute("aria-label", "The person's name (Enter saves, Escape cancels)");
  button.replaceWith(input);
  input.focus();
  input.select();
}

function stopEditing(card, name) {
  const input = card.querySelector(".person-name-input");
  if (input) input.replaceWith(nameButton(name));
  showError(card, "");
  card.querySelector(".person-name").focus();
}

async function saveName(input) {
  const card = input.closest(".person-card");
  if (input.disabled) return; // a save is on its way
  input.disabled = true;
  try {
    const answer = await apiSend("PATCH", `/api/people/${card.dataset.id}`, { collection: collectionParam() },
      { name: input.value.trim() || null });
    card.dataset.name = answer.name || "";
    rememberPersonNames([answer]);
    stopEditing(card, answer.name);
  } catch (err) {
    input.disabled = false;
    input.focus();
    showError(card, errorText(err, "Renaming"));
  }
}

function nameKey(event) {
  const input = event.target.closest(".person-name-input");
  if (!input) return;
  if (event.key === "Enter") {
    event.preventDefault();
    saveName(input);
  } else if (event.key === "Escape") {
    event.preventDefault();
    event.stopPropagation(); // the edit ends, nothing else (the phone's menu stays as it is)
    const card = input.closest(".person-card");
    stopEditing(card, card.dataset.name);
  }
}

export function registerPeopleView() {
  els.peopleList.addEventListener("click", (event) => {
    const name = event.target.closest(".person-name");
    if (name) {
      startEditing(name);
      return;
    }
    const face = event.target.closest(".person-face");
    if (!face || !isPlainClick(event)) return; // a modified click opens the link in a new tab
    event.preventDefault();
    navigate(personQuery(face.closest(".person-card").dataset.id));
    window.scrollTo({ top: 0 });
  });
  els.peopleList.addEventListener("keydown", nameKey);
}
