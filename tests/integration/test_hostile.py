"""Hostile input through HTTP (TestClient against a real catalog) and through object events.

Every hostile request gets a 4xx JSON error that names what was wrong, and nothing outside the
catalogue is ever signed or served: the image route only signs keys that have a row. An event key
PostgreSQL cannot store is recorded as failed, acknowledged, and never written.
"""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.testclient import TestClient

from shared.api.errors import install_error_handlers
from shared.api.validation import check_request
from shared.config import Settings
from shared.dev.local_services import MotoServer, aws_client
from shared.embedders import Embedder, load
from shared.events import MAX_KEY_BYTES, ObjectEvent
from shared.ingest.backfill import sweep
from shared.ingest.pipeline import Ingestor
from shared.storage import Storage
from shared.store.catalog import Catalog
from shared.store.db import quote_ident
from tests.fixtures.model import png_bomb, synthetic_photo
from tests.integration.test_api import World, add_images, error_of, png_bytes, world  # noqa: F401 - a fixture

LONGEST_KEY = "k/" + "é" * ((MAX_KEY_BYTES - 6) // 2) + ".jpg"  # 1,024 bytes of UTF-8, two per "é"
OUTSIDE_KEY = "secret/outside.jpg"  # in the bucket, never catalogued: must never be signed
MAX_UPLOAD = 200_000  # test_api's world fixture's IB_MAX_UPLOAD_BYTES


@pytest.fixture(scope="module")
def hostile(world: World, moto_server: MotoServer) -> World:  # noqa: F811 - `world` is test_api's fixture
    """test_api's world (a catalogued collection and its app), plus a row with the longest key there is and
    an object in the bucket that has no row."""
    assert world.settings.max_upload_bytes == MAX_UPLOAD
    add_images(world.catalog, world.coll, world.embedder, [LONGEST_KEY], seed=500)
    s3 = aws_client("s3", moto_server.endpoint)
    s3.create_bucket(Bucket=world.coll.bucket)
    s3.put_object(Bucket=world.coll.bucket, Key=OUTSIDE_KEY, Body=b"not for you")
    return world


def photo_bytes(seed: int) -> bytes:
    out = io.BytesIO()
    synthetic_photo(64, 48, seed=seed).save(out, "JPEG")
    return out.getvalue()


def cursor_of(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def assert_refused(response: httpx.Response, status: int | None = None, code: str | None = None,
                   named: str | None = None) -> dict[str, str]:
    """A 4xx JSON error (of this status, code, naming this parameter), and nothing signed or redirected."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    error = error_of(response)
    assert status is None or response.status_code == status, (response.status_code, error)
    assert code is None or error["code"] == code, error
    assert named is None or f"'{named}'" in error["message"], error
    assert "location" not in response.headers
    assert "X-Amz-Signature" not in response.text and "root:" not in response.text
    return error


# ---- values PostgreSQL cannot take, at the edge ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/api/search", {"q": "a\x00b"}, "q"),
        ("/api/search", {"q": "x", "prefix": "a\x00b"}, "prefix"),
        ("/api/search", {"q": "x", "type": "jp\x00g"}, "type"),
        ("/api/search", {"q": "x", "anything_else": "\x00"}, "anything_else"),
        ("/api/similar", {"key": "photos/\x00a.jpg"}, "key"),
        ("/api/recent", {"collection": "pho\x00tos"}, "collection"),
        ("/api/stats", {"collection": "\x00"}, "collection"),
        ("/api/search", {"q": "x", "limit": str(2**63)}, "limit"),
        ("/api/search", {"q": "x", "limit": "-" + "9" * 400}, "limit"),
        ("/api/recent", {"limit": "1" + "0" * 30}, "limit"),
        ("/api/search", {"q": "x", "min_score": "nan"}, "min_score"),
        ("/api/search", {"q": "x", "min_score": "inf"}, "min_score"),
        ("/api/search", {"q": "x", "min_score": "-Infinity"}, "min_score"),
        ("/api/similar", {"key": "photos/a.jpg", "min_score": "1e999"}, "min_score"),
        ("/api/search", {"q": "x", "cursor": cursor_of({"k": "v", "d": 0.5, "i": 2**63})}, "cursor"),
        ("/api/search", {"q": "x", "cursor": cursor_of({"k": "v", "d": 0.5, "i": -(2**63) - 1})}, "cursor"),
        ("/api/search", {"q": "x", "cursor": cursor_of({"k": "v", "d": 0.5, "i": True})}, "cursor"),
        ("/api/search", {"q": "x", "cursor": cursor_of({"k": "v", "d": float("nan"), "i": 1})}, "cursor"),
        ("/api/search", {"q": "x", "cursor": cursor_of({"k": "v", "d": float("inf"), "i": 1})}, "cursor"),
        ("/api/search", {"q": "x", "cursor": base64.urlsafe_b64encode(b"[" * 5000).decode()}, "cursor"),
        ("/api/recent", {"cursor": cursor_of({"k": "r", "t": None, "i": 10**30})}, "cursor"),
        ("/api/similar", {"key": "x" * (MAX_KEY_BYTES + 1)}, "key"),
        ("/api/similar", {"key": "é" * (MAX_KEY_BYTES // 2) + "x"}, "key"),
        ("/api/search", {"q": "x", "prefix": "p" * (MAX_KEY_BYTES + 1)}, "prefix"),
    ],
)
def test_values_postgres_cannot_take_answer_400_naming_the_parameter(
    hostile: World, path: str, params: dict[str, str], named: str
) -> None:
    assert_refused(hostile.client.get(path, params=params), 400, "bad_parameter", named)


def test_a_parameter_a_route_adds_later_is_checked_by_its_type() -> None:
    """Routes declare no bounds of their own here: the router's check refuses what PostgreSQL would."""
    router = APIRouter(prefix="/api", dependencies=[Depends(check_request)])

    @router.get("/probe/{name}")
    def probe(name: str, level: int | None = None, cutoff: float | None = None,
              years: Annotated[list[int], Query()] = [], flag: bool = False) -> dict[str, Any]:  # noqa: B006
        return {"name": name, "level": level, "cutoff": cutoff, "years": years, "flag": flag}

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    client = TestClient(app)
    fine = {"level": str(2**63 - 1), "cutoff": "-0.5", "years": ["2024", str(-(2**63))], "flag": "1"}
    assert client.get("/api/probe/x", params=fine).json() == {
        "name": "x", "level": 2**63 - 1, "cutoff": -0.5, "years": [2024, -(2**63)], "flag": True}
    assert client.get("/api/probe/x", params={"level": "12 apples"}).status_code == 400  # the route's own check
    for params, named in [({"level": str(2**63)}, "level"), ({"years": ["1", "-" + "9" * 25]}, "years"),
                          ({"cutoff": "NaN"}, "cutoff"), ({"cutoff": "-inf"}, "cutoff"), ({"flag": "\x00"}, "flag")]:
        assert_refused(client.get("/api/probe/x", params=params), 400, "bad_parameter", named)
    assert_refused(client.get("/api/probe/a%00b"), 400, "bad_parameter", "name")


def test_a_nul_in_a_parameter_name_or_path_is_refused(hostile: World) -> None:
    assert_refused(hostile.client.get("/api/recent?a%00b=1"), 400, "bad_parameter")
    name = hostile.coll.name
    assert_refused(hostile.client.get(f"/api/images/{name}/photos/a%00.jpg"), 400, "bad_parameter", "key")
    assert_refused(hostile.client.get(f"/api/images/pho%00tos/{'a.jpg'}"), 400, "bad_parameter", "collection")


def test_the_longest_key_works_one_byte_more_is_refused(hostile: World) -> None:
    assert len(LONGEST_KEY.encode()) == MAX_KEY_BYTES
    similar = hostile.client.get("/api/similar", params={"key": LONGEST_KEY, "limit": 2})
    assert similar.status_code == 200 and len(similar.json()["items"]) == 2
    found = hostile.client.get("/api/search", params={"q": "x", "prefix": LONGEST_KEY}).json()["items"]
    assert [item["key"] for item in found] == [LONGEST_KEY]
    image = hostile.client.get(f"/api/images/{hostile.coll.name}/{LONGEST_KEY}", follow_redirects=False)
    assert image.status_code == 307 and "X-Amz-Signature=" in image.headers["location"]
    too_long = hostile.client.get(f"/api/images/{hostile.coll.name}/{LONGEST_KEY}x", follow_redirects=False)
    assert_refused(too_long, 400, "bad_parameter", "key")


# ---- path traversal: nothing outside the catalogue is signed or served --------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/images/{coll}/%2e%2e/%2e%2e/etc/passwd", 404),
        ("/api/images/{coll}/..%2f..%2fetc%2fpasswd", 404),
        ("/api/images/{coll}/%2fetc%2fpasswd", 404),
        ("/api/images/{coll}//etc/passwd", 404),
        ("/api/images/{coll}/photos/%2e%2e/" + OUTSIDE_KEY, 404),
        ("/api/images/{coll}/" + OUTSIDE_KEY, 404),  # in the bucket, but no row: not signed
        ("/api/images/{coll}/" + OUTSIDE_KEY + "?thumbnail=1", 404),
        ("/api/images/%2e%2e/" + OUTSIDE_KEY, 404),
        ("/api/images/%2e%2e%2f{coll}/photos/a.jpg", 404),
        ("/api/recent?collection=../{coll}", 404),
        ("/api/recent?collection=%2fetc%2fpasswd", 404),
        ("/api/similar?key=../photos/a.jpg&collection={coll}", 404),
        ("/api/search?q=similar:../../etc/passwd&collection={coll}", 404),
        ("/%2e%2e/%2e%2e/etc/passwd", 404),
        ("/..%2f..%2f..%2fetc%2fpasswd", 404),
        ("/js/%2e%2e/%2e%2e/%2e%2e/pyproject.toml", 404),
    ],
)
def test_path_traversal_signs_and_serves_nothing(hostile: World, path: str, status: int) -> None:
    response = hostile.client.get(path.format(coll=hostile.coll.name), follow_redirects=False)
    assert_refused(response, status)


# ---- upload abuse --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_kwargs", "status", "named"),
    [
        ({"files": {"file": ("empty.png", b"", "image/png")}}, 400, None),
        ({"content": b"", "headers": {"content-type": "image/png"}}, 400, None),
        ({"files": {"file": ("notes.txt", b"hello, not an image", "text/plain")}}, 415, None),
        ({"files": {"file": ("fake.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png")}}, 415, None),
        ({"content": b"{}", "headers": {"content-type": "application/json"}}, 415, None),
        ({"files": {"file": ("big.png", b"\x89PNG" + b"0" * (MAX_UPLOAD + 1), "image/png")}}, 413, None),
        ({"content": b"\xff\xd8" + b"0" * (MAX_UPLOAD + 1), "headers": {"content-type": "image/jpeg"}}, 413, None),
        ({"files": {"file": ("bomb.png", png_bomb(), "image/png")}}, 413, None),
        ({"files": {"file": ("a.png", png_bytes(synthetic_photo(32, 32)), "image/png")},
          "data": {"note": "a\x00b"}}, 400, "note"),
        ({"files": [("file", ("a.png", b"1", "image/png")), ("file", ("b.png", b"2", "image/png"))]}, 400, None),
        ({"content": b"--x\r\nnot a real form", "headers": {"content-type": "multipart/form-data; boundary=x"}},
         400, None),
        ({"content": b"garbage", "headers": {"content-type": "multipart/form-data"}}, 400, None),
    ],
)
def test_upload_abuse_answers_4xx(hostile: World, request_kwargs: dict[str, Any], status: int,
                                  named: str | None) -> None:
    response = hostile.client.post("/api/search/image", **request_kwargs)
    assert_refused(response, status, named=named)


def test_the_bomb_is_refused_for_its_pixels_not_its_bytes(hostile: World) -> None:
    bomb = png_bomb()
    assert len(bomb) < MAX_UPLOAD  # small on the wire ...
    response = hostile.client.post("/api/search/image", files={"file": ("bomb.png", bomb, "image/png")})
    assert "pixels" in assert_refused(response, 413, "too_large")["message"]  # ... 144 M pixels inside


# ---- object events with keys PostgreSQL cannot store -----------------------------------------------


@pytest.fixture()
def ingestor(settings: Settings, catalog: Catalog, storage: Storage, test_model_dir: Path, bucket: str) -> Ingestor:
    embedder: Embedder = load(str(test_model_dir), settings)
    return Ingestor(settings, catalog, storage, embedder)


def test_event_keys_postgres_cannot_store_are_failed_not_retried(
    ingestor: Ingestor, storage: Storage, catalog: Catalog, bucket: str
) -> None:
    storage.put(bucket, "good.jpg", photo_bytes(5), "image/jpeg")
    now = datetime.now(UTC)
    hostile_keys = ["nul\x00.jpg", "lone-\udc80-surrogate.jpg", "k" * (MAX_KEY_BYTES + 1) + ".jpg"]
    events = [ObjectEvent(bucket, key, "created", "etag", 10, None, now) for key in hostile_keys]
    events += [ObjectEvent(bucket, "nul\x00.jpg", "removed", None, None, None, now),
               ObjectEvent(bucket + "\x00", "elsewhere.jpg", "created", "etag", 10, None, now),
               ObjectEvent(bucket, "good.jpg", "created", None, None, None, now)]
    report = ingestor.process_events(events)
    assert report.errors == {}  # nothing to retry: every message is acknowledged
    failed = {o.key: o.reason for o in report.outcomes if o.outcome == "failed"}
    assert set(failed) == {*hostile_keys, "elsewhere.jpg"}
    assert "NUL" in failed["nul\x00.jpg"] and "surrogate" in failed["lone-\udc80-surrogate.jpg"]
    assert "1,024" in failed[hostile_keys[2]] and "control characters" in failed["elsewhere.jpg"]
    assert report.keys("embedded") == ["good.jpg"]  # the rest of the batch goes on
    table = quote_ident(ingestor.collection_for(bucket).table)
    assert catalog.db.run(f"SELECT key, status FROM {table}") == [["good.jpg", "embedded"]]  # no other row


def test_a_bucket_key_postgres_cannot_store_is_skipped_by_the_sweep(
    ingestor: Ingestor, storage: Storage, catalog: Catalog, bucket: str
) -> None:
    for key in ("nul\x00.jpg", "fine.jpg"):  # S3 (and moto) accept a NUL in a key; PostgreSQL does not
        storage.put(bucket, key, photo_bytes(9), "image/jpeg")
    summary = sweep(ingestor, bucket)
    assert summary.embedded == 1 and summary.skipped == 1 and summary.errors == []
    table = quote_ident(ingestor.collection_for(bucket).table)
    assert catalog.db.run(f"SELECT key, status FROM {table}") == [["fine.jpg", "embedded"]]


def test_a_long_key_still_gets_a_thumbnail_key_s3_accepts(settings: Settings) -> None:
    storage = Storage(settings)
    assert storage.thumbnail_key("a/b.jpg") == ".thumbnails/a/b.jpg.webp"
    long_keys = [LONGEST_KEY, LONGEST_KEY[:-5] + "x.jpg", "x" * 1010 + ".jpg"]
    thumbnails = [storage.thumbnail_key(key) for key in long_keys]
    assert all(len(name.encode()) <= MAX_KEY_BYTES and storage.is_thumbnail(name) for name in thumbnails)
    assert len(set(thumbnails)) == len(long_keys)  # one per key
