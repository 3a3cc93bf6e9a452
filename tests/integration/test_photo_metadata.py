"""Photo metadata end to end: photos with EXIF uploaded to moto S3, ingested by the real pipeline with
the test model, then read through the API: the items' taken_at/camera/location, the taken_after,
taken_before and camera filters on search and recent, and the sweep filling rows embedded before
ingest read EXIF and hashes, without embedding them again."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.api import create_app
from shared.dev.local_services import MotoServer
from shared.ingest.backfill import sweep
from shared.store.catalog import Collection
from shared.store.db import quote_ident
from tests.fixtures.model import synthetic_photo
from tests.fixtures.photos import encode, exif_block, with_app1
from tests.fixtures.services import Pipeline

# key -> (format, EXIF fields)
PHOTOS: dict[str, tuple[str, dict[str, Any]]] = {
    "trip/paris.jpg": ("JPEG", {"taken": "2023:07:14 15:30:00", "offset": "+02:00", "make": "Apple",
                                "model": "iPhone 12", "gps": (48.858370, 2.294481), "orientation": 6}),
    "trip/new-york.jpg": ("JPEG", {"taken": "2023:07:20 09:00:00", "offset": "-04:00", "make": "Google",
                                   "model": "Pixel 7", "gps": (40.689247, -74.044502)}),
    "trip/sydney.heic": ("HEIF", {"taken": "2024:01:05 18:00:00", "offset": "+11:00", "make": "samsung",
                                  "model": "SM-G991B", "gps": (-33.856784, 151.215297)}),
    "trip/rio.avif": ("AVIF", {"taken": "2022:12:31 23:00:00", "offset": "-03:00", "make": "Canon",
                               "model": "Canon EOS R5", "gps": (-22.951916, -43.210487)}),
    "trip/lake.webp": ("WEBP", {"taken": "2023:07:01 10:00:00", "make": "NIKON CORPORATION", "model": "NIKON Z 6"}),
    "scans/receipt.png": ("PNG", {}),
}
BROKEN_KEY = "trip/broken.jpg"


def broken_exif_jpeg() -> bytes:
    # An IFD offset far past the end.
    return with_app1(encode(synthetic_photo(120, 90, seed=99), "JPEG"), b"Exif\x00\x00MM\x00*\x7f\xff\xff\xff")


@dataclass
class World(Pipeline):
    collection: Collection
    client: TestClient


@pytest.fixture(scope="module")
def world(pg_url: str, moto_server: MotoServer, test_model_dir: Path) -> Iterator[World]:
    pipeline = Pipeline.start(pg_url, moto_server, test_model_dir, "exif")
    objects = {key: encode(synthetic_photo(160, 120, seed=index), fmt, exif_block(**fields) if fields else None)
               for index, (key, (fmt, fields)) in enumerate(PHOTOS.items())}
    events = [pipeline.put(key, data) for key, data in {**objects, BROKEN_KEY: broken_exif_jpeg()}.items()]
    report = pipeline.ingestor.process_events(events)
    assert report.summary()["embedded"] == len(PHOTOS) + 1, report.outcomes
    collection = pipeline.catalog.get_collection(pipeline.settings.bucket)
    with TestClient(create_app(pipeline.settings, catalog=pipeline.catalog, models=pipeline.embedder)) as client:
        yield World(**vars(pipeline), collection=collection, client=client)
    pipeline.catalog.db.close()


def items_by_key(world: World, path: str = "/api/recent", **params: Any) -> dict[str, dict[str, Any]]:
    response = world.client.get(path, params={"limit": 100, **params})
    assert response.status_code == 200, response.text
    return {item["key"]: item for item in response.json()["items"]}


def test_items_carry_when_where_and_with_what(world: World) -> None:
    items = items_by_key(world)
    paris = items["trip/paris.jpg"]
    assert paris["taken_at"] == "2023-07-14T15:30:00+02:00"
    assert paris["camera"] == "Apple iPhone 12"
    assert paris["location"] == {"lat": pytest.approx(48.85837, abs=1e-5), "lon": pytest.approx(2.294481, abs=1e-5)}
    assert (paris["width"], paris["height"]) == (120, 160)  # orientation 6: portrait as displayed
    assert items["trip/new-york.jpg"]["taken_at"] == "2023-07-20T09:00:00-04:00"
    assert items["trip/new-york.jpg"]["location"]["lon"] == pytest.approx(-74.044502, abs=1e-5)
    sydney, rio = items["trip/sydney.heic"], items["trip/rio.avif"]
    assert (sydney["camera"], sydney["taken_at"]) == ("samsung SM-G991B", "2024-01-05T18:00:00+11:00")
    assert sydney["location"]["lat"] == pytest.approx(-33.856784, abs=1e-5)
    assert (rio["camera"], rio["taken_at"]) == ("Canon EOS R5", "2022-12-31T23:00:00-03:00")
    assert rio["location"]["lon"] == pytest.approx(-43.210487, abs=1e-5)
    lake = items["trip/lake.webp"]  # no offset recorded: the camera's clock time, without one
    assert (lake["camera"], lake["taken_at"], lake["location"]) == ("NIKON Z 6", "2023-07-01T10:00:00", None)
    for key in ("scans/receipt.png", BROKEN_KEY):  # no EXIF, broken EXIF: embedded, nulls
        assert (items[key]["taken_at"], items[key]["camera"], items[key]["location"]) == (None, None, None)
    assert (items[BROKEN_KEY]["width"], items[BROKEN_KEY]["height"]) == (120, 90)


def test_exif_words_feed_the_keyword_index(world: World) -> None:
    rows = dict(world.catalog.db.run(f"SELECT key, exif_words FROM {quote_ident(world.collection.table)}"))
    assert rows["trip/paris.jpg"] == "apple iphone 12"
    assert rows["trip/lake.webp"] == "nikon z 6"
    assert rows["scans/receipt.png"] is None


@pytest.mark.parametrize("path", ["/api/recent", "/api/search"])
@pytest.mark.parametrize(("params", "expected"), [
    # A date alone: taken_after from its first moment, taken_before through its last (UTC).
    ({"taken_after": "2023-07-01", "taken_before": "2023-07-31"},
     {"trip/paris.jpg", "trip/new-york.jpg", "trip/lake.webp"}),
    ({"taken_before": "2023-07-14"}, {"trip/paris.jpg", "trip/rio.avif", "trip/lake.webp"}),
    ({"taken_after": "2024-01-01"}, {"trip/sydney.heic"}),
    # ISO times with offsets: paris was taken at 15:30+02:00; before is exclusive.
    ({"taken_after": "2023-07-14T15:30:00+02:00", "taken_before": "2023-07-14T15:30:01+02:00"},
     {"trip/paris.jpg"}),
    ({"taken_after": "2023-07-14T13:00:00Z", "taken_before": "2023-07-14T13:30:00Z"}, set()),
    ({"camera": "iphone"}, {"trip/paris.jpg"}),
    ({"camera": "NIKON"}, {"trip/lake.webp"}),
    ({"camera": "%"}, set()),  # a substring, not a LIKE pattern
    ({"camera": "pixel", "taken_after": "2023-07-15"}, {"trip/new-york.jpg"}),
])
def test_taken_and_camera_filters(world: World, path: str, params: dict[str, str], expected: set[str]) -> None:
    extra = {"q": "holiday photo"} if path == "/api/search" else {}
    assert set(items_by_key(world, path, **extra, **params)) == expected


@pytest.mark.parametrize(("params", "named"), [
    ({"taken_after": "last summer"}, "taken_after"),
    ({"taken_before": "2023-13-01"}, "taken_before"),
    ({"taken_after": "2023-08-01", "taken_before": "2023-07-01"}, "taken_after"),
    ({"taken_after": "2023-07-14", "taken_before": "2023-07-13"}, "taken_after"),
])
def test_bad_dates_are_400_naming_the_parameter(world: World, params: dict[str, str], named: str) -> None:
    for path, extra in (("/api/recent", {}), ("/api/search", {"q": "x"})):
        response = world.client.get(path, params={**extra, **params})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "bad_parameter" and named in error["message"]


def test_the_sweep_fills_rows_embedded_before_exif_was_read_without_embedding_them(world: World) -> None:
    catalog, table = world.catalog, quote_ident(world.collection.table)
    keys = ["trip/paris.jpg", "trip/sydney.heic", "scans/receipt.png"]
    before = dict(catalog.db.run(f"SELECT key, embedding::text FROM {table} WHERE key = ANY(:keys)", keys=keys))
    # As a release before this one left them: no hash, no EXIF fields, the raw (unrotated) size.
    catalog.db.run(f"""UPDATE {table} SET sha256 = NULL, taken_at = NULL, taken_offset = NULL, camera = NULL,
                           latitude = NULL, longitude = NULL, exif_words = NULL, width = 160, height = 120
                       WHERE key = ANY(:keys)""", keys=keys)
    catalog.db.run(f"DELETE FROM {quote_ident(world.collection.table + '_near')} WHERE id IN "
                   f"(SELECT id FROM {table} WHERE key = ANY(:keys))", keys=keys)  # nor neighbours found
    model_calls: list[int] = []
    original = world.embedder.embed_prepared
    world.embedder.embed_prepared = lambda inputs: model_calls.append(len(inputs)) or original(inputs)  # type: ignore
    try:
        summary = sweep(world.ingestor, world.collection.name)
    finally:
        world.embedder.embed_prepared = original  # type: ignore[method-assign]
    assert summary.filled == summary.compared == len(keys) and summary.embedded == 0 and model_calls == []
    rows = {row[0]: row[1:] for row in catalog.db.run(
        f"SELECT key, embedding::text, sha256, camera, width, height FROM {table} WHERE key = ANY(:keys)", keys=keys)}
    for key in keys:
        assert rows[key][0] == before[key] and len(rows[key][1]) == 64  # the same vector; a SHA-256 in hex
    assert list(rows["trip/paris.jpg"][2:]) == ["Apple iPhone 12", 120, 160]
    assert items_by_key(world)["trip/sydney.heic"]["taken_at"] == "2024-01-05T18:00:00+11:00"
    assert sweep(world.ingestor, world.collection.name).filled == 0  # nothing left to fill
