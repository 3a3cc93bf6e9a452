"""The search API over HTTP (FastAPI's TestClient, and once through a real uvicorn server) against the
embedded PostgreSQL, with vectors from the test model computed from generated photos."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from shared.api import create_app
from shared.config import Settings, load_settings
from shared.dev.local_services import MotoServer, aws_client, free_port
from shared.embedders import Embedder, load
from shared.embedders.onnx_clip import OnnxClipEmbedder
from shared.events import ObjectEvent
from shared.storage import UrlSigner
from shared.store.catalog import Catalog, Collection
from shared.store.db import quote_ident
from shared.store.tables import faces_table
from shared.store.vectors import vector_literal
from tests.fixtures.model import synthetic_photo
from tests.fixtures.services import unique_name

BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def add_images(
    catalog: Catalog, coll: Collection, embedder: Embedder, keys: list[str], *, seed: int, day: int = 0
) -> dict[str, np.ndarray]:
    """Embed generated photos with the test model and store them as embedded rows; key -> vector."""
    images = [synthetic_photo(64, 48, seed=seed + i) for i in range(len(keys))]
    vectors = embedder.embed_images(images)
    for i, (key, vector) in enumerate(zip(keys, vectors, strict=True)):
        etag = f"etag-{seed + i}"
        catalog.record_event(coll, ObjectEvent(coll.bucket, key, "created", etag=etag, size=1000 + i))
        assert catalog.store_embedding(
            coll, key, etag, vector, model_id=embedder.model_id, width=64, height=48, size=1000 + i,
            content_type="image/png" if key.endswith(".png") else "image/jpeg",
            last_modified=BASE_TIME + timedelta(days=day, minutes=i),
        )
    return dict(zip(keys, vectors, strict=True))


@dataclass
class World:
    settings: Settings
    catalog: Catalog
    embedder: Embedder
    coll: Collection
    vectors: dict[str, np.ndarray]
    client: TestClient


@pytest.fixture(scope="module")
def world(pg_url: str, moto_server: MotoServer, model_dir: Path) -> Iterator[World]:
    bucket = unique_name("api")
    settings = load_settings(
        database_url=pg_url, bucket=bucket, model=str(model_dir), s3_endpoint_url=moto_server.endpoint,
        s3_access_key_id="test", s3_secret_access_key="test", max_upload_bytes=200_000,
    )
    catalog = Catalog.from_url(pg_url)
    embedder = load(str(model_dir), settings)
    coll = catalog.ensure_collection(bucket, embedder.model_id, embedder.dim)
    # 40 common keys, 10 rare ones under "rare/": a prefix filter must dig past the common ones.
    keys = [f"photos/{i:03d}.jpg" for i in range(30)] + [f"png/{i:03d}.png" for i in range(10)]
    vectors = add_images(catalog, coll, embedder, keys, seed=0)
    vectors |= add_images(catalog, coll, embedder, [f"rare/{i:03d}.jpg" for i in range(10)], seed=100, day=30)
    app = create_app(settings, catalog=catalog, models=embedder)
    with TestClient(app) as client:
        yield World(settings, catalog, embedder, coll, vectors, client)
    catalog.db.close()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]


# ---- search ------------------------------------------------------------------------------------------


def test_text_search_scores_are_cosine_similarities_best_first(world: World) -> None:
    response = world.client.get("/api/search", params={"q": "a red ball", "limit": 12})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "next_cursor", "took_ms", "model", "collection", "query", "mode", "sort", "cutoff",
                         "hidden", "cutoff_score"}
    assert body["model"] == world.embedder.model_id and body["collection"] == world.coll.name
    assert body["took_ms"] > 0 and body["next_cursor"]
    items = body["items"]
    assert len(items) == 12
    assert set(items[0]) == {"key", "score", "url", "thumbnail_url", "width", "height", "size",
                             "last_modified", "content_type", "taken_at", "camera", "location", "collapsed", "text",
                             "place", "tags", "caption", "people", "matched"}
    query = world.embedder.embed_texts(["a red ball"])[0]
    expected = sorted(world.vectors, key=lambda k: -cosine(query, world.vectors[k]))[:12]
    assert [item["key"] for item in items] == expected
    for item in items:  # halfvec keeps ~3 significant digits
        assert item["score"] == pytest.approx(cosine(query, world.vectors[item["key"]]), abs=5e-3)
    first = items[0]
    assert first["width"] == 64 and first["height"] == 48 and first["size"] >= 1000
    assert datetime.fromisoformat(first["last_modified"]) >= BASE_TIME
    assert ".thumbnails/" in first["thumbnail_url"] and "X-Amz-Signature=" in first["url"]


def test_min_score_cuts_off_weak_matches(world: World) -> None:
    everything = world.client.get("/api/search", params={"q": "sunset", "limit": 100}).json()["items"]
    cutoff = everything[len(everything) // 3]["score"]
    kept = world.client.get("/api/search", params={"q": "sunset", "limit": 100, "min_score": cutoff}).json()
    assert 0 < len(kept["items"]) < len(everything)
    assert all(item["score"] >= cutoff - 1e-6 for item in kept["items"])
    none = world.client.get("/api/search", params={"q": "sunset", "min_score": 1.0}).json()
    assert none["items"] == [] and none["next_cursor"] is None


def test_prefix_filter_still_fills_the_page(world: World) -> None:
    # 3,000 rows, 1 in 20 under "rare/", ef_search 1: every page of six is still full of rare rows. (Once
    # searches read a list of VECTOR_DEPTH rows, ef_search follows the list's depth, so this passes with
    # hnsw.iterative_scan off too: it guards the filter's pages, not the iterative scan itself.)
    catalog, embedder = world.catalog, world.embedder
    coll = catalog.ensure_collection(unique_name("crowd"), embedder.model_id, embedder.dim)
    rng = np.random.default_rng(1)
    base = rng.normal(size=(300, embedder.dim)).astype(np.float32)  # 300 clusters of 10 (no need to embed them)
    vectors = np.repeat(base, 10, axis=0) + rng.normal(0, 0.05, size=(3000, base.shape[1])).astype(np.float32)
    keys = [f"rare/{i:04d}.jpg" if i % 20 == 0 else f"common/{i:04d}.jpg" for i in range(3000)]
    catalog.db.run(
        f"""INSERT INTO {quote_ident(coll.table)} (key, status, embedding)
            SELECT k, 'embedded', CAST(e AS halfvec)
            FROM unnest(CAST(:keys AS text[]), CAST(:vecs AS text[])) AS u(k, e)""",
        keys=keys, vecs=[vector_literal(v / np.linalg.norm(v)) for v in vectors],
    )
    catalog.db.run(f"ANALYZE {quote_ident(coll.table)}")
    app = create_app(world.settings.model_copy(update={"hnsw_ef_search": 1}),
                     catalog=world.catalog, models=world.embedder)
    seen: list[str] = []
    with TestClient(app) as client:
        cursor = None
        for _ in range(3):
            params = {"q": "green field", "prefix": "rare/", "limit": 6, "collection": coll.name}
            page = client.get("/api/search", params=params | ({"cursor": cursor} if cursor else {})).json()
            assert len(page["items"]) == 6
            seen += [item["key"] for item in page["items"]]
            cursor = page["next_cursor"]
    assert all(key.startswith("rare/") for key in seen) and len(set(seen)) == 18


def test_type_and_date_filters(world: World) -> None:
    pngs = world.client.get("/api/search", params={"q": "x", "type": "png", "limit": 50}).json()["items"]
    assert len(pngs) == 10 and {item["content_type"] for item in pngs} == {"image/png"}
    after = (BASE_TIME + timedelta(days=10)).isoformat()
    recent = world.client.get("/api/search", params={"q": "x", "after": after, "limit": 50}).json()["items"]
    assert sorted(item["key"] for item in recent) == sorted(k for k in world.vectors if k.startswith("rare/"))
    before = world.client.get(
        "/api/search", params={"q": "x", "before": "2024-01-01T00:05:00", "type": "image/jpeg", "limit": 50}
    ).json()["items"]
    assert sorted(item["key"] for item in before) == [f"photos/{i:03d}.jpg" for i in range(5)]


def test_search_pages_have_no_duplicates_or_gaps_while_rows_are_added(world: World) -> None:
    catalog, embedder = world.catalog, world.embedder
    coll = catalog.ensure_collection(unique_name("paging"), embedder.model_id, embedder.dim)
    originals = add_images(catalog, coll, embedder, [f"p/{i:02d}.jpg" for i in range(23)], seed=300)
    seen: list[str] = []
    cursor = None
    for page_number in range(20):
        params = {"q": "mountains", "collection": coll.name, "limit": 5}
        if cursor:
            params["cursor"] = cursor
        body = world.client.get("/api/search", params=params).json()
        seen += [item["key"] for item in body["items"]]
        scores = [item["score"] for item in body["items"]]
        assert scores == sorted(scores, reverse=True)
        add_images(catalog, coll, embedder, [f"new/{page_number}.jpg"], seed=400 + page_number)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "a key came twice"
    assert set(originals) <= set(seen), "a key present from the start was skipped"


def test_similar_excludes_the_image_itself(world: World) -> None:
    key = "photos/007.jpg"
    body = world.client.get("/api/similar", params={"key": key, "limit": 10}).json()
    keys = [item["key"] for item in body["items"]]
    assert key not in keys and len(keys) == 10
    target = world.vectors[key]
    expected = sorted((k for k in world.vectors if k != key), key=lambda k: -cosine(target, world.vectors[k]))
    assert keys == expected[:10]
    same = world.client.get("/api/search", params={"q": f"similar:{key}", "limit": 10}).json()
    assert [item["key"] for item in same["items"]] == keys
    assert [item["score"] for item in same["items"]] == [item["score"] for item in body["items"]]


def test_similar_is_one_statement_and_its_pages_are_stable_without_duplicates_or_gaps(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog, embedder = world.catalog, world.embedder
    coll = catalog.ensure_collection(unique_name("similar-pages"), embedder.model_id, embedder.dim)
    add_images(catalog, coll, embedder, [f"s/{i:02d}.jpg" for i in range(17)], seed=500)
    # As after its first face (faces.store_faces): the page's rows carry their people.
    catalog.db.run("UPDATE ib_collections SET faces_found = true WHERE name = :name", name=coll.name)
    params = {"key": "s/00.jpg", "collection": coll.name, "cutoff": "none"}
    whole = [item["key"] for item in world.client.get("/api/similar", params=params | {"limit": 50}).json()["items"]]
    assert sorted(whole) == [f"s/{i:02d}.jpg" for i in range(1, 17)]
    statements: list[str] = []

    def recording(run: Callable[..., object]) -> Callable[..., object]:
        def recording_run(db: object, sql: str, **values: object) -> object:
            statements.append(sql)
            return run(db, sql, **values)
        return recording_run

    for name in ("run", "run_prepared"):  # every statement, unnamed or named
        monkeypatch.setattr(type(catalog.db), name, recording(getattr(type(catalog.db), name)))
    seen: list[str] = []
    cursor = None
    for page_number in range(10):
        statements.clear()
        body = world.client.get("/api/similar", params=params | {"limit": 5} | ({"cursor": cursor} if cursor else {}))
        assert body.status_code == 200, body.text
        # The registry read, then the page in one statement: the list, the page's rows with the people in
        # them, the newest row id.
        searched = [sql for sql in statements if coll.table in sql]
        assert len(statements) == 2 and len(searched) == 1 and faces_table(coll.table) in searched[0], statements
        seen += [item["key"] for item in body.json()["items"]]
        # A copy of the image searched by would rank first, if a later page saw it.
        add_images(catalog, coll, embedder, [f"new/{page_number}.jpg"], seed=500)
        cursor = body.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == whole, "pages differ from the one-page ranking: a duplicate, a gap or a new row"


def test_search_by_uploaded_image_finds_the_same_image(world: World) -> None:
    upload = png_bytes(synthetic_photo(64, 48, seed=12))  # the image behind photos/012.jpg
    response = world.client.post("/api/search/image", params={"limit": 3},
                                 files={"file": ("query.png", upload, "image/png")})
    assert response.status_code == 200
    items = response.json()["items"]
    assert items[0]["key"] == "photos/012.jpg" and items[0]["score"] > 0.99
    raw = world.client.post("/api/search/image", params={"limit": 1}, content=upload,
                            headers={"content-type": "image/png"})
    assert raw.json()["items"][0]["key"] == "photos/012.jpg"


# ---- browse ------------------------------------------------------------------------------------------


def test_recent_keyset_pages_are_stable_while_rows_are_added(world: World) -> None:
    catalog, embedder = world.catalog, world.embedder
    coll = catalog.ensure_collection(unique_name("recent"), embedder.model_id, embedder.dim)
    originals = add_images(catalog, coll, embedder, [f"r/{i:02d}.jpg" for i in range(17)], seed=500)
    seen: list[dict] = []
    cursor = None
    for page_number in range(20):
        params = {"collection": coll.name, "limit": 4} | ({"cursor": cursor} if cursor else {})
        body = world.client.get("/api/recent", params=params).json()
        assert set(body) == {"items", "next_cursor", "collection"}
        seen += body["items"]
        # Newer and older rows arrive meanwhile (an upload, a late backfill).
        add_images(catalog, coll, embedder, [f"newer/{page_number}.jpg"], seed=600 + page_number, day=5)
        add_images(catalog, coll, embedder, [f"older/{page_number}.jpg"], seed=700 + page_number, day=-5)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    keys = [item["key"] for item in seen]
    assert len(keys) == len(set(keys)), "a key came twice"
    assert set(originals) <= set(keys)
    stamps = [item["last_modified"] for item in seen]
    assert stamps == sorted(stamps, reverse=True)
    assert all(item["score"] is None for item in seen)


def test_image_redirects_to_a_working_presigned_url(world: World, moto_server: MotoServer) -> None:
    s3 = aws_client("s3", moto_server.endpoint)
    s3.create_bucket(Bucket=world.coll.bucket)
    s3.put_object(Bucket=world.coll.bucket, Key="photos/001.jpg", Body=b"original bytes")
    response = world.client.get(f"/api/images/{world.coll.name}/photos/001.jpg", follow_redirects=False)
    assert response.status_code == 307
    assert httpx.get(response.headers["location"]).content == b"original bytes"  # the signature is valid
    thumb = world.client.get(f"/api/images/{world.coll.name}/photos/001.jpg", params={"thumbnail": 1},
                             follow_redirects=False)
    assert urlsplit(thumb.headers["location"]).path.endswith("/.thumbnails/photos/001.jpg.webp")
    missing = world.client.get(f"/api/images/{world.coll.name}/nope.jpg", follow_redirects=False)
    assert missing.status_code == 404 and error_of(missing)["code"] == "unknown_key"


def test_signer_matches_boto3(world: World) -> None:
    import boto3
    from botocore.config import Config

    settings = world.settings.model_copy(update={"presign_expiry_seconds": 900})
    client = boto3.client(
        "s3", endpoint_url=settings.s3_endpoint_url, region_name="us-east-1", aws_access_key_id="test",
        aws_secret_access_key="test", config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    signer = UrlSigner(settings)
    for key in ("dir/a b+c/é~(1).jpg", "photos/2019/IMG_0001-x.jpg"):  # quoted, and as it is
        expected = client.generate_presigned_url("get_object", Params={"Bucket": "b-1", "Key": key}, ExpiresIn=900)
        # Sign at boto3's own timestamp: the URLs must then agree byte for byte.
        stamp = parse_qs(urlsplit(expected).query)["X-Amz-Date"][0]
        signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        assert signer.url("b-1", key, now=signed_at) == expected
    public = UrlSigner(settings.model_copy(update={"public_base_url": "https://cdn.example/"}))
    assert public.url("b-1", "a b.jpg") == "https://cdn.example/a%20b.jpg"
    assert parse_qs(urlsplit(expected).query)["X-Amz-Expires"] == ["900"]


def test_role_credentials_are_resolved_once_and_sign_with_their_token(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without configured keys the signer uses boto3's default chain (a Lambda role): resolving it took 16 ms, so
    it is resolved once, and botocore refreshes what it found."""
    import shared.storage

    for name, value in {"AWS_ACCESS_KEY_ID": "ROLEKEY", "AWS_SECRET_ACCESS_KEY": "role-secret",
                        "AWS_SESSION_TOKEN": "role/token+1"}.items():
        monkeypatch.setenv(name, value)
    sessions = []
    real_session = shared.storage.boto3.Session

    def counted_session(*args: object, **kwargs: object) -> object:
        sessions.append(1)
        return real_session(*args, **kwargs)

    monkeypatch.setattr(shared.storage.boto3, "Session", counted_session)
    signer = UrlSigner(world.settings.model_copy(update={"s3_access_key_id": None, "s3_secret_access_key": None}))
    urls = [signer.url("b-1", f"p/{i}.jpg") for i in range(5)]
    query = parse_qs(urlsplit(urls[0]).query)
    assert query["X-Amz-Security-Token"] == ["role/token+1"] and query["X-Amz-Credential"][0].startswith("ROLEKEY/")
    assert len(set(urls)) == 5 and len(sessions) == 1


def test_an_image_keeps_its_url_for_a_quarter_of_its_lifetime(world: World) -> None:
    """Within a window (a quarter of the lifetime) a key gets the same URL, so a browser keeps what it loaded; the
    URL is signed at the window's start, so it has at least three quarters of its lifetime left when handed out."""
    signer = UrlSigner(world.settings.model_copy(update={"presign_expiry_seconds": 3600}))
    start = 1_800_000_000 // 900 * 900  # a window's first second

    def url_at(seconds: int, key: str = "a b.jpg") -> str:
        signer.clock = lambda: start + seconds
        return signer.url("b-1", key)

    first = url_at(0)
    signed = datetime.strptime(parse_qs(urlsplit(first).query)["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
    assert signed.replace(tzinfo=UTC).timestamp() == start
    assert first == signer.presign("b-1", "a b.jpg", now=datetime.fromtimestamp(start, UTC))  # a real signature
    assert url_at(899) == first and url_at(600, "other.jpg") != first
    later = url_at(900)  # the next window: signed again, at its start
    assert later != first and parse_qs(urlsplit(later).query)["X-Amz-Date"] == [
        datetime.fromtimestamp(start + 900, UTC).strftime("%Y%m%dT%H%M%SZ")]


# ---- status ------------------------------------------------------------------------------------------


def test_collections_and_stats_count_by_status(world: World) -> None:
    catalog, embedder = world.catalog, world.embedder
    coll = catalog.ensure_collection(unique_name("stats"), embedder.model_id, embedder.dim)
    add_images(catalog, coll, embedder, ["a.jpg", "b.jpg"], seed=800)
    catalog.record_event(coll, ObjectEvent(coll.bucket, "pending.jpg", "created", etag="e1", size=5))
    catalog.record_event(coll, ObjectEvent(coll.bucket, "bad.jpg", "created", etag="e2", size=7))
    catalog.mark_failed(coll, "bad.jpg", "e2", "corrupt")
    stats = world.client.get("/api/stats", params={"collection": coll.name}).json()
    assert stats["collection"] == coll.name and stats["model"] == embedder.model_id
    assert stats["counts"] == {"embedded": 2, "pending": 1, "failed": 1}
    assert stats["bytes"] == 1000 + 1001 + 5 + 7 and stats["last_update"]
    listing = world.client.get("/api/collections").json()
    assert listing["default"] == world.settings.bucket
    entry = next(c for c in listing["collections"] if c["name"] == coll.name)
    assert entry == {"name": coll.name, "bucket": coll.bucket, "model": embedder.model_id, "dim": embedder.dim,
                     "counts": stats["counts"], "bytes": stats["bytes"], "updated_at": stats["last_update"]}
    default = world.client.get("/api/stats").json()
    assert default["collection"] == world.settings.bucket and default["counts"]["embedded"] == 50


def test_health_and_lazy_text_model(world: World, model_dir: Path) -> None:
    # A fresh embedder (load() shares one per process), to watch the text tower load.
    embedder = OnnxClipEmbedder(model_dir, world.settings)
    calls = []
    original = embedder.embed_texts
    embedder.embed_texts = lambda texts, lang="en": (  # type: ignore[method-assign]
        calls.append(list(texts)) or original(texts, lang=lang))
    app = create_app(world.settings, catalog=world.catalog, models=embedder)
    with TestClient(app) as client:
        health = client.get("/api/health").json()
        assert health == {"status": "ok", "database": True, "model": embedder.model_id, "models": [embedder.model_id],
                          "model_loaded": {"visual": False, "textual": False}, "test_model": True}
        client.get("/api/similar", params={"key": "photos/001.jpg"}).raise_for_status()
        assert embedder.loaded()["textual"] is False  # no text query yet, no text model
        for _ in range(3):  # the same text, again and again on other pages: encoded once
            client.get("/api/search", params={"q": "Dog ", "limit": 5}).raise_for_status()
        assert calls == [["Dog"]]
        assert client.get("/api/health").json()["model_loaded"]["textual"] is True
        assert client.get("/docs").status_code == 200
        assert "/api/search" in client.get("/openapi.json").json()["paths"]
        gallery = client.get("/")
        assert gallery.status_code == 200 and "<html" in gallery.text.lower()


def test_openapi_documents_every_answer(world: World) -> None:
    paths = world.client.get("/openapi.json").json()["paths"]
    operations = [(f"{method.upper()} {path}", operation) for path, methods in paths.items()
                  if path.startswith("/api/") for method, operation in methods.items()]
    assert len(operations) == 19
    for name, operation in operations:
        responses = operation["responses"]
        assert operation["description"], name  # the route's docstring
        if "307" in responses:  # the image redirect: no body, the answer is its Location
            assert responses["307"]["headers"]["Location"]["schema"], name
        elif "204" in responses:  # a deletion: no body
            assert "content" not in responses["204"], name
        else:
            answer = responses.get("200") or responses["201"]  # 201: a saved search created
            assert answer["content"]["application/json"]["schema"]["$ref"], name
        assert "422" not in responses, name  # a bad parameter answers 400
        errors = [status for status in responses if status.startswith("4")]
        assert errors or name == "GET /api/health", name
        for status in errors:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema["$ref"].endswith("/ErrorBody"), (name, status)


# ---- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"q": "x", "limit": 0}, "limit"),
        ({"q": "x", "limit": "many"}, "limit"),
        ({"q": "x", "min_score": 2}, "min_score"),
        ({"q": "x", "after": "yesterday"}, "after"),
        ({"q": "x", "after": "2024-02-01", "before": "2024-01-01"}, "after"),
        ({"q": "x", "cursor": "not-a-cursor"}, "cursor"),
        ({"q": "   "}, "q"),
        ({}, "q"),
    ],
)
def test_bad_parameters_answer_400_naming_the_parameter(world: World, params: dict, named: str) -> None:
    response = world.client.get("/api/search", params=params)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "bad_parameter" and f"'{named}'" in error["message"]


def test_a_recent_cursor_is_refused_by_search(world: World) -> None:
    cursor = world.client.get("/api/recent", params={"limit": 1}).json()["next_cursor"]
    response = world.client.get("/api/search", params={"q": "x", "cursor": cursor})
    assert response.status_code == 400 and "'cursor'" in error_of(response)["message"]


def test_not_found_answers(world: World) -> None:
    unknown = world.client.get("/api/search", params={"q": "x", "collection": "no-such-bucket"})
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "unknown_collection"
    assert "no-such-bucket" in error_of(unknown)["message"]
    key = world.client.get("/api/similar", params={"key": "missing.jpg"})
    assert key.status_code == 404 and "missing.jpg" in error_of(key)["message"]
    route = world.client.get("/api/nothing-here")
    assert route.status_code == 404 and error_of(route)["code"] == "not_found"


def test_collection_of_a_model_not_deployed_answers_409(world: World) -> None:
    other = world.catalog.ensure_collection(unique_name("clip-l"), "openai/ViT-L-14", 768)
    upload = world.client.post("/api/search/image", params={"collection": other.name},
                               files={"file": ("q.png", png_bytes(synthetic_photo(32, 32)), "image/png")})
    for response in (world.client.get("/api/search", params={"collection": other.name, "q": "cat"}), upload):
        assert response.status_code == 409 and error_of(response)["code"] == "model_not_deployed"
        message = error_of(response)["message"]
        assert "openai/ViT-L-14" in message and world.embedder.model_id in message and "IB_MODEL=" in message
    # Like a stored image needs no model: the stored vectors answer (here: no such image).
    similar = world.client.get("/api/similar", params={"collection": other.name, "key": "a.jpg"})
    assert similar.status_code == 404 and error_of(similar)["code"] == "unknown_key"
    # Browsing needs no model: it still works.
    assert world.client.get("/api/recent", params={"collection": other.name}).status_code == 200


def test_upload_errors(world: World) -> None:
    big = world.client.post("/api/search/image", files={"file": ("big.png", b"\x89PNG" + b"0" * 300_000)})
    assert big.status_code == 413 and "IB_MAX_UPLOAD_BYTES" in error_of(big)["message"]
    text = world.client.post("/api/search/image", files={"file": ("notes.txt", b"hello, not an image")})
    assert text.status_code == 415 and error_of(text)["code"] == "unsupported_media_type"
    wrong_type = world.client.post("/api/search/image", content=b"{}", headers={"content-type": "application/json"})
    assert wrong_type.status_code == 415
    no_file = world.client.post("/api/search/image", files={"other": ("a.png", b"x")})
    assert no_file.status_code == 400 and "'file'" in error_of(no_file)["message"]


def test_database_down_answers_503_with_retry_after(world: World) -> None:
    dead = Catalog.from_url(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    app = create_app(world.settings, catalog=dead, models=world.embedder)
    with TestClient(app) as client:
        response = client.get("/api/search", params={"q": "x"})
        assert response.status_code == 503 and response.headers["retry-after"].isdigit()
        assert error_of(response)["code"] == "database_unavailable"
        assert "Traceback" not in response.text
        health = client.get("/api/health").json()
        assert health["status"] == "degraded" and health["database"] is False


def test_api_key_and_cors(world: World) -> None:
    settings = world.settings.model_copy(update={"api_key": "s3cret", "cors_origins": ["https://gallery.example"]})
    app = create_app(settings, catalog=world.catalog, models=world.embedder)
    with TestClient(app) as client:
        missing = client.get("/api/recent", headers={"origin": "https://gallery.example"})
        assert missing.status_code == 401 and error_of(missing)["code"] == "unauthorized"
        assert missing.headers["access-control-allow-origin"] == "https://gallery.example"
        assert client.get("/api/recent", headers={"x-api-key": "wrong"}).status_code == 401
        assert client.get("/api/recent", headers={"x-api-key": "s3cret"}).status_code == 200
        assert client.get("/api/stats", headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/api/health").status_code == 200  # probes need no key
        preflight = client.options("/api/search", headers={
            "origin": "https://gallery.example", "access-control-request-method": "GET",
            "access-control-request-headers": "x-api-key"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://gallery.example"
        stranger = client.options("/api/search", headers={
            "origin": "https://evil.example", "access-control-request-method": "GET"})
        assert "access-control-allow-origin" not in stranger.headers


def test_through_a_real_uvicorn_server(world: World) -> None:
    import uvicorn

    port = free_port()
    app = create_app(world.settings, catalog=world.catalog, models=world.embedder)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/health").json()["database"] is True
        body = httpx.get(f"{base}/api/similar", params={"key": "photos/002.jpg", "limit": 4}).json()
        assert len(body["items"]) == 4 and "photos/002.jpg" not in [item["key"] for item in body["items"]]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("path, params", [("/api/similar", {"key": "photos/001.jpg"}),
                                          ("/api/search", {"q": "a photo"}),
                                          ("/api/search", {"q": "similar:photos/001.jpg"})])
def test_a_model_switch_during_a_search_is_answered_again_not_503(
    world: World, monkeypatch: pytest.MonkeyPatch, path: str, params: dict
) -> None:
    """A collection may switch models between reading its registry row and comparing vectors: stored
    vectors and encoded texts are then both stale. The search runs once more on the fresh model."""
    from shared.search import hybrid
    from shared.store.catalog import ModelChanged

    original, calls = hybrid.search, []

    def switched_once(catalog: Catalog, collection: Collection, *args: object, **kwargs: object) -> object:
        calls.append(collection.model_id)
        if len(calls) == 1:
            raise ModelChanged(collection.name, collection.model_id)
        return original(catalog, collection, *args, **kwargs)

    monkeypatch.setattr(hybrid, "search", switched_once)
    response = world.client.get(path, params=params)
    assert response.status_code == 200, response.text
    assert len(calls) == 2 and response.json()["items"]
