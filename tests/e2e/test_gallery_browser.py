"""The gallery in a real browser against the real local stack (`make dev`), as a person uses it.

Starts `python -m shared.dev.stack` on free ports, uploads photo-like PNG/JPEG images with boto3 to its
S3 endpoint, waits until the SQS worker has embedded them, then drives Debian's Chromium with
Playwright: grid, text search with scores, back button, lightbox + "more like this", search by an
uploaded image, infinite scroll, an error state, dark mode. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.fixtures.devstack import ARTIFACTS, Stack, running_stack
from tests.fixtures.model import synthetic_photo

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGE_SIZE = 30  # web/config.json
IMAGE_COUNT = 42  # more than one page, so infinite scroll has a second page to load
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (`make test` installs it)")
expect.set_options(timeout=20_000)


def make_images() -> dict[str, tuple[bytes, str]]:
    """key -> (bytes, mime type): varied sizes and aspect ratios (h/w 0.8 to 1.5), JPEG and PNG."""
    images: dict[str, tuple[bytes, str]] = {}
    for i in range(IMAGE_COUNT):
        width = 300 + (i * 37) % 260
        height = int(width * (0.8 + (i * 0.173) % 0.7))
        png = i % 3 == 0
        folder = "holiday 2024" if i % 2 else "garden"
        key = f"{folder}/IMG_{i:04d}.{'png' if png else 'jpg'}"
        buffer = io.BytesIO()
        synthetic_photo(width, height, seed=100 + i).save(buffer, "PNG" if png else "JPEG", quality=88)
        images[key] = (buffer.getvalue(), "image/png" if png else "image/jpeg")
    return images


@pytest.fixture(scope="module")
def images() -> dict[str, tuple[bytes, str]]:
    return make_images()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_model_dir: Path,
          images: dict[str, tuple[bytes, str]]) -> Iterator[Stack]:
    assert len(images) == IMAGE_COUNT
    with running_stack(tmp_path_factory, str(test_model_dir), "gallery", objects=images) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_page(browser: Browser, viewport: dict[str, int], color_scheme: str = "light") -> Iterator[Page]:
    context = browser.new_context(viewport=viewport, color_scheme=color_scheme)  # type: ignore[arg-type]
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    yield from open_page(browser, DESKTOP)


@pytest.fixture()
def phone(browser: Browser) -> Iterator[Page]:
    yield from open_page(browser, PHONE, color_scheme="dark")


def wait_images(page: Page, *, full_page: bool = False) -> None:
    """Every image shown in the page's main area (in view; anywhere for a full-page shot) has loaded and faded
    in, so a screenshot shows pictures, not placeholders. Images that fell back to "unavailable" are left out."""
    page.wait_for_function(
        """(fullPage) => {
            const shown = [...document.querySelectorAll('main img')]
                .filter(i => i.getClientRects().length && !i.closest('.broken'))
                .filter(i => fullPage || i.getBoundingClientRect().top < innerHeight);
            if (fullPage) shown.forEach(i => { i.loading = 'eager'; });
            return shown.every(i => i.complete && i.naturalWidth > 0 && getComputedStyle(i).opacity === '1');
        }""",
        arg=full_page,
    )


def shot(page: Page, name: str, *, full_page: bool = False) -> None:
    wait_images(page, full_page=full_page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"gallery-{name}.png"), full_page=full_page)


def tile_scores(page: Page) -> list[float]:
    return [float(text) for text in page.locator("#grid .tile .score").all_inner_texts()]


def wait_thumbnails(page: Page) -> None:
    """Every tile in view has its thumbnail (loaded: class `loaded`, complete, with pixels) and none fell back
    to broken."""
    page.wait_for_function(
        """() => [...document.querySelectorAll('#grid .tile')]
              .filter(t => t.getBoundingClientRect().top < innerHeight)
              .every(t => t.classList.contains('loaded') && t.querySelector('img').complete
                          && t.querySelector('img').naturalWidth > 0)"""
    )
    assert page.locator("#grid .tile.broken").count() == 0


def test_images_were_embedded_through_the_event_path(stack: Stack) -> None:
    assert stack.logged_embedded(IMAGE_COUNT) == IMAGE_COUNT


def test_grid_fills_with_thumbnails_stats_and_test_model_banner(stack: Stack, page: Page) -> None:
    page.goto(stack.api_url)
    expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    expect(page.locator("#status-text")).to_contain_text("newest images in photos")
    assert page.locator("#grid .tile").count() >= PAGE_SIZE
    wait_thumbnails(page)
    # Space is reserved from width/height before any image arrives: every tile has a size.
    first = page.locator("#grid .tile").first
    assert re.fullmatch(r"\d+(\.\d+)?px", first.evaluate("t => t.style.height"))
    expect(page.locator('#stats [data-stat="embedded"]')).to_have_text(str(IMAGE_COUNT))
    expect(page.locator('#stats [data-stat="pending"]')).to_have_text("0")
    expect(page.locator("#test-model-banner")).to_be_visible()
    expect(page.locator("#collection-select option[value=photos]")).to_have_text(f"photos ({IMAGE_COUNT})")
    shot(page, "grid")


def test_text_search_shows_scores_and_back_returns(stack: Stack, page: Page) -> None:
    page.goto(stack.api_url)
    expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    page.fill("#search-input", "a dog on the beach")
    page.press("#search-input", "Enter")
    expect(page.locator("#status-text")).to_contain_text("matches for “a dog on the beach”")
    assert "q=a+dog+on+the+beach" in page.url  # shareable
    scores = tile_scores(page)
    assert len(scores) == page.locator("#grid .tile").count() >= PAGE_SIZE
    assert all(-1.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    wait_thumbnails(page)
    shot(page, "search")
    page.go_back()
    expect(page.locator("#status-text")).to_contain_text("newest images")
    expect(page.locator("#search-input")).to_have_value("")
    assert page.locator("#grid .tile .score").count() == 0


def test_lightbox_and_more_like_this(stack: Stack, page: Page) -> None:
    page.goto(stack.api_url)
    expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    tile = page.locator("#grid .tile").nth(2)
    key = tile.get_attribute("data-key")
    assert key
    tile.click()
    expect(page.locator("#lightbox")).to_have_attribute("open", "")
    expect(page.locator("#lb-key")).to_have_text(key)
    expect(page.locator("#lb-details")).to_contain_text("Dimensions")
    page.wait_for_function("() => document.querySelector('#lb-image').naturalWidth > 0")
    shot(page, "lightbox")
    page.keyboard.press("ArrowRight")  # keyboard navigation inside the lightbox
    expect(page.locator("#lb-key")).not_to_have_text(key)
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#lb-key")).to_have_text(key)
    page.click("#more-like-this")
    expect(page.locator("#lightbox")).not_to_have_attribute("open", "")
    # "matches for": the answer is drawn (while loading, the status says "Finding images like …").
    expect(page.locator("#status-text")).to_contain_text(f"matches for images like {key}")
    expect(page).to_have_url(re.compile(r"[?&]q=similar%3A"))
    keys = page.locator("#grid .tile").evaluate_all("tiles => tiles.map(t => t.dataset.key)")
    assert len(keys) == PAGE_SIZE and key not in keys  # the image itself is left out of its look-alikes
    scores = tile_scores(page)
    assert len(scores) == PAGE_SIZE and scores == sorted(scores, reverse=True)
    wait_thumbnails(page)
    shot(page, "similar")


def test_search_by_uploaded_image(stack: Stack, page: Page, images: dict[str, tuple[bytes, str]]) -> None:
    key = "garden/IMG_0004.jpg"
    body, mime = images[key]
    page.goto(stack.api_url)
    expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    page.set_input_files("#file-input", files=[{"name": "my upload.jpg", "mimeType": mime, "buffer": body}])
    expect(page.locator("#status-text")).to_contain_text("matches for images similar to my upload.jpg")
    expect(page.locator("#query-image")).to_be_visible()
    expect(page.locator("#grid .tile").first).to_have_attribute("data-key", key)
    assert tile_scores(page)[0] == pytest.approx(1.0, abs=0.002)
    wait_thumbnails(page)
    shot(page, "upload-search")


def test_scrolling_loads_the_next_page_on_a_phone_in_dark_mode(stack: Stack, phone: Page) -> None:
    phone.goto(stack.api_url)
    expect(phone.locator("#status")).to_have_attribute("data-state", "ok")
    # The first page is taller than the screen: nothing more loads until the user scrolls.
    assert phone.locator("#grid .tile").count() == PAGE_SIZE
    expect(phone.locator("#more-status")).to_have_text("")
    background = phone.evaluate("getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(v) for v in re.findall(r"\d+", background)[:3])
    assert red + green + blue < 3 * 96, f"not dark: {background}"  # follows the system's dark mode
    wait_thumbnails(phone)
    shot(phone, "phone-dark")
    phone.mouse.wheel(0, 20_000)
    expect(phone.locator("#grid .tile")).to_have_count(IMAGE_COUNT)
    expect(phone.locator("#more-status")).to_have_text("That is everything.")
    keys = phone.locator("#grid .tile").evaluate_all("tiles => tiles.map(t => t.dataset.key)")
    assert len(set(keys)) == IMAGE_COUNT  # the second page continued, it did not repeat
    shot(phone, "phone-scrolled", full_page=True)


def test_unknown_collection_in_the_url_shows_an_error(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.api_url}/?q=cats&collection=no-such-collection")
    expect(page.locator("#status")).to_have_attribute("data-state", "error")
    expect(page.locator("#status-text")).to_contain_text("no-such-collection")
    expect(page.locator("#status-action")).to_have_text("Retry")
    assert page.locator("#grid .tile").count() == 0
    shot(page, "error")


def test_a_large_image_is_posted_as_a_small_jpeg(stack: Stack, page: Page, images: dict[str, tuple[bytes, str]],
                                                 tmp_path: Path) -> None:
    """A phone-sized PNG (over the deployed API's 4.4 MB) goes out shrunk to ~1,024 px JPEG, and still finds
    the stored image it was made from."""
    from email.parser import BytesParser

    from PIL import Image

    key = "garden/IMG_0004.jpg"
    source = Image.open(io.BytesIO(images[key][0])).convert("RGB")
    big = source.resize((2000, round(2000 * source.height / source.width)), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, "PNG", compress_level=0)  # stored, not compressed: ~9 MB (noise took 5 s to make and save)
    png = buffer.getvalue()
    assert len(png) > 4_400_000
    page.goto(stack.api_url)
    expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    bodies: list[tuple[str, bytes]] = []

    def keep_body(route: Route) -> None:
        bodies.append((route.request.headers["content-type"], route.request.post_data_buffer or b""))
        route.continue_()

    page.route("**/api/search/image*", keep_body)
    huge = tmp_path / "huge.png"  # a path, not a buffer: the browser reads it (9 MB through Playwright took 7 s)
    huge.write_bytes(png)
    page.set_input_files("#file-input", files=huge)
    expect(page.locator("#status-text")).to_contain_text("matches for images similar to huge.png")
    parts = [BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body).get_payload()[0]
             for content_type, body in bodies]
    part, sent = parts[0], parts[0].get_payload(decode=True)
    assert all(p.get_payload(decode=True) == sent for p in parts)  # shrunk once; further pages post the same
    assert part.get_content_type() == "image/jpeg" and part.get_filename() == "huge.jpg"
    posted_image = Image.open(io.BytesIO(sent))
    assert posted_image.format == "JPEG" and max(posted_image.size) == 1024
    assert posted_image.size[0] / posted_image.size[1] == pytest.approx(big.width / big.height, rel=0.01)
    assert len(sent) < len(png) / 10
    expect(page.locator("#grid .tile").first).to_have_attribute("data-key", key)
    shot(page, "upload-shrunk")
