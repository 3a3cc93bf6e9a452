"""Photo metadata and duplicates in the gallery, in Debian's Chromium against the real local stack:
the lightbox's date, camera and place (with its OpenStreetMap link), the date-range filter, the
Duplicates view (groups side by side, the keeper marked, level and threshold, the delete command) and
"one per near-duplicate" in search. Screenshots go to test-artifacts/gallery-photos-*.png.

The stack runs with near and similar thresholds fitted to the random-weight test model
(tests/fixtures/photos.py), so groups are those a real CLIP model would form.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.test_gallery_browser import CHROMIUM, DESKTOP, PHONE, browser, open_page, shot, wait_thumbnails
from tests.fixtures.devstack import Stack, running_stack
from tests.fixtures.model import synthetic_photo
from tests.fixtures.photos import (
    A_GROUP,
    BURST_GROUP,
    TEST_MODEL_NEAR,
    TEST_MODEL_SIMILAR,
    duplicate_photos,
    encode,
    exif_block,
)

__all__ = ["browser"]  # the Chromium fixture, shared with the main gallery test

PARIS = "trip/paris.jpg"
PHOTOS = {
    **duplicate_photos(),
    PARIS: encode(synthetic_photo(480, 360, seed=30), "JPEG", exif_block(
        taken="2023:07:14 15:30:00", offset="+02:00", make="Apple", model="iPhone 12",
        gps=(48.858370, 2.294481))),
}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (`make test` installs it)")
expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_model_dir: Path) -> Iterator[Stack]:
    settings = {"IB_DUPLICATES_NEAR_DISTANCE": str(TEST_MODEL_NEAR),
                "IB_DUPLICATES_SIMILAR_DISTANCE": str(TEST_MODEL_SIMILAR)}
    objects = {key: (body, None) for key, body in PHOTOS.items()}
    with running_stack(tmp_path_factory, str(test_model_dir), "gallery-photos", settings=settings,
                       objects=objects) as running:
        yield running


@pytest.fixture()
def page(browser) -> Iterator[Page]:  # noqa: ANN001 - playwright's Browser, from the shared fixture
    yield from open_page(browser, DESKTOP)


def settled(page: Page) -> None:
    """Every tile's thumbnail has loaded and faded in, for the screenshot."""
    wait_thumbnails(page)
    page.wait_for_function("() => [...document.querySelectorAll('#grid .tile img')]"
                           ".every(i => getComputedStyle(i).opacity === '1')")


def grid_keys(page: Page) -> set[str]:
    return set(page.locator("#grid .tile").evaluate_all("tiles => tiles.map(t => t.dataset.key)"))


def test_lightbox_shows_when_where_and_with_what(stack: Stack, page: Page) -> None:
    page.goto(stack.api_url)
    expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    page.locator(f'#grid .tile[data-key="{PARIS}"]').click()
    details = page.locator("#lb-details")
    expect(details).to_contain_text("Taken")
    # The camera's own clock and offset, whatever this browser's time zone.
    assert re.search(r"Jul 14, 2023, 3:30:00\s?PM \(UTC\+02:00\)", details.inner_text()), details.inner_text()
    expect(details).to_contain_text("Apple iPhone 12")
    place = details.locator("a.lb-place")
    expect(place).to_have_text("48.85837, 2.29448")
    assert place.get_attribute("href") == (
        "https://www.openstreetmap.org/?mlat=48.85837&mlon=2.29448#map=16/48.85837/2.29448")
    assert place.get_attribute("target") == "_blank"
    page.wait_for_function("() => document.querySelector('#lb-image').naturalWidth > 0")
    shot(page, "photos-lightbox")
    page.keyboard.press("Escape")
    page.locator('#grid .tile[data-key="b.jpg"]').click()  # no EXIF: no such rows
    expect(page.locator("#lb-key")).to_have_text("b.jpg")
    assert "Taken" not in details.inner_text() and "Place" not in details.inner_text()


def test_date_range_filter(stack: Stack, page: Page) -> None:
    page.goto(stack.api_url)
    expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    assert grid_keys(page) == set(PHOTOS)
    page.click("#filters-button")  # the dates are in the Filters panel
    page.fill("#taken-after", "2022-01-01")
    page.locator("#taken-after").dispatch_event("change")
    expect(page.locator("#status-text")).to_contain_text("taken from 2022-01-01")
    expect(page.locator("#filters-count")).to_have_text("1")  # the range counts as one filter
    expect(page.locator("#grid .tile")).to_have_count(len(BURST_GROUP) + 1)
    assert grid_keys(page) == BURST_GROUP | {PARIS}
    page.fill("#taken-before", "2022-12-31")
    page.locator("#taken-before").dispatch_event("change")
    expect(page.locator("#status-text")).to_contain_text("taken 2022-01-01 to 2022-12-31")
    expect(page.locator("#grid .tile")).to_have_count(len(BURST_GROUP))
    assert grid_keys(page) == BURST_GROUP
    assert "taken_after=2022-01-01" in page.url and "taken_before=2022-12-31" in page.url  # shareable
    settled(page)
    shot(page, "photos-date-filter")
    page.fill("#search-input", "a photo")  # the range holds for searches too
    page.press("#search-input", "Enter")
    expect(page.locator("#status-text")).to_contain_text("matches for “a photo” taken 2022-01-01 to 2022-12-31")
    assert grid_keys(page) == BURST_GROUP
    page.click("#clear-dates")
    expect(page.locator("#grid .tile")).to_have_count(len(PHOTOS))
    page.go_back()  # the dates come back with the history entry
    expect(page.locator("#taken-before")).to_have_value("2022-12-31")
    expect(page.locator("#grid .tile")).to_have_count(len(BURST_GROUP))


def test_duplicates_view(stack: Stack, page: Page) -> None:
    page.goto(stack.api_url)
    expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    page.click('#sidebar .nav-item[data-view="duplicates"]')
    expect(page.locator("#duplicates")).to_be_visible()
    expect(page.locator("#grid")).to_be_hidden()
    expect(page.locator("#dup-status")).to_contain_text("2 groups of near-duplicates (cosine distance ≤ 0.001)")
    groups = page.locator(".dup-group")
    expect(groups).to_have_count(2)
    first = groups.nth(0)
    assert set(first.locator(".dup-item").evaluate_all("items => items.map(i => i.dataset.key)")) == A_GROUP
    expect(first.locator(".dup-item.dup-keep")).to_have_attribute("data-key", "a.png")  # most pixels, earliest
    expect(first.locator(".dup-keep-badge")).to_have_text("Keep")
    command = first.locator(".dup-command").inner_text()
    assert "'s3://photos/a.png'" not in command  # the keeper stays
    assert sorted(command.splitlines()) == sorted(f"aws s3 rm 's3://photos/{key}'" for key in A_GROUP - {"a.png"})
    assert page.locator("#duplicates button", has_text="Delete").count() == 0  # deleting is the S3 tool's job
    page.wait_for_function("() => [...document.querySelectorAll('.dup-item img')].every(i => i.naturalWidth > 0)")
    shot(page, "photos-duplicates", full_page=True)

    page.select_option("#dup-level", "exact")
    expect(page.locator("#dup-status")).to_contain_text("1 group of exact copies")
    expect(page.locator("#dup-threshold")).to_be_disabled()
    expect(page.locator(".dup-group .dup-keep")).to_have_attribute("data-key", "a.jpg")
    page.select_option("#dup-level", "similar")
    expect(page.locator("#dup-status")).to_contain_text("(cosine distance ≤ 0.006)")
    first_keys = page.locator(".dup-group").nth(0).locator(".dup-item")
    expect(first_keys).to_have_count(len(A_GROUP) + 1)  # the crop joins at the similar level
    page.locator("#dup-threshold").fill("0.001")  # the slider: a threshold of one's own
    expect(page.locator("#dup-status")).to_contain_text("(cosine distance ≤ 0.001)")
    expect(page.locator(".dup-group").nth(0).locator(".dup-item")).to_have_count(len(A_GROUP))
    assert "threshold=0.001" in page.url and "level=similar" in page.url
    page.click('#sidebar .nav-item[data-view="photos"]')
    expect(page.locator("#grid .tile")).to_have_count(len(PHOTOS))
    page.go_back()
    expect(page.locator("#duplicates")).to_be_visible()


def test_one_image_per_near_duplicate_group_in_search(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.api_url}/?q=a+photo")
    expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    expect(page.locator("#grid .tile")).to_have_count(len(PHOTOS))
    page.click("#filters-button")
    page.check("#collapse-near")
    expect(page.locator("#grid .tile")).to_have_count(len(PHOTOS) - 3 - 2)
    keys = grid_keys(page)
    assert len(keys & A_GROUP) == 1 and len(keys & BURST_GROUP) == 1
    badges = page.locator("#grid .tile .collapsed").all_inner_texts()
    assert sorted(badges) == ["+2", "+3"]
    assert "collapse=near" in page.url
    page.keyboard.press("Escape")  # the panel closes: the grid in the screenshot
    settled(page)
    shot(page, "photos-collapsed")


def nav_item(page: Page, view: str) -> Locator:
    return page.locator(f'#sidebar .nav-item[data-view="{view}"]')


def test_the_sidebar_moves_between_views_and_the_url_records_them(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.api_url}/?q=a+photo")
    expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    expect(page.locator("#sidebar .nav-item")).to_have_text(["Photos", "Places", "People", "Discover", "Duplicates"])
    expect(nav_item(page, "photos")).to_have_attribute("aria-current", "page")
    expect(page.locator("#menu-button")).to_be_hidden()  # a wide screen shows the sidebar itself
    # Each entry is a real link to its view with the current query: it opens in a new tab and can be shared.
    assert nav_item(page, "duplicates").get_attribute("href") == "/?q=a+photo&view=duplicates&level=near"
    settled(page)
    shot(page, "photos-sidebar")
    nav_item(page, "duplicates").click()
    expect(page.locator("#duplicates")).to_be_visible()
    expect(page.locator("#photos-view")).to_be_hidden()
    expect(nav_item(page, "duplicates")).to_have_attribute("aria-current", "page")
    expect(nav_item(page, "photos")).not_to_have_attribute("aria-current", "page")
    assert "view=duplicates" in page.url and "q=a+photo" in page.url
    expect(page.locator(".dup-group")).to_have_count(2)
    nav_item(page, "photos").click()
    expect(page.locator("#grid .tile")).to_have_count(len(PHOTOS))
    assert "view=" not in page.url and "q=a+photo" in page.url  # Photos is the default: no view in the URL
    page.go_back()
    expect(page.locator("#duplicates")).to_be_visible()
    expect(nav_item(page, "duplicates")).to_have_attribute("aria-current", "page")
    page.go_forward()
    expect(page.locator("#photos-view")).to_be_visible()
    expect(nav_item(page, "photos")).to_have_attribute("aria-current", "page")
    page.goto(f"{stack.api_url}/?view=duplicates&level=exact")  # a shared link opens its view
    expect(page.locator("#dup-status")).to_contain_text("1 group of exact copies")
    expect(nav_item(page, "duplicates")).to_have_attribute("aria-current", "page")


def test_on_a_phone_the_sidebar_is_a_menu_and_the_search_bar_one_row(stack: Stack, browser) -> None:  # noqa: ANN001
    for phone in open_page(browser, PHONE):
        phone.goto(stack.api_url)
        expect(phone.locator("#status")).to_have_attribute("data-state", "ok")
        expect(phone.locator("#sidebar")).to_be_hidden()
        row = phone.locator("#search-form > :visible:not(.visually-hidden)").evaluate_all(
            "parts => parts.map(p => Math.round(p.getBoundingClientRect().top + p.offsetHeight / 2))")
        assert len(row) >= 4 and len(set(row)) == 1, row  # box, Search, By image, Filters: side by side
        settled(phone)
        shot(phone, "photos-phone")
        phone.click("#filters-button")
        expect(phone.locator("#filters-panel")).to_be_visible()
        panel = phone.locator("#filters-panel").bounding_box()
        assert panel and panel["x"] >= 0 and panel["x"] + panel["width"] <= PHONE["width"]  # fits the screen
        shot(phone, "photos-phone-filters")
        phone.keyboard.press("Escape")
        expect(phone.locator("#filters-panel")).to_be_hidden()
        phone.click("#menu-button")
        expect(phone.locator("#sidebar")).to_be_visible()
        expect(phone.locator("#menu-button")).to_have_attribute("aria-expanded", "true")
        phone.wait_for_function("() => getComputedStyle(document.querySelector('#sidebar')).transform === 'none'")
        shot(phone, "photos-phone-menu")
        nav_item(phone, "duplicates").click()
        expect(phone.locator("#sidebar")).to_be_hidden()  # choosing a view closes the menu
        expect(phone.locator("#duplicates")).to_be_visible()
        assert "view=duplicates" in phone.url
