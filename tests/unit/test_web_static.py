"""Browser-free checks of the static gallery in web/: it must be servable from any CDN as-is.

The browser behaviour itself is covered by the Playwright test of the local stack.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.fixtures.js_functions import function_spans

WEB = Path(__file__).resolve().parents[2] / "web"
# The gallery's ES modules (web/js/main.js imports the rest), as paths relative to web/.
SCRIPTS = sorted(path.relative_to(WEB).as_posix() for path in (WEB / "js").glob("*.js"))

# Hooks the browser test and users rely on; renaming one breaks them.
REQUIRED_IDS = {
    "search-input",
    "search-form",
    "min-score",
    "grid",
    "lightbox",
    "more-like-this",
    "file-input",
    "collection-select",
    "stats",
    "status",
    "test-model-banner",
    "sidebar",
    "nav-list",
    "menu-button",
    "filters-button",
    "filters-count",
    "filters-panel",
}
MAX_FUNCTION_LINES = 80  # the developers' guide: short functions
TEST_MODEL_TEXT = "Random-weight test model: search results are not meaningful."
# The only absolute URL allowed: the SVG namespace inside the inline favicon (never fetched).
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
# Links a person may follow, never loaded by the page: a photo's place on OpenStreetMap (web/js/photo.js).
OUTBOUND_LINKS = ("https://www.openstreetmap.org/",)
EXTERNAL_URL = re.compile(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)


class _Collector(HTMLParser):
    """Collects element ids, asset references and the text of each element with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if attributes.get("id"):
            self.ids.append(str(attributes["id"]))
        for name in ("src", "href"):
            value = attributes.get(name)
            if value is not None:
                self.refs.append((tag, name, value))


def _parse_index() -> _Collector:
    collector = _Collector()
    collector.feed((WEB / "index.html").read_text(encoding="utf-8"))
    return collector


def test_config_json_has_the_documented_defaults() -> None:
    config = json.loads((WEB / "config.json").read_text(encoding="utf-8"))
    assert set(config) == {"apiBase", "collection", "pageSize"}
    # Empty apiBase means same origin: what the local stack needs, since it serves web/ itself.
    assert config["apiBase"] == ""
    assert isinstance(config["collection"], str)
    from shared.api import MAX_LIMIT  # the API answers 400 to a larger page

    assert isinstance(config["pageSize"], int) and 1 <= config["pageSize"] <= MAX_LIMIT


def test_index_references_only_local_assets_that_exist() -> None:
    collector = _parse_index()
    assert collector.refs, "index.html references no assets at all"
    for tag, attribute, value in collector.refs:
        if value.startswith("data:") or value in {"", "#", "./"} or value.startswith("#"):
            continue
        assert not EXTERNAL_URL.match(value), f"<{tag} {attribute}={value!r}> points outside web/"
        path = (WEB / value.split("?")[0].split("#")[0]).resolve()
        assert path.is_relative_to(WEB), f"<{tag} {attribute}={value!r}> escapes web/"
        assert path.is_file(), f"<{tag} {attribute}={value!r}> names a file missing from web/"
    scripts = [attrs for tag, attrs in collector.tags if tag == "script"]
    assert scripts == [{"type": "module", "src": "js/main.js"}]


@pytest.mark.parametrize("name", ["index.html", *SCRIPTS, "style.css"])
def test_no_external_urls(name: str) -> None:
    text = (WEB / name).read_text(encoding="utf-8").replace(SVG_NAMESPACE, "")
    for link in OUTBOUND_LINKS:
        text = text.replace(f'"{link}"', "")  # only as a whole string constant
    found = EXTERNAL_URL.findall(text)
    assert not found, f"{name} loads or links something outside web/: {found}"
    # Imports must be relative files served from web/ (no bare specifiers, no CDN).
    for specifier in re.findall(r"""^\s*import\b[^'"]*['"]([^'"]+)['"]""", text, flags=re.MULTILINE):
        assert specifier.startswith("./") and ((WEB / name).parent / specifier).is_file(), specifier


def test_required_ids_are_unique_and_present() -> None:
    ids = _parse_index().ids
    assert len(ids) == len(set(ids)), f"duplicate ids: {sorted({i for i in ids if ids.count(i) > 1})}"
    assert set(ids) >= REQUIRED_IDS, f"missing ids: {sorted(REQUIRED_IDS - set(ids))}"


def test_every_element_the_script_looks_up_exists() -> None:
    ids = set(_parse_index().ids)
    script = "\n".join((WEB / name).read_text(encoding="utf-8") for name in SCRIPTS)
    looked_up = set(re.findall(r"""\$\(\s*["']#([\w-]+)["']\s*\)""", script))
    assert looked_up, "web/js/ looks up no elements by id"
    assert looked_up <= ids, f"web/js/ needs ids missing from index.html: {sorted(looked_up - ids)}"


def test_page_basics_for_phones_dark_mode_and_the_test_model() -> None:
    html = (WEB / "index.html").read_text(encoding="utf-8")
    css = (WEB / "style.css").read_text(encoding="utf-8")
    assert 'name="viewport"' in html
    assert "prefers-color-scheme: dark" in css
    banner = re.search(r'<div id="test-model-banner"[^>]*>(.*?)</div>', html, flags=re.DOTALL)
    assert banner is not None
    assert " ".join(banner.group(1).split()) == TEST_MODEL_TEXT
    # Form controls have labels a screen reader can announce.
    for control in ("search-input", "collection-select", "min-score", "api-key-input"):
        assert f'for="{control}"' in html, f"#{control} has no <label for>"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; cannot run the gallery's JavaScript")
    return node


def _as_mjs(tmp_path: Path, name: str) -> Path:
    """A copy of web/js/<name> that node treats as an ES module whatever its version or defaults."""
    copy = tmp_path / Path(name).with_suffix(".mjs").name
    copy.write_text((WEB / name).read_text(encoding="utf-8"), encoding="utf-8")
    return copy


@pytest.mark.parametrize("name", SCRIPTS)
def test_gallery_scripts_parse(name: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [_node(), "--check", str(_as_mjs(tmp_path, name))], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_stats_bar_shows_a_model_move(tmp_path: Path) -> None:
    """The `move` block of /api/stats reads "Moving to <to>: done/total"; none (null, absent) hides it."""
    module = _as_mjs(tmp_path, "js/format.js").as_uri()
    script = f"""
        import {{ moveText }} from {json.dumps(module)};
        console.log(JSON.stringify([
            moveText({{ from: "clip-b32", to: "clip-l14", done: 12, total: 40 }}),
            moveText(null),
            moveText(undefined),
        ]));
    """
    result = subprocess.run(
        [_node(), "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["Moving to clip-l14: 12/40", "", ""]
    # The stats bar has a place for it, filled from the stats answer.
    assert 'id="stats-move"' in (WEB / "index.html").read_text(encoding="utf-8")
    assert "showMove(data.move, data.backlog)" in (WEB / "js" / "collection.js").read_text(encoding="utf-8")


def test_stats_bar_shows_the_backlog(tmp_path: Path) -> None:
    """The `backlog` block of /api/stats reads "Backlog: done/queued" with the time left; none hides it."""
    module = _as_mjs(tmp_path, "js/format.js").as_uri()
    script = f"""
        import {{ backlogText }} from {json.dumps(module)};
        console.log(JSON.stringify([
            backlogText({{ queued: 300, done: 120, per_minute: 60, eta_seconds: 180 }}),
            backlogText({{ queued: 300, done: 0, per_minute: 0, eta_seconds: null }}),
            backlogText(undefined),
        ]));
    """
    result = subprocess.run(
        [_node(), "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["Backlog: 120/300, about 3 min left", "Backlog: 0/300", ""]


def test_photo_facts_and_delete_commands_as_text(tmp_path: Path) -> None:
    """The lightbox shows the photo's own clock time and offset, the place's name and its OpenStreetMap link;
    the Duplicates view's commands quote keys for the shell."""
    module = _as_mjs(tmp_path, "js/photo.js").as_uri()
    script = f"""
        import {{ deleteCommands, formatTakenAt, mapUrl, placeName, placeText }} from {json.dumps(module)};
        console.log(JSON.stringify([
            formatTakenAt("2023-07-14T15:30:00+02:00", "en-GB"),
            formatTakenAt("2023-07-01T10:00:00", "en-GB"),
            formatTakenAt(null),
            placeText({{ lat: -33.856784, lon: 151.215297 }}),
            mapUrl({{ lat: 48.85837, lon: 2.294481 }}),
            placeText(null) + mapUrl(undefined),
            deleteCommands("photos", ["copies/a.jpg", "it's $HOME.jpg"]),
            placeName({{ city: "Paris", state: "Île-de-France", country: "France", country_code: "FR" }}),
            placeName({{ city: "Tokyo", state: "Tokyo", country: "Japan" }}),
            placeName({{ city: null, state: null, country: "Iceland" }}) + placeName(null),
        ]));
    """
    result = subprocess.run(
        [_node(), "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        "14 Jul 2023, 15:30:00 (UTC+02:00)",  # the camera's clock, not this machine's zone
        "1 Jul 2023, 10:00:00",
        "",
        "-33.85678, 151.21530",
        "https://www.openstreetmap.org/?mlat=48.85837&mlon=2.29448#map=16/48.85837/2.29448",
        "",
        "aws s3 rm 's3://photos/copies/a.jpg'\naws s3 rm 's3://photos/it'\\''s $HOME.jpg'",
        "Paris, Île-de-France, France",
        "Tokyo, Japan",  # a name repeated reads once
        "Iceland",
    ]


def test_the_function_length_check_sees_functions_and_long_ones() -> None:
    """The checker below finds every kind of function, skips braces in strings and regular expressions, and
    counts a function's lines from its head to its closing brace."""
    body = "\n".join(f"  step({i});" for i in range(80))
    source = f"""
        const pattern = /^(\\d{{4}})-{{$/; const text = `a ${{ {{ b: "}}" }}.b }} {{`;
        export async function long(a) {{\n{body}\n}}
        const arrow = (x) => {{ if (x) {{ return {{ x }}; }} }};
        class Box {{ method(y) {{ for (const z of y) {{ z(); }} }} }}
        setup(function () {{ return 1; }});
    """
    spans = {span.name: span.lines for span in function_spans(source)}
    assert spans == {"long": 82, "(arrow)": 1, "method": 1, "(function)": 1}


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_function_in_the_gallery_is_over_80_lines(name: str) -> None:
    spans = function_spans((WEB / name).read_text(encoding="utf-8"))
    long = [f"{span.name} (line {span.first_line}: {span.lines} lines)" for span in spans
            if span.lines > MAX_FUNCTION_LINES]
    assert not long, f"{name}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_every_view_is_one_entry_of_the_views_list() -> None:
    """The sidebar, the URL and the start are built from views.js; main.js only wires the modules."""
    views = (WEB / "js" / "views.js").read_text(encoding="utf-8")
    names = re.findall(r'name: "?([\w]+)"?,', views)
    assert names == ["PHOTOS_VIEW", "places", "discover", "duplicates"]
    html = (WEB / "index.html").read_text(encoding="utf-8")
    sections = re.findall(r"section: els\.(\w+),", views)
    elements = (WEB / "js" / "elements.js").read_text(encoding="utf-8")
    for section in sections:  # each view's section is in the page
        element_id = re.search(rf'{section}: \$\("#([\w-]+)"\)', elements)
        assert element_id and f'<section id="{element_id.group(1)}"' in html, section
    main = (WEB / "js" / "main.js").read_text(encoding="utf-8")
    assert "addEventListener" not in main  # every module registers its own listeners
    assert "registerSidebar(VIEWS)" in main and "view.register()" in main
