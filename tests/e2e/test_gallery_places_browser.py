"""Places, keywords and captions, saved searches and Discover in the gallery, in Debian's Chromium against the
real local stack: the Places list (counts, most photos first) and a place filtering the Photos view as a
removable chip; the lightbox's place name, tags and caption; saving a search, opening its live answer from the
sidebar and deleting it; Discover's categories with the API's counts. Screenshots go to
test-artifacts/gallery-places-*.png, desktop and phone.

The photos carry EXIF GPS at known landmarks (named offline: Paris, New York City, Tokyo) and IPTC or XMP
keywords and captions built as tests/unit/test_photo_tags.py builds them.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_gallery_browser import CHROMIUM, DESKTOP, PHONE, browser, open_page, shot
from tests.fixtures.devstack import Stack, get_json, running_stack
from tests.fixtures.model import synthetic_photo
from tests.fixtures.photo_tags import alt, app13, bag, iim, xmp_packet
from tests.fixtures.photos import encode, exif_block

__all__ = ["browser"]  # the Chromium fixture, shared with the main gallery test

EIFFEL, LOUVRE, NOTRE_DAME = (48.858370, 2.294481), (48.860611, 2.337644), (48.852968, 2.349902)
TIMES_SQUARE, LIBERTY = (40.758000, -73.985500), (40.689247, -74.044502)
TOKYO_TOWER = (35.658581, 139.745433)
PARIS = "Paris, Île-de-France, France"
NEW_YORK = "New York City, New York, United States"
TOKYO = "Tokyo, Japan"  # "Tokyo, Tokyo, Japan": a name repeated reads once
EIFFEL_KEY, LIBERTY_KEY = "trip/eiffel.jpg", "trip/liberty.jpg"
PARIS_KEYS = {EIFFEL_KEY, "trip/louvre.jpg", "trip/notre-dame.jpg"}
NEW_YORK_KEYS = {"trip/times-square.jpg", LIBERTY_KEY}


def with_iptc(jpeg: bytes, keywords: list[str], caption: str) -> bytes:
    """The JPEG with an IPTC block (Photoshop APP13) after SOI: Keywords (2:25) and Caption-Abstract (2:120)."""
    datasets = [(2, 25, word.encode()) for word in keywords] + [(2, 120, caption.encode())]
    return jpeg[:2] + app13(iim(datasets)) + jpeg[2:]


def photo(seed: int, gps: tuple[float, float] | None, **options: object) -> bytes:
    return encode(synthetic_photo(520, 390, seed=seed), "JPEG", exif_block(taken=f"2023:07:{10 + seed % 20:02d} "
                  "12:00:00", gps=gps), quality=88, **options)


def make_photos() -> dict[str, bytes]:
    xmp = xmp_packet(bag("dc:subject", ["skyline", "holiday"])
                     + alt("dc:description", {"x-default": "The statue from the ferry"}))
    return {
        EIFFEL_KEY: with_iptc(photo(41, EIFFEL), ["eiffel tower", "holiday"], "Eiffel Tower at noon"),
        "trip/louvre.jpg": photo(42, LOUVRE),
        "trip/notre-dame.jpg": photo(43, NOTRE_DAME),
        "trip/times-square.jpg": photo(44, TIMES_SQUARE),
        LIBERTY_KEY: photo(45, LIBERTY, xmp=xmp),
        "trip/tokyo-tower.jpg": photo(46, TOKYO_TOWER),
        "home/garden.jpg": photo(47, None),
        "home/kitchen.jpg": photo(48, None),
    }


PHOTOS = make_photos()

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (`make test` installs it)")
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_model_dir: Path) -> Iterator[Stack]:
    objects = {key: (body, "image/jpeg") for key, body in PHOTOS.items()}
    with running_stack(tmp_path_factory, str(test_model_dir), "gallery-places", objects=objects) as running:
        yield running


@pytest.fixture()
def page(browser) -> Iterator[Page]:  # noqa: ANN001 - playwright's Browser, from the shared fixture
    yield from open_page(browser, DESKTOP)


def api(stack: Stack, path: str, **params: object) -> Any:
    return get_json(f"{stack.api_url}{path}{'?' + urlencode(params) if params else ''}")


def url_params(page: Page) -> dict[str, str]:
    """The page's URL query, one value per name: what a shared link carries."""
    return {name: values[0] for name, values in parse_qs(urlsplit(page.url).query).items()}


def send(stack: Stack, method: str, path: str, body: dict[str, Any] | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{stack.api_url}{path}", data=data, method=method,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def grid_keys(page: Page) -> set[str]:
    return set(page.locator("#grid .tile").evaluate_all("tiles => tiles.map(t => t.dataset.key)"))


def cards(page: Page, list_id: str) -> list[dict[str, str]]:
    return page.locator(f"#{list_id} .card").evaluate_all(
        "cards => cards.map(c => ({name: c.querySelector('.card-name').textContent, count: c.dataset.count,"
        " text: c.querySelector('.card-count').textContent}))")


def test_places_list_and_a_place_filters_the_photos(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.api_url}/?view=places")
    expect(page.locator("#places-view")).to_be_visible()
    expect(page.locator("#places-status")).to_have_attribute("data-state", "ok")
    expect(page.locator('#sidebar .nav-item[data-view="places"]')).to_have_attribute("aria-current", "page")
    assert cards(page, "places-list") == [
        {"name": PARIS, "count": "3", "text": "3 photos"},
        {"name": NEW_YORK, "count": "2", "text": "2 photos"},
        {"name": TOKYO, "count": "1", "text": "1 photo"},
    ]
    answer = api(stack, "/api/places")["places"]
    assert [(entry["city"], entry["count"]) for entry in answer] == [
        ("Paris", 3), ("New York City", 2), ("Tokyo", 1)]
    shot(page, "places-list")

    page.locator("#places-list .card").first.click()
    expect(page.locator("#photos-view")).to_be_visible()
    expect(page.locator("#grid .tile")).to_have_count(3)
    assert grid_keys(page) == PARIS_KEYS
    assert url_params(page) == {"place": answer[0]["filter"]}
    chip = page.locator("#filter-chips .chip-place")
    expect(chip).to_have_text(f"Place: {answer[0]['filter']}")
    expect(page.locator("#status-text")).to_contain_text(f"at {answer[0]['filter']}")
    page.fill("#search-input", "a photo")  # a search holds the place too
    page.press("#search-input", "Enter")
    expect(page.locator("#status-text")).to_contain_text(f"matches for “a photo” at {answer[0]['filter']}")
    assert grid_keys(page) <= PARIS_KEYS
    page.locator("#filter-chips .chip-place").click()  # the chip removes the filter
    expect(page.locator("#filter-chips .chip-place")).to_have_count(0)
    assert "place=" not in page.url
    page.go_back()
    expect(page.locator("#filter-chips .chip-place")).to_be_visible()
    page.go_back()
    page.go_back()
    expect(page.locator("#places-view")).to_be_visible()  # Back returns to the list


def test_lightbox_shows_the_place_name_tags_and_caption(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.api_url}/?place=Paris")
    expect(page.locator("#grid .tile")).to_have_count(3)
    page.locator(f'#grid .tile[data-key="{EIFFEL_KEY}"]').click()
    details = page.locator("#lb-details")
    expect(details.locator(".lb-place-name")).to_have_text(PARIS)
    expect(details.locator("a.lb-place")).to_have_text("48.85837, 2.29448")
    expect(details.locator(".chip-tag")).to_have_text(["eiffel tower", "holiday"])
    expect(details).to_contain_text("Eiffel Tower at noon")
    page.wait_for_function("() => document.querySelector('#lb-image').naturalWidth > 0")
    shot(page, "places-lightbox")
    details.locator(".chip-tag", has_text="holiday").click()  # a tag searches its words
    expect(page.locator("#lightbox")).to_be_hidden()
    expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    assert {EIFFEL_KEY, LIBERTY_KEY} <= grid_keys(page)  # IPTC and XMP keywords alike
    assert "q=%22holiday%22" in page.url
    page.locator(f'#grid .tile[data-key="{LIBERTY_KEY}"]').click()
    expect(details.locator(".lb-place-name")).to_have_text(NEW_YORK)
    expect(details.locator(".chip-tag")).to_have_text(["skyline", "holiday"])
    expect(details).to_contain_text("The statue from the ferry")
    details.locator(".lb-place-name").click()  # the place lists its photos
    expect(page.locator("#grid .tile")).to_have_count(2)
    assert grid_keys(page) == NEW_YORK_KEYS


def saved_entries(stack: Stack) -> list[dict[str, Any]]:
    return list(api(stack, "/api/saved-searches")["saved_searches"])


def save_search(page: Page, name: str) -> None:
    if page.locator("#filters-panel").is_hidden():
        page.click("#filters-button")
    page.click("#save-search-button")
    page.fill("#save-search-name", name)
    page.press("#save-search-name", "Enter")


def test_saving_opening_and_deleting_a_saved_search(stack: Stack, page: Page) -> None:
    page.goto(stack.api_url)
    expect(page.locator("#saved-status")).to_contain_text("None yet")
    page.click("#filters-button")
    expect(page.locator("#save-search-button")).to_be_disabled()  # no words: nothing to save
    page.keyboard.press("Escape")
    page.goto(f"{stack.api_url}/?q=tower&place=Paris&mode=keyword")
    expect(page.locator("#grid .tile")).to_have_count(1)
    save_search(page, "Paris towers")
    expect(page.locator("#save-search-message")).to_contain_text("Saved “Paris towers”")
    item = page.locator("#saved-list .saved-item")
    expect(item).to_have_count(1)
    [entry] = saved_entries(stack)
    assert entry["name"] == "Paris towers" and entry["count"] == 1
    assert entry["query"] == {"q": "tower", "mode": "keyword", "place": "Paris"}  # no limit, no cursor
    expect(item.locator(".saved-name")).to_have_text("Paris towers")
    expect(item.locator(".saved-count")).to_have_text("1")
    shot(page, "places-save-search")

    save_search(page, "nul\x00name")  # an error shows the API's own message
    expect(page.locator("#save-search-message")).to_contain_text("Saving failed: ")
    expect(page.locator("#save-search-message")).to_contain_text("NUL")
    assert len(saved_entries(stack)) == 1
    page.keyboard.press("Escape")

    page.goto(stack.api_url)
    expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    item.click()
    expect(page.locator("#status-text")).to_contain_text("the saved search “Paris towers”")
    assert f"saved={entry['id']}" in page.url
    live = api(stack, f"/api/saved-searches/{entry['id']}")
    expect(page.locator("#grid .tile")).to_have_count(len(live["items"]))  # the answer drawn, not only announced
    assert grid_keys(page) == {result["key"] for result in live["items"]} == {EIFFEL_KEY}
    expect(item).to_have_attribute("aria-current", "page")
    expect(page.locator("#search-input")).to_have_value("tower")  # its words in the box, to go on from
    page.wait_for_function("() => [...document.querySelectorAll('#grid .tile img')].every(i => i.naturalWidth > 0)")
    shot(page, "places-saved-searches")

    page.locator("#saved-list .saved-delete").click()
    expect(page.locator("#saved-list .saved-item")).to_have_count(0)
    expect(page.locator("#saved-status")).to_contain_text("None yet")
    assert saved_entries(stack) == []
    assert "saved=" not in page.url  # the search it showed stays, as an ordinary one
    expect(page.locator("#grid .tile")).to_have_count(1)


def test_discover_lists_the_categories_with_the_apis_counts(stack: Stack, page: Page) -> None:
    page.goto(stack.api_url)
    page.click('#sidebar .nav-item[data-view="discover"]')
    expect(page.locator("#discover-view")).to_be_visible()
    expect(page.locator("#discover-status")).not_to_have_attribute("data-state", "loading")
    categories = api(stack, "/api/discover")["categories"]
    assert len(categories) >= 12
    with_photos = [category for category in categories if category["count"] > 0]
    shown = cards(page, "discover-list")
    assert [(card["name"], int(card["count"])) for card in shown] == [
        (category["name"], category["count"]) for category in with_photos]
    assert len(shown) >= 12, f"the test model's counts left fewer than 12 categories: {categories}"
    shot(page, "places-discover")
    first = with_photos[0]
    page.locator("#discover-list .card").first.click()
    expect(page.locator("#photos-view")).to_be_visible()
    expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    assert url_params(page) == {"q": first["query"], "mode": "semantic"}  # cutoff=auto is the default
    expect(page.locator('input[name="mode"][value="semantic"]')).to_be_checked()
    page.go_back()
    expect(page.locator("#discover-view")).to_be_visible()


def test_on_a_phone(stack: Stack, browser) -> None:  # noqa: ANN001 - playwright's Browser
    for phone in open_page(browser, PHONE):
        phone.goto(f"{stack.api_url}/?view=places")
        expect(phone.locator("#places-list .card")).to_have_count(3)
        shot(phone, "places-phone-list")
        phone.goto(f"{stack.api_url}/?view=discover")
        expect(phone.locator("#discover-status")).to_have_attribute("data-state", "ok")
        shot(phone, "places-phone-discover")
        assert send(stack, "POST", "/api/saved-searches", {"name": "Holidays", "query": {"q": '"holiday"'}}) == 201
        phone.reload()
        phone.click("#menu-button")
        phone.wait_for_function("() => getComputedStyle(document.querySelector('#sidebar')).transform === 'none'")
        expect(phone.locator("#saved-list .saved-item")).to_have_text(["Holidays2"])  # name and count
        shot(phone, "places-phone-menu")
        phone.locator("#saved-list .saved-item").click()  # the menu closes on the answer
        expect(phone.locator("#sidebar")).to_be_hidden()
        expect(phone.locator("#status-text")).to_contain_text("the saved search “Holidays”")
        expect(phone.locator("#grid .tile")).to_have_count(2)
        shot(phone, "places-phone-saved-search")
        [entry] = saved_entries(stack)
        assert send(stack, "DELETE", f"/api/saved-searches/{entry['id']}") == 204
