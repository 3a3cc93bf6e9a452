"""The gallery's search controls in a real browser (Debian's Chromium through Playwright): the parsed terms
as chips, the mode switch, the sort selector, "N more below the cutoff", why each result matched, and
words typed beside a dropped image. Screenshots go to test-artifacts/.

The API runs in-process (uvicorn) with an embedder of chosen vectors (a picture's vector is its colour),
over solid-colour photos in the session's moto S3, so what each control must show is known.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from shared.api import create_app
from shared.config import load_settings
from shared.dev.local_services import MotoServer, aws_client, free_port
from shared.events import ObjectEvent
from shared.store.catalog import Catalog
from tests.e2e import test_gallery_browser as chromium
from tests.fixtures.chosen import ChosenEmbedder
from tests.fixtures.devstack import ARTIFACTS
from tests.fixtures.services import unique_name

pytestmark = chromium.pytestmark  # Debian's Chromium, installed by `make test`
browser, page = chromium.browser, chromium.page  # its fixtures: one browser per module, a desktop page per test

# key -> colour; the dates follow this order (one day apart).
PHOTOS = {
    "red/one.jpg": (230, 20, 20),
    "red/two.jpg": (220, 90, 30),
    "red/three.jpg": (200, 40, 120),
    "green/leaf.jpg": (30, 200, 40),
    "blue/sky.jpg": (40, 90, 230),
    "photos/2023/IMG_2041.jpg": (90, 90, 200),
    "photos/2023/IMG_2042.jpg": (100, 100, 100),
    "Urlaub/Große Mauer.jpg": (120, 160, 90),
    "mixed/dusk.jpg": (140, 60, 140),
}
START = datetime(2023, 1, 1, tzinfo=UTC)


def jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (120, 90), colour).save(out, "JPEG", quality=92)
    return out.getvalue()


@dataclass
class Gallery:
    base: str

    def api(self, path: str, **params: object) -> dict:
        return httpx.get(f"{self.base}{path}", params=params, timeout=10).json()


@pytest.fixture(scope="module")
def gallery(pg_url: str, moto_server: MotoServer) -> Iterator[Gallery]:
    import uvicorn

    bucket = unique_name("gallery-search")
    settings = load_settings(database_url=pg_url, bucket=bucket, s3_endpoint_url=moto_server.endpoint,
                             s3_access_key_id="test", s3_secret_access_key="test")
    s3 = aws_client("s3", moto_server.endpoint)
    s3.create_bucket(Bucket=bucket)
    catalog = Catalog.from_url(pg_url)
    embedder = ChosenEmbedder()
    coll = catalog.ensure_collection(bucket, embedder.model_id, embedder.dim)
    for day, (key, colour) in enumerate(PHOTOS.items()):
        s3.put_object(Bucket=bucket, Key=key, Body=jpeg(colour), ContentType="image/jpeg")
        catalog.record_event(coll, ObjectEvent(bucket, key, "created", etag=f"e{day}", size=1000))
        vector = embedder.embed_images([Image.new("RGB", (4, 4), colour)])[0]
        catalog.store_embedding(coll, key, f"e{day}", vector, model_id=embedder.model_id, width=120, height=90,
                                content_type="image/jpeg", last_modified=START + timedelta(days=day))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, catalog=catalog, models=embedder), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield Gallery(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        catalog.db.close()


def shot(page: Page, name: str) -> None:
    chromium.wait_images(page)  # the pictures, not their placeholders
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"gallery-search-{name}.png"))


def tile_keys(page: Page) -> list[str]:
    return page.locator("#grid .tile").evaluate_all("tiles => tiles.map(t => t.dataset.key)")


def url_params(page: Page) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(page.url).query).items()}


def show(page: Page, gallery: Gallery, query: str, count: int) -> None:
    page.goto(f"{gallery.base}/?{query}")
    expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    expect(page.locator("#grid .tile")).to_have_count(count)


def test_chips_show_the_parsed_terms_and_a_click_removes_one(gallery: Gallery, page: Page) -> None:
    q = 'red + "two" - green'
    answer = gallery.api("/api/search", q=q)
    show(page, gallery, urlencode({"q": q}), len(answer["items"]))
    chips = page.locator("#query-terms .chip")
    expect(chips).to_have_text(["red", "“two”", "− green"])
    expect(page.locator("#query-terms .chip-minus")).to_have_count(1)
    assert tile_keys(page) == [item["key"] for item in answer["items"]] == ["red/two.jpg"]
    shot(page, "chips")
    chips.nth(1).click()  # drop the quoted term: every red picture again
    expect(chips).to_have_text(["red", "− green"])
    assert url_params(page)["q"] == "red - green"
    expect(page.locator("#grid .tile")).to_have_count(len(gallery.api("/api/search", q="red - green")["items"]))


def test_the_mode_switch_and_the_sort_selector(gallery: Gallery, page: Page) -> None:
    show(page, gallery, "q=IMG_2041", len(gallery.api("/api/search", q="IMG_2041")["items"]))
    assert tile_keys(page)[0] == "photos/2023/IMG_2041.jpg"  # its name, first
    page.click("#filters-button")  # the mode and the sort are in the Filters panel
    page.get_by_text("Words", exact=True).click()
    expect(page.locator("#grid .tile")).to_have_count(1)
    assert url_params(page)["mode"] == "keyword" and tile_keys(page) == ["photos/2023/IMG_2041.jpg"]
    page.get_by_text("Pictures", exact=True).click()
    pictures = gallery.api("/api/search", q="IMG_2041", mode="semantic")
    expect(page.locator("#grid .tile")).to_have_count(len(pictures["items"]))
    assert url_params(page)["mode"] == "semantic" and "photos/2023/IMG_2041.jpg" not in tile_keys(page)
    page.get_by_text("Hybrid", exact=True).click()
    show(page, gallery, "q=red&mode=semantic", len(gallery.api("/api/search", q="red", mode="semantic")["items"]))
    page.click("#filters-button")
    page.select_option("#sort-select", "oldest")
    oldest = [item["key"] for item in gallery.api("/api/search", q="red", mode="semantic", sort="oldest")["items"]]
    expect(page.locator("#grid .tile").first).to_have_attribute("data-key", oldest[0])
    assert url_params(page)["sort"] == "oldest" and tile_keys(page) == oldest
    assert oldest == sorted(oldest, key=list(PHOTOS).index)
    shot(page, "mode-and-sort")
    page.go_back()
    expect(page.locator("#sort-select")).to_have_value("relevance")


def test_the_filters_button_opens_the_panel_and_counts_the_active_filters(gallery: Gallery, page: Page) -> None:
    show(page, gallery, "q=red", len(gallery.api("/api/search", q="red")["items"]))
    button, panel = page.locator("#filters-button"), page.locator("#filters-panel")
    count = page.locator("#filters-count")
    expect(panel).to_be_hidden()
    expect(count).to_be_hidden()  # nothing active: no number
    expect(button).to_have_attribute("aria-expanded", "false")
    button.click()
    expect(panel).to_be_visible()
    expect(button).to_have_attribute("aria-expanded", "true")
    page.select_option("#sort-select", "oldest")
    expect(count).to_have_text("1")
    page.check("#collapse-near")
    expect(count).to_have_text("2")
    page.get_by_text("Pictures", exact=True).click()
    expect(count).to_have_text("3")
    expect(button).to_have_attribute("aria-label", "Filters, 3 active")
    expect(panel).to_be_visible()  # it stays open while its settings change, the results following
    assert url_params(page) == {"q": "red", "collapse": "near", "mode": "semantic", "sort": "oldest"}
    shot(page, "filters")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(count).to_have_text("3")
    # A shared link shows how many filters shape it before the panel is opened; the dates count once.
    page.goto(f"{gallery.base}/?q=red&min_score=0.10&taken_after=2023-01-01&taken_before=2023-01-05&sort=newest")
    expect(count).to_have_text("3")
    expect(page.locator("#status")).not_to_have_attribute("data-state", "loading")
    button.click()
    expect(page.locator("#min-score-value")).to_have_text("0.10")
    page.click("#filters-reset")
    expect(count).to_be_hidden()
    assert url_params(page) == {"q": "red"}
    expect(page.locator("#taken-after")).to_have_value("")
    page.locator("#stats").click(position={"x": 5, "y": 5})  # a click outside closes it
    expect(panel).to_be_hidden()
    page.go_back()  # the filters come back with the history entry
    expect(count).to_have_text("3")


def test_more_below_the_cutoff(gallery: Gallery, page: Page) -> None:
    answer = gallery.api("/api/search", q="red", mode="semantic")
    assert answer["hidden"] > 0
    show(page, gallery, "q=red&mode=semantic", len(answer["items"]))
    button = page.locator("#cutoff-button")
    expect(button).to_have_text(f"{answer['hidden']} more below the cutoff")
    shot(page, "cutoff")
    button.click()
    expect(page.locator("#grid .tile")).to_have_count(len(PHOTOS))
    assert url_params(page)["cutoff"] == "none"
    expect(button).to_have_text("Hide the weak matches")
    button.click()
    expect(page.locator("#grid .tile")).to_have_count(len(answer["items"]))


def test_each_result_says_why_it_matched(gallery: Gallery, page: Page) -> None:
    answer = gallery.api("/api/search", q="red")
    show(page, gallery, "q=red", len(answer["items"]))
    words = {"name": "name", "text": "text", "visual": "picture"}
    expected = [" · ".join(words[reason] for reason in item["matched"]) for item in answer["items"]]
    assert page.locator("#grid .tile .reasons").all_inner_texts() == expected
    assert "name · picture" in expected  # the red/ folder's pictures: their name and their colour
    shot(page, "reasons")
    page.locator("#grid .tile").first.click()
    expect(page.locator("#lb-details")).to_contain_text("Matched by")
    expect(page.locator("#lb-details")).to_contain_text(expected[0])


def test_words_typed_beside_a_dropped_image(gallery: Gallery, page: Page) -> None:
    show(page, gallery, "", len(PHOTOS))
    page.set_input_files("#file-input", files=[{"name": "red.jpg", "mimeType": "image/jpeg",
                                                "buffer": jpeg((230, 20, 20))}])
    expect(page.locator("#image-terms-form")).to_be_visible()
    expect(page.locator("#query-terms .chip")).to_have_text(["red.jpg"])
    expect(page.locator("#grid .tile").first).to_have_attribute("data-key", "red/one.jpg")  # the same colour
    page.fill("#image-terms", "blue")
    page.press("#image-terms", "Enter")
    expect(page.locator("#query-terms .chip")).to_have_text(["red.jpg", "blue"])
    both = httpx.post(f"{gallery.base}/api/search/image", data={"q": "blue"},
                      files={"file": ("red.jpg", jpeg((230, 20, 20)), "image/jpeg")}).json()
    first = both["items"][0]["key"]
    assert first != "red/one.jpg"  # the words moved the answer
    expect(page.locator("#grid .tile").first).to_have_attribute("data-key", first)
    assert tile_keys(page) == [item["key"] for item in both["items"]] and url_params(page)["q"] == "blue"
    shot(page, "image-and-words")
    page.locator("#query-terms .chip").first.click()  # drop the image: the words alone
    expect(page.locator("#image-terms-form")).to_be_hidden()
    expect(page.locator("#search-input")).to_have_value("blue")
