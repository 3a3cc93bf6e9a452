"""Places, embedded tags, saved searches and Discover through HTTP: photos with EXIF GPS at known places,
with IPTC keywords and with XMP keywords and captions, uploaded to moto S3 and ingested by the real pipeline
with the test model; found by city and country (query words and the place= filter), by their tags and
caption; saved searches kept, answered live and deleted; Discover's categories counted; the sweep filling
rows from before; hostile input refused with a 4xx naming the problem."""

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
from shared.search.discover import CATEGORIES
from shared.store.catalog import Collection
from shared.store.db import quote_ident
from tests.fixtures.model import synthetic_photo
from tests.fixtures.photos import encode, exif_block
from tests.fixtures.services import Pipeline
from tests.unit.test_photo_tags import alt, app13, bag, iim, xmp_packet

PLACES = {  # key -> GPS position (tests/unit/test_places.py LANDMARKS)
    "trip/eiffel.jpg": (48.8584, 2.2945),
    "trip/louvre.jpg": (48.8606, 2.3376),
    "trip/versailles.jpg": (48.8049, 2.1204),
    "trip/liberty.jpg": (40.6892, -74.0445),
    "trip/shibuya.jpg": (35.6595, 139.7005),
}
IPTC_KEY, XMP_KEY, PLAIN_KEY = "tags/iptc.jpg", "tags/xmp.jpg", "plain/nothing.jpg"
IPTC = iim([(1, 90, b"\x1b%G"), (2, 25, b"lighthouse"), (2, 25, b"Bretagne"),
            (2, 120, "Phare du Créac'h at dusk".encode())])
XMP = xmp_packet(bag("dc:subject", ["marmot", "Alps"]) + alt("dc:description", {"x-default": "A whistling rodent"})
                 + bag("lr:hierarchicalSubject", ["Animals|Mammals"]))


def photo(seed: int, **options: Any) -> bytes:
    return encode(synthetic_photo(160, 120, seed=seed), "JPEG", **options)


def objects() -> dict[str, bytes]:
    found = {key: photo(index, exif=exif_block(gps=gps)) for index, (key, gps) in enumerate(PLACES.items())}
    plain = photo(20)
    found[IPTC_KEY] = plain[:2] + app13(IPTC) + plain[2:]
    found[XMP_KEY] = photo(21, xmp=XMP)
    found[PLAIN_KEY] = photo(22)
    return found


@dataclass
class World(Pipeline):
    collection: Collection
    client: TestClient


@pytest.fixture(scope="module")
def world(pg_url: str, moto_server: MotoServer, test_model_dir: Path) -> Iterator[World]:
    pipeline = Pipeline.start(pg_url, moto_server, test_model_dir, "places")
    report = pipeline.ingestor.process_events([pipeline.put(key, data) for key, data in objects().items()])
    assert report.summary()["embedded"] == len(PLACES) + 3, report.outcomes
    collection = pipeline.catalog.get_collection(pipeline.settings.bucket)
    with TestClient(create_app(pipeline.settings, catalog=pipeline.catalog, models=pipeline.embedder)) as client:
        yield World(**vars(pipeline), collection=collection, client=client)
    pipeline.catalog.db.close()


def get(world: World, path: str, status: int = 200, **params: Any) -> dict[str, Any]:
    response = world.client.get(path, params=params)
    assert response.status_code == status, response.text
    return response.json()


def keys(body: dict[str, Any]) -> set[str]:
    return {item["key"] for item in body["items"]}


def found(world: World, q: str, **params: Any) -> dict[str, dict[str, Any]]:
    body = get(world, "/api/search", q=q, mode="keyword", limit=100, **params)
    return {item["key"]: item for item in body["items"]}


def test_items_carry_their_place(world: World) -> None:
    items = {item["key"]: item for item in get(world, "/api/recent", limit=100)["items"]}
    eiffel = items["trip/eiffel.jpg"]["place"]
    assert (eiffel["city"], eiffel["country"], eiffel["country_code"]) == ("Paris", "France", "FR")
    assert eiffel["state"]  # Île-de-France, as GeoNames spells it
    assert items["trip/liberty.jpg"]["place"]["city"] == "New York City"
    assert items["trip/shibuya.jpg"]["place"]["country"] == "Japan"
    assert items["trip/versailles.jpg"]["place"]["city"] == "Versailles"
    assert items[PLAIN_KEY]["place"] is None and items[IPTC_KEY]["place"] is None


@pytest.mark.parametrize(("q", "expected"), [
    ("paris", {"trip/eiffel.jpg", "trip/louvre.jpg"}),
    ("Paris", {"trip/eiffel.jpg", "trip/louvre.jpg"}),
    ("france", {"trip/eiffel.jpg", "trip/louvre.jpg", "trip/versailles.jpg"}),
    ("new york", {"trip/liberty.jpg"}),
    ("japan", {"trip/shibuya.jpg"}),
    ("tokyo", {"trip/shibuya.jpg"}),
    ("ile de france", {"trip/eiffel.jpg", "trip/louvre.jpg", "trip/versailles.jpg"}),  # accents folded
])
def test_photos_are_found_by_city_state_and_country_words(world: World, q: str, expected: set[str]) -> None:
    items = found(world, q)
    assert set(items) == expected
    assert all(item["matched"] == ["place"] for item in items.values())
    hybrid = get(world, "/api/search", q=q, limit=100)
    assert expected <= keys(hybrid)
    assert all("place" in item["matched"] for item in hybrid["items"] if item["key"] in expected)
    newest = get(world, "/api/search", q=q, limit=100, sort="newest")  # ranked in SQL
    assert expected <= keys(newest)
    assert all("place" in item["matched"] for item in newest["items"] if item["key"] in expected)


@pytest.mark.parametrize("path", ["/api/recent", "/api/search"])
@pytest.mark.parametrize(("place", "expected"), [
    ("paris", {"trip/eiffel.jpg", "trip/louvre.jpg"}),
    ("PARIS", {"trip/eiffel.jpg", "trip/louvre.jpg"}),
    ("France", {"trip/eiffel.jpg", "trip/louvre.jpg", "trip/versailles.jpg"}),
    ("fr", {"trip/eiffel.jpg", "trip/louvre.jpg", "trip/versailles.jpg"}),
    ("ile-de-france", {"trip/eiffel.jpg", "trip/louvre.jpg", "trip/versailles.jpg"}),
    ("Versailles, France", {"trip/versailles.jpg"}),
    ("New York City", {"trip/liberty.jpg"}),
    ("Paris, Japan", set()),
    ("Atlantis", set()),
])
def test_place_filter(world: World, path: str, place: str, expected: set[str]) -> None:
    extra = {"q": "photo", "cutoff": "none"} if path == "/api/search" else {}
    assert keys(get(world, path, place=place, limit=100, **extra)) == expected


@pytest.mark.parametrize("place", [",", " , ", "a,b,c,d,e", "x" * 401, "paris\x00"])
def test_bad_place_is_400_naming_it(world: World, place: str) -> None:
    for path, extra in (("/api/recent", {}), ("/api/search", {"q": "x"})):
        response = world.client.get(path, params={"place": place, **extra})
        assert response.status_code == 400, response.text
        assert "place" in response.json()["error"]["message"]


def test_places_list_most_photos_first(world: World) -> None:
    body = get(world, "/api/places")
    places = body["places"]
    assert places[0]["city"] == "Paris" and places[0]["count"] == 2 and places[0]["country_code"] == "FR"
    assert places[0]["cover"]["key"] in {"trip/eiffel.jpg", "trip/louvre.jpg"}
    assert places[0]["cover"]["thumbnail_url"]
    assert {(entry["city"], entry["count"]) for entry in places[1:]} >= {  # a test may have added Rome
        ("Versailles", 1), ("New York City", 1), ("Tokyo", 1)}
    versailles = next(entry for entry in places if entry["city"] == "Versailles")
    assert keys(get(world, "/api/recent", place=versailles["filter"])) == {"trip/versailles.jpg"}
    assert len(get(world, "/api/places", limit=1)["places"]) == 1
    assert world.client.get("/api/places", params={"limit": 0}).status_code == 400


def test_embedded_tags_and_captions_are_items_and_words(world: World) -> None:
    items = {item["key"]: item for item in get(world, "/api/recent", limit=100)["items"]}
    assert items[IPTC_KEY]["tags"] == ["lighthouse", "Bretagne"]
    assert items[IPTC_KEY]["caption"] == "Phare du Créac'h at dusk"
    assert items[XMP_KEY]["tags"] == ["marmot", "Alps", "Animals", "Mammals"]
    assert items[XMP_KEY]["caption"] == "A whistling rodent"
    assert items[PLAIN_KEY]["tags"] == [] and items[PLAIN_KEY]["caption"] is None
    for q, key in (("lighthouse", IPTC_KEY), ("bretagne", IPTC_KEY), ("creac'h", IPTC_KEY),
                   ("marmot", XMP_KEY), ("alps", XMP_KEY), ("whistling rodent", XMP_KEY), ("mammals", XMP_KEY)):
        items_found = found(world, q)
        assert set(items_found) == {key}, q
        assert items_found[key]["matched"] == ["tag"]


def save(world: World, name: str, query: dict[str, Any]) -> dict[str, Any]:
    created = world.client.post("/api/saved-searches", json={"name": name, "query": query})
    assert created.status_code == 201, created.text
    return created.json()


def test_saved_search_round_trip_answers_live(world: World) -> None:
    paris = save(world, "Paris", {"q": "paris", "mode": "keyword"})
    assert paris["name"] == "Paris" and paris["query"] == {"q": "paris", "mode": "keyword"} and paris["count"] == 2
    rome = save(world, "Rome", {"q": "rome", "mode": "keyword"})
    assert rome["count"] == 0 and rome["cover"] is None
    near = save(world, "Near Paris", {"q": "photo", "place": "Versailles", "cutoff": "none"})
    listed = {entry["id"]: entry for entry in get(world, "/api/saved-searches")["saved_searches"]}
    assert (listed[paris["id"]]["name"], listed[paris["id"]]["count"]) == ("Paris", 2)
    assert listed[paris["id"]]["cover"]["key"] in {"trip/eiffel.jpg", "trip/louvre.jpg"}
    answer = get(world, f"/api/saved-searches/{paris['id']}")
    assert keys(answer) == {"trip/eiffel.jpg", "trip/louvre.jpg"} and answer["mode"] == "keyword"
    assert keys(get(world, f"/api/saved-searches/{near['id']}")) == {"trip/versailles.jpg"}
    assert keys(get(world, f"/api/saved-searches/{rome['id']}")) == set()
    # A photo taken in Rome after saving appears in the live answer.
    event = world.put("later/colosseum.jpg", photo(30, exif=exif_block(gps=(41.8902, 12.4922))))
    assert world.ingestor.process_events([event]).summary()["embedded"] == 1
    assert keys(get(world, f"/api/saved-searches/{rome['id']}")) == {"later/colosseum.jpg"}
    for saved_id in (paris["id"], rome["id"], near["id"]):
        assert world.client.delete(f"/api/saved-searches/{saved_id}").status_code == 204
        assert world.client.get(f"/api/saved-searches/{saved_id}").status_code == 404
        assert world.client.delete(f"/api/saved-searches/{saved_id}").status_code == 404
    listed = {entry["id"]: entry for entry in get(world, "/api/saved-searches")["saved_searches"]}
    assert not {paris["id"], rome["id"], near["id"]} & set(listed)


@pytest.mark.parametrize(("body", "named"), [
    ({"name": "x", "query": {"q": ""}}, "q"),
    ({"name": "x", "query": {}}, "q"),
    ({"name": "x", "query": {"q": "a", "mode": "psychic"}}, "mode"),
    ({"name": "x", "query": {"q": "a", "taken_after": "last summer"}}, "taken_after"),
    ({"name": "x", "query": {"q": "a", "place": ","}}, "place"),
    ({"name": "x", "query": {"q": "a", "min_score": 7}}, "min_score"),
    ({"name": "x", "query": {"q": "a", "limit": 5}}, "limit"),
    ({"name": "x", "query": {"q": "similar:trip/eiffel.jpg", "mode": "keyword"}}, "q"),
    ({"name": "x", "query": {"q": "a\x00b"}}, "q"),
    ({"name": "", "query": {"q": "a"}}, "name"),
    ({"name": "x"}, "query"),
    ({"name": "x", "query": "paris"}, "query"),
])
def test_bad_saved_query_is_400_naming_it(world: World, body: dict[str, Any], named: str) -> None:
    response = world.client.post("/api/saved-searches", json=body)
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]["message"]


@pytest.mark.parametrize(("path", "status"), [
    ("/api/saved-searches/999999", 404), ("/api/saved-searches/abc", 400),
    (f"/api/saved-searches/{2**70}", 400), ("/api/saved-searches/0", 400),
])
def test_unknown_or_bad_saved_search_id(world: World, path: str, status: int) -> None:
    assert world.client.get(path).status_code == status
    assert world.client.delete(path).status_code == status


def test_saved_search_writes_need_the_api_key_when_one_is_set(world: World) -> None:
    settings = world.settings.model_copy(update={"api_key": "s3cret"})
    with TestClient(create_app(settings, catalog=world.catalog, models=world.embedder)) as client:
        body = {"name": "keyed", "query": {"q": "paris"}}
        assert client.post("/api/saved-searches", json=body).status_code == 401
        created = client.post("/api/saved-searches", json=body, headers={"x-api-key": "s3cret"})
        assert created.status_code == 201
        path = f"/api/saved-searches/{created.json()['id']}"
        assert client.delete(path).status_code == 401
        assert client.delete(path, headers={"authorization": "Bearer s3cret"}).status_code == 204


def test_discover_lists_its_categories_with_stored_counts(world: World) -> None:
    first = get(world, "/api/discover")
    assert [category["name"] for category in first["categories"]] == [category.name for category in CATEGORIES]
    for category in first["categories"]:
        assert 0 <= category["count"] <= 1000 and category["counted_at"]
        assert (category["cover"] is None) == (category["count"] == 0)
    assert any(category["count"] > 0 for category in first["categories"])
    def stored(body: dict[str, Any]) -> list[tuple[Any, ...]]:  # cover URLs are signed anew each time
        return [(c["name"], c["count"], c["counted_at"], c["cover"] and c["cover"]["key"]) for c in body["categories"]]

    assert stored(get(world, "/api/discover")) == stored(first)  # read back from the table, not counted again
    category = first["categories"][0]
    search = get(world, "/api/search", q=category["query"], mode="semantic", limit=100)
    assert len(search["items"]) == min(category["count"], 100)


def test_the_sweep_fills_places_and_tags_of_older_rows_and_recounts(world: World) -> None:
    catalog, table = world.catalog, quote_ident(world.collection.table)
    get(world, "/api/discover")
    before = {row[0]: row[1] for row in catalog.db.run("SELECT name, counted_at FROM ib_saved_searches "
                                                       "WHERE collection = :c", c=world.collection.name)}
    # As a release before this one left them: no place looked up, no tags read.
    catalog.db.run(f"""UPDATE {table} SET city = NULL, state = NULL, country = NULL, country_code = NULL,
                           place_names = NULL, place_words = NULL, tags = NULL, caption = NULL, tag_words = NULL""")
    assert found(world, "paris") == {} and found(world, "marmot") == {}
    sweep(world.ingestor, world.collection.name)
    assert set(found(world, "paris")) == {"trip/eiffel.jpg", "trip/louvre.jpg"}
    assert set(found(world, "marmot")) == {XMP_KEY}
    items = {item["key"]: item for item in get(world, "/api/recent", limit=100)["items"]}
    assert items["trip/shibuya.jpg"]["place"]["city"] == "Tokyo" and items[IPTC_KEY]["tags"][0] == "lighthouse"
    assert items[PLAIN_KEY]["tags"] == [] and items[PLAIN_KEY]["place"] is None
    rows = catalog.db.run(f"SELECT count(*) FROM {table} WHERE tags IS NULL OR "
                          "(latitude IS NOT NULL AND place_words IS NULL)")
    assert rows[0][0] == 0
    after = {row[0]: row[1] for row in catalog.db.run("SELECT name, counted_at FROM ib_saved_searches "
                                                      "WHERE collection = :c", c=world.collection.name)}
    assert all(after[name] > before[name] for name in before)


def test_an_older_table_gets_the_new_columns_and_a_keyword_index_that_reads_them(world: World) -> None:
    catalog = world.catalog
    collection = catalog.open_collection("places-old-" + world.collection.name, world.embedder.model_id,
                                         world.embedder.dim)
    table = quote_ident(collection.table)
    # As the release before this one made it: no place or tag columns, an index over three sources only.
    catalog.db.run(f"ALTER TABLE {table} DROP COLUMN search_tsv, DROP COLUMN city, DROP COLUMN state, "
                   "DROP COLUMN country, DROP COLUMN country_code, DROP COLUMN place_names, DROP COLUMN place_words, "
                   "DROP COLUMN tags, DROP COLUMN caption, DROP COLUMN tag_words")
    catalog.db.run(f"ALTER TABLE {table} ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS "
                   "(setweight(to_tsvector('simple', coalesce(name_words, '')), 'A')) STORED")
    catalog.db.run(f"INSERT INTO {table} (key, status, name_words) VALUES ('old.jpg', 'embedded', 'old')")
    type(catalog)(catalog.db)._add_missing_columns()
    catalog.db.run(f"UPDATE {table} SET place_words = 'lisbon portugal', tag_words = 'tram'")
    for words, weight in (("lisbon", "C"), ("tram", "D"), ("old", "A")):
        assert catalog.db.run(f"SELECT key FROM {table} WHERE search_tsv @@ to_tsquery('simple', :q)",
                              q=f"{words}:{weight}") == [["old.jpg"]]
