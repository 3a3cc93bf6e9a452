"""People in the gallery, in Debian's Chromium against the real local stack (make dev's faces worker on its own
queue, dlib's real models): the People view lists the people /api/people lists (cropped faces, names, face
counts), a name is edited in place (Enter saves through PATCH, Escape cancels, the API's error shows), a face
opens the person's photos behind a removable chip, person:"Name" terms show as chips, and the lightbox draws
the faces' boxes with their names over the photo. Screenshots go to test-artifacts/gallery-people-*.png.

The photos are the public-domain portraits of tests/fixtures/faces/ and copies of them (mirrored, rescaled),
as tests/e2e/test_people_devstack.py uploads them: three faces make a person.
"""

from __future__ import annotations

import io
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from PIL import Image, ImageOps
from playwright.sync_api import Page, expect

from tests.e2e.test_gallery_browser import CHROMIUM, DESKTOP, browser, open_page, shot
from tests.e2e.test_gallery_places_browser import grid_keys, url_params
from tests.fixtures.devstack import Stack, get_json, running_stack
from tests.fixtures.portraits import photo, rescaled

__all__ = ["browser"]  # the Chromium fixture, shared with the main gallery test

GRACE, EILEEN = "Grace Hopper", "Eileen Collins"
GRACE_TERM = f'person:"{GRACE}"'
GROUP_KEY = "people/together.jpg"
FACES_BY_KEY = {"people/grace-1.jpg": 1, "people/grace-2.jpg": 1, "people/grace-3.jpg": 1,
                "people/eileen-1.jpg": 1, "people/eileen-2.jpg": 1, "people/eileen-3.jpg": 1,
                GROUP_KEY: 2, "pets/cat.jpg": 0}


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def together() -> Image.Image:
    """Both portraits side by side in one photo: two faces (as tests/integration/test_people_api.py builds it)."""
    left, right = rescaled(photo("eileen_collins"), 600), rescaled(photo("grace_hopper"), 600)
    both = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), (90, 90, 90))
    both.paste(left, (0, 0))
    both.paste(right, (left.width, 0))
    return both


def make_photos() -> dict[str, tuple[bytes, str]]:
    photos: dict[str, Image.Image] = {}
    for short, name in (("grace", "grace_hopper"), ("eileen", "eileen_collins")):
        portrait = photo(name)
        photos.update({f"people/{short}-1.jpg": portrait, f"people/{short}-2.jpg": ImageOps.mirror(portrait),
                       f"people/{short}-3.jpg": rescaled(portrait, 1024)})
    photos[GROUP_KEY] = together()
    photos["pets/cat.jpg"] = photo("chelsea_cat")
    return {key: (jpeg(image), "image/jpeg") for key, image in photos.items()}


pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (`make test` installs it)")
expect.set_options(timeout=30_000)


def api(stack: Stack, path: str, **params: object) -> Any:
    return get_json(f"{stack.api_url}{path}{'?' + urlencode(params) if params else ''}")


def wait_for_people(stack: Stack, timeout: float = 240.0) -> None:
    """The faces stage runs on its own queue after embedding: wait until every photo's faces belong to people."""
    deadline = time.monotonic() + timeout
    while True:
        if api(stack, "/api/people")["people"]:
            items = api(stack, "/api/recent", limit=50)["items"]
            found = {item["key"]: len(item.get("people") or []) for item in items}
            if found == FACES_BY_KEY:
                return
        assert time.monotonic() < deadline, f"the faces were not grouped after {timeout} s:\n{stack.output()[-4000:]}"
        time.sleep(1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_model_dir: Path) -> Iterator[Stack]:
    with running_stack(tmp_path_factory, str(test_model_dir), "gallery-people",
                       settings={"IB_FACES": "true"},
                       objects=make_photos()) as running:
        wait_for_people(running)
        yield running


@pytest.fixture()
def page(browser) -> Iterator[Page]:  # noqa: ANN001 - playwright's Browser, from the shared fixture
    yield from open_page(browser, DESKTOP)


def rename(stack: Stack, person_id: int, name: str | None) -> dict[str, Any]:
    request = urllib.request.Request(f"{stack.api_url}/api/people/{person_id}", method="PATCH",
                                     data=json.dumps({"name": name}).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def person_of(stack: Stack, key_prefix: str) -> dict[str, Any]:
    """The person whose photos are the portraits named `key_prefix` (people/grace, people/eileen)."""
    for person in api(stack, "/api/people")["people"]:
        keys = {item["key"] for item in api(stack, f"/api/people/{person['id']}", limit=50)["items"]}
        if any(key.startswith(key_prefix) for key in keys - {GROUP_KEY}):
            return dict(person)
    raise AssertionError(f"no person has the photos {key_prefix}*")


def shown_people(page: Page) -> list[tuple[str, str, str]]:
    return [tuple(row) for row in page.locator("#people-list .person-card").evaluate_all(
        "cards => cards.map(c => [c.dataset.id, c.querySelector('.person-name').textContent,"
        " c.querySelector('.card-count').textContent])")]


def test_people_view_lists_the_apis_people_and_names_them_in_place(stack: Stack, page: Page) -> None:
    grace = person_of(stack, "people/grace")
    rename(stack, grace["id"], None)  # unnamed to start with, whatever ran before
    rename(stack, person_of(stack, "people/eileen")["id"], EILEEN)
    page.goto(f"{stack.api_url}/?view=people")
    expect(page.locator("#people-view")).to_be_visible()
    expect(page.locator("#people-status")).to_have_attribute("data-state", "ok")
    expect(page.locator('#sidebar .nav-item[data-view="people"]')).to_have_attribute("aria-current", "page")
    listed = api(stack, "/api/people")["people"]
    assert len(listed) == 2
    assert shown_people(page) == [(str(person["id"]), person["name"] or "Add a name", f"{person['faces']} faces")
                                  for person in listed]
    # Every face is cropped: the picture is larger than its square frame, moved to the face.
    page.wait_for_function("() => [...document.querySelectorAll('#people-list .face-crop img')]"
                           ".every(i => i.naturalWidth > 0 && i.offsetWidth > i.parentElement.offsetWidth)")
    shot(page, "people-list")

    card = page.locator(f'#people-list .person-card[data-id="{grace["id"]}"]')
    card.locator(".person-name").click()
    name_input = card.locator(".person-name-input")
    expect(name_input).to_be_focused()
    name_input.fill("Nobody")
    name_input.press("Escape")  # cancels: nothing sent
    expect(card.locator(".person-name")).to_have_text("Add a name")
    assert person_of(stack, "people/grace")["name"] is None

    card.locator(".person-name").click()
    name_input.fill('Grace "Amazing" Hopper')
    name_input.press("Enter")  # the API refuses a double quote: its message shows, the input stays
    expect(card.locator(".person-error")).to_contain_text("Renaming failed: field 'name' has a double quote")
    expect(name_input).to_be_visible()
    shot(page, "people-rename-error")
    name_input.fill(GRACE)
    name_input.press("Enter")
    expect(card.locator(".person-name")).to_have_text(GRACE)
    expect(card.locator(".person-error")).to_be_hidden()
    assert person_of(stack, "people/grace")["name"] == GRACE
    page.reload()  # the name is the API's, not only the page's
    expect(card.locator(".person-name")).to_have_text(GRACE)


def test_a_face_opens_the_persons_photos_behind_a_removable_chip(stack: Stack, page: Page) -> None:
    grace = person_of(stack, "people/grace")
    rename(stack, grace["id"], GRACE)
    page.goto(f"{stack.api_url}/?view=people")
    page.locator(f'#people-list .person-card[data-id="{grace["id"]}"] .person-face').click()
    expect(page.locator("#photos-view")).to_be_visible()
    expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    assert url_params(page) == {"person": str(grace["id"])}
    photos = {item["key"] for item in api(stack, f"/api/people/{grace['id']}", limit=50)["items"]}
    expect(page.locator("#grid .tile")).to_have_count(len(photos))
    assert grid_keys(page) == photos == {"people/grace-1.jpg", "people/grace-2.jpg", "people/grace-3.jpg",
                                         GROUP_KEY}
    chip = page.locator("#filter-chips .chip-person-filter")
    expect(chip).to_have_text(f"Person: {GRACE}")
    expect(page.locator("#status-text")).to_contain_text(f"with {GRACE}")
    shot(page, "people-photos")
    chip.click()  # the chip removes the filter: every photo again
    expect(chip).to_have_count(0)
    assert "person=" not in page.url
    expect(page.locator("#grid .tile")).to_have_count(len(FACES_BY_KEY))


def test_person_terms_of_a_search_show_as_chips(stack: Stack, page: Page) -> None:
    grace = person_of(stack, "people/grace")
    rename(stack, grace["id"], GRACE)
    page.goto(f"{stack.api_url}/?{urlencode({'q': GRACE_TERM})}")
    expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    answer = api(stack, "/api/search", q=GRACE_TERM)
    assert [term["kind"] for term in answer["query"]["terms"]] == ["person"]
    chip = page.locator("#query-terms .chip")
    expect(chip).to_have_text([f"Person: {GRACE}"])
    expect(chip).to_have_class("chip chip-person")
    expect(page.locator("#grid .tile")).to_have_count(len(answer["items"]))
    assert grid_keys(page) == {item["key"] for item in answer["items"]}
    chip.click()  # removing the only term lists the newest photos
    expect(page.locator("#query-terms .chip")).to_have_count(0)
    expect(page.locator("#grid .tile")).to_have_count(len(FACES_BY_KEY))


def test_the_lightbox_draws_the_faces_with_their_names(stack: Stack, page: Page) -> None:
    grace, eileen = person_of(stack, "people/grace"), person_of(stack, "people/eileen")
    rename(stack, grace["id"], GRACE)
    rename(stack, eileen["id"], EILEEN)
    [item] = [item for item in api(stack, "/api/recent", limit=50)["items"] if item["key"] == GROUP_KEY]
    page.goto(stack.api_url)
    expect(page.locator("#grid .tile")).to_have_count(len(FACES_BY_KEY))
    page.locator(f'#grid .tile[data-key="{GROUP_KEY}"]').click()
    boxes = page.locator("#lb-faces .face-box")
    expect(boxes).to_have_count(2)
    expect(boxes.locator(".face-name")).to_have_text([person["name"] for person in item["people"]])
    assert sorted(person["name"] for person in item["people"]) == [EILEEN, GRACE]
    page.wait_for_function("() => { const image = document.querySelector('#lb-image');"
                           " return image.complete && image.naturalWidth > 0; }")
    page.wait_for_function("() => document.querySelector('#lb-loading').hidden")  # the original is shown
    image = page.locator("#lb-image").bounding_box()
    assert image is not None
    for index, person in enumerate(item["people"]):  # each box sits where the API's fractions say, as displayed
        shown = boxes.nth(index).bounding_box()
        assert shown is not None
        left, top, right, bottom = person["box"]
        assert abs(shown["x"] - (image["x"] + left * image["width"])) < 3
        assert abs(shown["y"] - (image["y"] + top * image["height"])) < 3
        assert abs(shown["width"] - (right - left) * image["width"]) < 3
        assert abs(shown["height"] - (bottom - top) * image["height"]) < 3
    shot(page, "people-lightbox")
    boxes.filter(has_text=GRACE).click()  # a named face opens the person's photos
    expect(page.locator("#lightbox")).to_be_hidden()
    expect(page.locator("#filter-chips .chip-person-filter")).to_have_text(f"Person: {GRACE}")
    assert url_params(page) == {"person": str(grace["id"])}
