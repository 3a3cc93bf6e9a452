"""Duplicates end to end: photos uploaded to moto S3 and ingested by the real pipeline, then grouped
through GET /api/duplicates, and folded in search with collapse=near.

The set (tests/fixtures/photos.py): one photo as JPEG, the same bytes under a second key, a PNG of the
same pixels, a resized re-encode, a 5 % crop, a different photo, and a burst of three frames.

With the random-weight test model, distances are not a real CLIP's: every synthetic photo lies within
~0.08 of every other, so the default thresholds (near 0.01, similar 0.06) would group unlike photos.
What holds on both test exports is measured in tests/fixtures/photos.py: the tests pass thresholds of
0.001 (near) and 0.006 (similar) that fit it, and assert the grouping logic: union-find, the keeper
rule, paging, the per-request and per-deployment thresholds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from shared.api import create_app
from shared.dev.local_services import MotoServer
from shared.events import ObjectEvent
from shared.search import duplicates
from shared.store.catalog import Collection
from shared.store.db import quote_ident
from shared.store.vectors import vector_literal
from tests.fixtures.photos import A_GROUP, BURST_GROUP, TEST_MODEL_NEAR, TEST_MODEL_SIMILAR, duplicate_photos
from tests.fixtures.services import Pipeline, unique_name

NEAR, SIMILAR = TEST_MODEL_NEAR, TEST_MODEL_SIMILAR


@dataclass
class World(Pipeline):
    collection: Collection
    client: TestClient
    reused: list[Any]
    model_inputs: int


@pytest.fixture(scope="module")
def world(pg_url: str, moto_server: MotoServer, test_model_dir: Path) -> Iterator[World]:
    pipeline = Pipeline.start(pg_url, moto_server, test_model_dir, "dups")
    embedder, counted = pipeline.embedder, []
    original = embedder.embed_prepared
    embedder.embed_prepared = lambda inputs: counted.append(len(inputs)) or original(inputs)  # type: ignore
    # One by one: the copy comes after its original is embedded.
    reports = [pipeline.ingestor.process_events([pipeline.put(key, data)])
               for key, data in duplicate_photos().items()]
    embedder.embed_prepared = original  # type: ignore[method-assign]
    reused = [o for report in reports for o in report.outcomes if o.reused_from]
    assert sum(report.summary()["embedded"] for report in reports) == len(duplicate_photos())
    collection = pipeline.catalog.get_collection(pipeline.settings.bucket)
    with TestClient(create_app(pipeline.settings, catalog=pipeline.catalog, models=embedder)) as client:
        yield World(**vars(pipeline), collection=collection, client=client, reused=reused, model_inputs=sum(counted))
    pipeline.catalog.db.close()


def groups(world: World, client: TestClient | None = None, **params: Any) -> list[dict[str, Any]]:
    response = (client or world.client).get("/api/duplicates", params={"limit": 100, **params})
    assert response.status_code == 200, response.text
    return response.json()["groups"]


def key_sets(found: list[dict[str, Any]]) -> list[set[str]]:
    return [{item["key"] for item in group["items"]} for group in found]


def test_the_same_bytes_under_a_new_key_reuse_the_stored_vector(world: World) -> None:
    assert [(o.key, o.reused_from) for o in world.reused] == [("copies/a.jpg", "a.jpg")]
    assert world.model_inputs == len(duplicate_photos()) - 1  # every image but the copy went through the model
    table = quote_ident(world.collection.table)
    vectors = dict(world.catalog.db.run(f"SELECT key, embedding::text FROM {table} WHERE key LIKE '%a.jpg'"))
    assert vectors["copies/a.jpg"] == vectors["a.jpg"]
    # Every image, the copy too, got its nearest neighbours at ingest: nothing is left to find.
    assert duplicates.index_neighbours(world.catalog, world.collection) == 0


def test_exact_duplicates_are_the_same_bytes(world: World) -> None:
    found = groups(world, level="exact")
    assert key_sets(found) == [{"a.jpg", "copies/a.jpg"}]
    assert found[0]["level"] == "exact" and found[0]["keep"] == "a.jpg"  # same pixels and date: shorter key
    assert [item["score"] for item in found[0]["items"]] == [1.0, 1.0]
    response = world.client.get("/api/duplicates", params={"level": "exact", "threshold": 0.01})
    assert response.status_code == 400 and "threshold" in response.json()["error"]["message"]


def test_near_duplicates_join_re_encodes_and_bursts_not_crops_or_other_photos(world: World) -> None:
    found = groups(world, level="near", threshold=NEAR)
    assert key_sets(found) == [A_GROUP, BURST_GROUP]  # biggest first
    a_group, burst = found
    # Most pixels first (a.jpg and a.png are 640x480), then the earliest taken: the PNG of 2020.
    assert a_group["keep"] == "a.png" == a_group["items"][0]["key"]
    assert a_group["items"][-1]["key"] == "a-small.jpg"  # a quarter of the pixels
    assert burst["keep"] == "burst/1.jpg"  # same size: the first frame
    assert all(item["score"] > 1 - NEAR for group in found for item in group["items"])


def test_similar_adds_the_crop_and_the_default_thresholds_are_the_deployments(world: World) -> None:
    assert key_sets(groups(world, level="similar", threshold=SIMILAR)) == [A_GROUP | {"a-crop.jpg"}, BURST_GROUP]
    near = world.client.get("/api/duplicates", params={"level": "near"}).json()
    assert near["threshold"] == 0.01 and near["level"] == "near"
    assert world.client.get("/api/duplicates", params={"level": "similar"}).json()["threshold"] == 0.06
    assert any(keys >= A_GROUP for keys in key_sets(near["groups"]))
    tuned = world.settings.model_copy(update={"duplicates_near_distance": NEAR, "duplicates_similar_distance": SIMILAR})
    with TestClient(create_app(tuned, catalog=world.catalog, models=world.embedder)) as client:
        assert key_sets(groups(world, client, level="near")) == [A_GROUP, BURST_GROUP]
        assert key_sets(groups(world, client, level="similar"))[0] == A_GROUP | {"a-crop.jpg"}


def test_groups_page_biggest_first(world: World) -> None:
    first = world.client.get("/api/duplicates", params={"level": "near", "threshold": NEAR, "limit": 1}).json()
    assert key_sets(first["groups"]) == [A_GROUP] and first["total_groups"] == 2 and first["next_cursor"]
    assert first["waiting"] == 0
    second = world.client.get("/api/duplicates", params={"level": "near", "threshold": NEAR, "limit": 1,
                                                         "cursor": first["next_cursor"]}).json()
    assert key_sets(second["groups"]) == [BURST_GROUP] and second["next_cursor"] is None


@pytest.mark.parametrize(("params", "named"), [
    ({"level": "twins"}, "level"),
    ({"level": "near", "threshold": 0}, "threshold"),
    ({"level": "near", "threshold": 0.2}, "threshold"),  # beyond the neighbours kept (RADIUS)
    ({"level": "near", "cursor": "not-a-cursor"}, "cursor"),
    ({"level": "near", "collection": "no-such-bucket"}, "no-such-bucket"),
])
def test_bad_requests_say_what_is_wrong(world: World, params: dict[str, Any], named: str) -> None:
    response = world.client.get("/api/duplicates", params=params)
    assert response.status_code in (400, 404)
    assert named in response.json()["error"]["message"]


def test_collapse_near_shows_one_image_per_group_on_every_page(world: World) -> None:
    tuned = world.settings.model_copy(update={"duplicates_near_distance": NEAR})
    with TestClient(create_app(tuned, catalog=world.catalog, models=world.embedder)) as client:
        everything = client.get("/api/search", params={"q": "a photo", "limit": 100}).json()["items"]
        assert len(everything) == len(duplicate_photos()) and all(item["collapsed"] is None for item in everything)
        folded = client.get("/api/search", params={"q": "a photo", "limit": 100, "collapse": "near"}).json()["items"]
        shown = {item["key"]: item["collapsed"] for item in folded}
        # One per group, the copy closest to the query (the first of its group in the full ranking).
        rank = [item["key"] for item in everything]
        assert shown == {
            next(key for key in rank if key in A_GROUP): 3, next(key for key in rank if key in BURST_GROUP): 2,
            "a-crop.jpg": 0, "b.jpg": 0,
        }
        assert [item["key"] for item in folded] == [key for key in rank if key in shown]  # order kept
        paged: list[str] = []
        cursor = None
        for _ in range(len(duplicate_photos())):
            page = client.get("/api/search", params={"q": "a photo", "limit": 2, "collapse": "near",
                                                     **({"cursor": cursor} if cursor else {})}).json()
            paged += [item["key"] for item in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert paged == list(shown)  # the same choice whichever page a group's copies fall on
        similar = client.get("/api/similar", params={"key": "b.jpg", "collapse": "near", "limit": 100}).json()
        by_count = sorted((item["collapsed"], item["key"]) for item in similar["items"])  # b.jpg itself left out
        assert [count for count, _ in by_count] == [0, 2, 3] and by_count[0][1] == "a-crop.jpg"
        assert by_count[1][1] in BURST_GROUP and by_count[2][1] in A_GROUP


def test_grouping_matches_an_exact_scan_across_statements(world: World) -> None:
    """3,000 clustered vectors with 60 planted near-duplicate sets: the HNSW grouping (in statements of
    ANCHORS_PER_STATEMENT images) finds exactly the sets an exact O(n^2) scan finds."""
    catalog, rng, dim = world.catalog, np.random.default_rng(7), 256
    collection = catalog.ensure_collection(unique_name("crowd"), "synthetic", dim)
    centres = rng.normal(size=(40, dim))
    vectors = centres[rng.integers(0, 40, 3000)] + rng.normal(0, 0.6, size=(3000, dim))
    for i in range(60):  # pairs and triples of near-copies, spread over the id range
        for j in range(1 + i % 2):
            vectors[i * 49 + j + 1] = vectors[i * 49] + rng.normal(0, 0.002, size=dim)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    catalog.db.run(
        f"""INSERT INTO {quote_ident(collection.table)} (key, status, embedding)
            SELECT 'k' || lpad(i::text, 4, '0'), 'embedded', CAST(e AS halfvec)
            FROM unnest(CAST(:vecs AS text[])) WITH ORDINALITY AS u(e, i)""",
        vecs=[vector_literal(v) for v in vectors],
    )
    catalog.db.run(f"ANALYZE {quote_ident(collection.table)}")
    close = np.argwhere(np.triu(vectors @ vectors.T, 1) >= 1 - 0.01)  # cosine distance <= 0.01
    expected = duplicates.UnionFind()
    for a, b in close:
        expected.union(int(a) + 1, int(b) + 1)
    assert len(expected.sets()) == 60
    found, waiting = duplicates.group_sets(catalog, collection, "near", 0.01)  # lists made by the request
    assert sorted(found) == sorted(expected.sets()) and waiting == 0
    assert duplicates.index_neighbours(catalog, collection) == 0  # every list is stored, none is made twice
    # New content under an old row (new etag and vector): its own list is made again, and the lists of
    # others that still name it are checked against its new vector. Row 2 was a copy of row 1.
    table = quote_ident(collection.table)
    moved = vectors[500] + rng.normal(0, 0.002, size=dim)
    catalog.db.run(f"UPDATE {table} SET etag = 'new', embedding = CAST(:v AS halfvec) WHERE id = 2",
                   v=vector_literal(moved / np.linalg.norm(moved)))
    regrouped, _ = duplicates.group_sets(catalog, collection, "near", 0.01)
    assert [1, 2] not in regrouped and [2, 501] in regrouped
    # Lists of another model (a collection moved) are made again.
    catalog.db.run(f"UPDATE {quote_ident(collection.table + '_near')} SET model_id = 'before' WHERE id <= 10")
    assert duplicates.index_neighbours(catalog, collection) == 10


def test_groups_follow_deletions(world: World) -> None:
    """The cached listing is dropped when the collection changes."""
    catalog, collection, key = world.catalog, world.collection, "copies/a.jpg"
    before = key_sets(groups(world, level="exact"))
    catalog.record_event(collection, ObjectEvent(collection.bucket, key, "removed", event_time=datetime.now(UTC)))
    try:
        assert before == [{"a.jpg", key}] and groups(world, level="exact") == []
    finally:  # uploaded again: its create event brings the row back
        world.ingestor.process_events([world.put(key, duplicate_photos()[key])])
    assert key_sets(groups(world, level="exact")) == before
