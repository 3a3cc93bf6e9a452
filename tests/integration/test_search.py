"""Search you can steer (issue 13): keyword index, query language, hybrid fusion, image + text, sort and the
adaptive cutoff, over HTTP against the embedded PostgreSQL.

The embedder here maps texts and pictures to chosen 4-d vectors (red, green, blue, other), so every score
is known and each rule (cutoff, fusion, minus terms, weights) can be checked against numbers.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from shared.api import create_app
from shared.config import Settings, load_settings
from shared.events import ObjectEvent
from shared.search import hybrid
from shared.search.keywords import fold
from shared.search.query_language import combine, parse
from shared.store import queries
from shared.store.catalog import Catalog, Collection
from shared.store.db import Connection, quote_ident
from tests.fixtures.chosen import BLUE, OTHER, RED, ChosenEmbedder, unit
from tests.fixtures.services import unique_name

BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)
# key -> vector. Red pictures at falling similarity to "red"; names people search for.
ROWS = {
    "red/one.jpg": unit(1, 0, 0, 0),
    "red/two.jpg": unit(0.95, 0.31, 0, 0),
    "red/three.jpg": unit(0.9, 0, 0.44, 0),
    "mixed/four.jpg": unit(0.3, 0.95, 0, 0),
    "mixed/five.jpg": unit(0.2, 0, 0, 0.98),
    "photos/2023/2023-06-04/IMG_2041.jpg": unit(0, 0, 1, 0),
    "photos/2023/2023-06-04/IMG_2042.jpg": unit(0, 0, 0.9, 0.44),
    "photos/2019/Urlaub/Große Mauer.jpg": unit(0, 1, 0, 0),
    "scans/letter.png": unit(0, 0.2, 0.2, 0.96),
}


@dataclass
class World:
    settings: Settings
    catalog: Catalog
    embedder: ChosenEmbedder
    coll: Collection
    client: TestClient


def add_rows(catalog: Catalog, coll: Collection, rows: dict[str, np.ndarray], *, model_id: str,
             first_minute: int = 0) -> None:
    for i, (key, vector) in enumerate(rows.items()):
        catalog.record_event(coll, ObjectEvent(coll.bucket, key, "created", etag=f"e-{key}", size=100 + i))
        assert catalog.store_embedding(coll, key, f"e-{key}", vector, model_id=model_id, width=40, height=30,
                                       last_modified=BASE_TIME + timedelta(minutes=first_minute + i))


def make_settings(pg_url: str, bucket: str, **overrides: object) -> Settings:
    return load_settings(database_url=pg_url, bucket=bucket, s3_endpoint_url="http://127.0.0.1:9",
                         s3_access_key_id="test", s3_secret_access_key="test", **overrides)


@pytest.fixture(scope="module")
def world(pg_url: str) -> Iterator[World]:
    bucket = unique_name("search")
    settings = make_settings(pg_url, bucket)
    catalog = Catalog.from_url(pg_url)
    embedder = ChosenEmbedder()
    coll = catalog.ensure_collection(bucket, embedder.model_id, embedder.dim)
    add_rows(catalog, coll, ROWS, model_id=embedder.model_id)
    # Words read in a picture (the OCR stage writes them folded) and a photo date (EXIF) on two rows.
    table = quote_ident(coll.table)
    catalog.db.run(f"UPDATE {table} SET ocr_words = :words WHERE key = 'scans/letter.png'",
                   words=fold("Steuererklärung 2023: Finanzamt"))
    for key in ("red/three.jpg", "red/one.jpg"):
        catalog.db.run(f"UPDATE {table} SET taken_at = :when WHERE key = :key", key=key, when=when_of(key))
    with TestClient(create_app(settings, catalog=catalog, models=embedder)) as client:
        yield World(settings, catalog, embedder, coll, client)
    catalog.db.close()


def search(world: World, q: str, **params: object) -> dict:
    response = world.client.get("/api/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return response.json()


def keys(body: dict) -> list[str]:
    return [item["key"] for item in body["items"]]


def error_of(response: object, status: int) -> str:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]["message"]


def expected_order(vector: np.ndarray, exclude: Sequence[str] = ()) -> list[str]:
    """Keys by cosine similarity to `vector`, as an exact scan would rank them."""
    return sorted((key for key in ROWS if key not in exclude), key=lambda key: -float(ROWS[key] @ vector))


# ---- words of keys and queries --------------------------------------------------------------------------






# ---- the query language ---------------------------------------------------------------------------------








# ---- hybrid: names and words with pictures --------------------------------------------------------------


def test_an_exact_name_ranks_first_and_a_prefix_finds_it(world: World) -> None:
    # "IMG_2041" embeds to OTHER, far from the blue picture behind IMG_2041.jpg: only its name finds it.
    body = search(world, "IMG_2041")
    assert keys(body)[0] == "photos/2023/2023-06-04/IMG_2041.jpg"
    assert body["items"][0]["matched"] == ["name"]
    assert body["mode"] == "hybrid" and body["items"][0]["score"] == pytest.approx(0.0, abs=1e-3)
    prefix = search(world, "IMG_204")
    assert {"photos/2023/2023-06-04/IMG_2041.jpg", "photos/2023/2023-06-04/IMG_2042.jpg"} <= set(keys(prefix))
    assert all("name" in item["matched"] for item in prefix["items"] if "IMG_204" in item["key"])


def test_words_are_folded_so_plain_letters_find_accented_names(world: World) -> None:
    body = search(world, "grosse mauer", mode="keyword")
    assert keys(body) == ["photos/2019/Urlaub/Große Mauer.jpg"]
    assert body["items"][0]["matched"] == ["name"] and body["items"][0]["score"] is None
    text = search(world, '"steuererklarung"', mode="keyword")  # the OCR words, accent-folded
    assert keys(text) == ["scans/letter.png"] and text["items"][0]["matched"] == ["text"]


def test_hybrid_fuses_picture_and_word_matches_by_reciprocal_rank(world: World) -> None:
    # "red": the three red pictures pass the cutoff; "red" is also a folder word of those three.
    body = search(world, "red")
    pictures = [key for key in expected_order(RED)][:3]
    words = sorted(pictures, key=lambda key: -float(ROWS[key] @ RED))  # word matches, most like the query first
    fused = {key: 1 / (60 + pictures.index(key) + 1) + 1 / (60 + words.index(key) + 1) for key in pictures}
    assert keys(body) == sorted(fused, key=lambda key: -fused[key])
    assert all(item["matched"] == ["name", "visual"] for item in body["items"])


def test_modes_semantic_ignores_names_and_keyword_needs_no_text_model(world: World, pg_url: str) -> None:
    semantic = search(world, "IMG_2041", mode="semantic", cutoff="none")
    assert keys(semantic) == expected_order(OTHER)
    assert all(item["matched"] == ["visual"] for item in semantic["items"])
    refusing = ChosenEmbedder(refuse_texts=True)
    settings = make_settings(pg_url, world.coll.name)
    with TestClient(create_app(settings, catalog=world.catalog, models=refusing)) as client:
        body = client.get("/api/search", params={"q": "IMG_2041", "mode": "keyword"}).json()
        assert keys(body) == ["photos/2023/2023-06-04/IMG_2041.jpg"] and body["mode"] == "keyword"
    for name, value in (("mode", "pictures"), ("sort", "random"), ("cutoff", "strict"), ("lang", "x y")):
        message = error_of(world.client.get("/api/search", params={"q": "red", name: value}), 400)
        assert f"'{name}'" in message


def test_keyword_mode_works_without_the_collections_model(world: World) -> None:
    other = world.catalog.ensure_collection(unique_name("clip-l"), "openai/ViT-L-14", 4)
    add_rows(world.catalog, other, {"holiday/IMG_0007.jpg": unit(1, 0, 0, 0)}, model_id="openai/ViT-L-14")
    body = search(world, "IMG_0007", mode="keyword", collection=other.name)
    assert keys(body) == ["holiday/IMG_0007.jpg"]
    text = world.client.get("/api/search", params={"q": "IMG_0007", "collection": other.name})
    assert error_of(text, 409) and text.json()["error"]["code"] == "model_not_deployed"


# ---- terms: minus, weights, images, echo ----------------------------------------------------------------


def test_minus_and_weights_move_the_query_vector(world: World) -> None:
    body = search(world, "red - green", mode="semantic", cutoff="none")
    assert keys(body) == expected_order(unit(1, -1, 0, 0))
    weighted = search(world, "2:red + blue", mode="semantic", cutoff="none")
    assert keys(weighted) == expected_order(unit(2, 0, 1, 0))
    assert weighted["items"][0]["score"] == pytest.approx(float(ROWS[keys(weighted)[0]] @ unit(2, 0, 1, 0)), abs=5e-3)


def test_minus_excludes_words_in_keyword_mode(world: World) -> None:
    assert keys(search(world, "IMG_204", mode="keyword")) == ["photos/2023/2023-06-04/IMG_2042.jpg",
                                                              "photos/2023/2023-06-04/IMG_2041.jpg"]
    assert keys(search(world, "IMG_204 - 2042", mode="keyword")) == ["photos/2023/2023-06-04/IMG_2041.jpg"]


def test_the_answer_echoes_the_parsed_terms(world: World) -> None:
    body = search(world, '2:red - "mixed" + similar:red/two.jpg')
    assert body["query"]["terms"] == [{"kind": "text", "value": "red", "weight": 2.0},
                                      {"kind": "keyword", "value": "mixed", "weight": -1.0},
                                      {"kind": "image", "value": "red/two.jpg", "weight": 1.0}]
    assert "red/two.jpg" not in keys(body)  # an image used as a term is no result
    assert not any(key.startswith("mixed/") for key in keys(body))  # a quoted minus term excludes everywhere


def test_similar_term_alone_is_the_similar_route(world: World) -> None:
    for params in ({}, {"cutoff": "none"}, {"sort": "newest"}, {"limit": 2}):
        route = world.client.get("/api/similar", params={"key": "red/two.jpg", **params}).json()
        term = search(world, "similar:red/two.jpg", **params)
        # The same list (presigned URLs aside: they carry the second they were signed in).
        assert [{**item, "url": "", "thumbnail_url": ""} for item in route["items"]] == \
            [{**item, "url": "", "thumbnail_url": ""} for item in term["items"]]
        assert route["hidden"] == term["hidden"]
        assert route["next_cursor"] == term["next_cursor"]
    assert keys(search(world, "similar:red/two.jpg", cutoff="none")) == expected_order(ROWS["red/two.jpg"],
                                                                                      ["red/two.jpg"])


@pytest.mark.parametrize("q, status, words", [
    ("similar:nowhere/x.jpg + red", 404, "nowhere/x.jpg"),
    ("red - similar:gone.jpg", 404, "gone.jpg"),
    ("cat - cat", 400, "cancel"),
    ("red - 2y:blue", 400, "weight"),
    ("red + ", 400, "empty"),
    ("- red", 400, "nothing to look for"),
])
def test_bad_queries_get_a_clear_error(world: World, q: str, status: int, words: str) -> None:
    assert words in error_of(world.client.get("/api/search", params={"q": q}), status)


def test_keyword_mode_refuses_image_terms_and_semantic_mode_needs_a_vector(world: World) -> None:
    assert "mode keyword" in error_of(world.client.get(
        "/api/search", params={"q": "red + similar:red/one.jpg", "mode": "keyword"}), 400)
    assert "mode semantic" in error_of(world.client.get(
        "/api/search", params={"q": '"red"', "mode": "semantic"}), 400)


def test_lang_reaches_the_text_encoder_and_keys_the_cache(world: World) -> None:
    world.embedder.calls.clear()
    for lang in ("de", "de", "en", "pt-BR"):
        search(world, "grün", lang=lang)
    assert world.embedder.calls == [(["grün"], "de"), (["grün"], "en"), (["grün"], "pt-BR")]


# ---- the cutoff -----------------------------------------------------------------------------------------


def test_auto_cutoff_keeps_scores_halfway_from_the_floor_to_the_best(world: World) -> None:
    body = search(world, "red", mode="semantic")
    threshold = 0.2 + 0.5 * (1.0 - 0.2)  # the default floor 0.2, the best picture scores 1.0
    kept = [key for key in expected_order(RED) if float(ROWS[key] @ RED) >= threshold]
    assert keys(body) == kept == ["red/one.jpg", "red/two.jpg", "red/three.jpg"]
    assert body["hidden"] == len(ROWS) - 3 and body["cutoff_score"] == pytest.approx(threshold, abs=1e-3)
    everything = search(world, "red", mode="semantic", cutoff="none")
    assert keys(everything) == expected_order(RED) and everything["hidden"] == 0
    assert everything["cutoff_score"] is None


def test_min_score_keeps_working_and_word_matches_pass_the_cutoff(world: World) -> None:
    body = search(world, "red", mode="semantic", cutoff="none", min_score=0.92)
    assert keys(body) == ["red/one.jpg", "red/two.jpg"] and body["cutoff_score"] == pytest.approx(0.92)
    # "Mauer" embeds to OTHER: the green Große Mauer picture is far below the cutoff, its name is not.
    hybrid_body = search(world, "Mauer")
    assert "photos/2019/Urlaub/Große Mauer.jpg" in keys(hybrid_body) and hybrid_body["hidden"] > 0


def test_the_floor_is_configurable_per_model(world: World, pg_url: str) -> None:
    # A floor above the best score holds every picture match back; a glob over the model id sets it.
    settings = make_settings(pg_url, world.coll.name, search_floors={"fake/*": 0.99, "fake/other": 0.0})
    assert settings.search_floor_for(world.embedder.model_id) == 0.99
    assert settings.search_floor_for("fake/other") == 0.0
    assert settings.search_floor_for("immich-app/ViT-B-32__openai") == 0.2
    with TestClient(create_app(settings, catalog=world.catalog, models=world.embedder)) as client:
        body = client.get("/api/search", params={"q": "green", "mode": "semantic"}).json()
    assert keys(body) == ["photos/2019/Urlaub/Große Mauer.jpg"]  # only the perfect match (1.0) is kept
    assert body["hidden"] == len(ROWS) - 1




# ---- sort and paging ------------------------------------------------------------------------------------


def when_of(key: str) -> datetime:
    """The date the sorts use: taken_at where the fixture set one, else last_modified."""
    taken = {"red/three.jpg": BASE_TIME - timedelta(days=400), "red/one.jpg": BASE_TIME + timedelta(days=9)}
    return taken.get(key, BASE_TIME + timedelta(minutes=list(ROWS).index(key)))


def test_sort_by_date_orders_the_relevant_set(world: World) -> None:
    relevant = ["red/one.jpg", "red/two.jpg", "red/three.jpg"]  # what passes the cutoff for "red"
    newest = search(world, "red", mode="semantic", sort="newest")
    assert keys(newest) == sorted(relevant, key=when_of, reverse=True) == ["red/one.jpg", "red/two.jpg",
                                                                           "red/three.jpg"]
    oldest = search(world, "red", mode="semantic", sort="oldest")
    assert keys(oldest) == sorted(relevant, key=when_of) and oldest["sort"] == "oldest"
    everything = search(world, "red", mode="semantic", sort="oldest", cutoff="none")
    assert keys(everything) == sorted(ROWS, key=when_of)


def test_pages_of_a_sorted_hybrid_search_are_stable_while_images_arrive(world: World) -> None:
    coll = world.catalog.ensure_collection(unique_name("pages"), world.embedder.model_id, world.embedder.dim)
    # "trip" embeds to OTHER and is a folder word of every row: both lists rank all of them.
    present = {f"trip/IMG_{i:04d}.jpg": unit(1, i / 10, 0, 0.1 + i / 20) for i in range(12)}
    add_rows(world.catalog, coll, present, model_id=world.embedder.model_id)
    for sort in ("relevance", "newest"):
        seen: list[str] = []
        cursor = None
        existing = list(present)
        for page in range(10):
            params = {"collection": coll.name, "limit": 3, "sort": sort, "cutoff": "none",
                      **({"cursor": cursor} if cursor else {})}
            body = search(world, "trip", **params)
            seen += keys(body)
            arrived = {f"trip/new-{sort}-{page}.jpg": unit(1, 0, 0, 1)}  # would rank first, if it were seen
            add_rows(world.catalog, coll, arrived, model_id=world.embedder.model_id, first_minute=1000 + page)
            present |= arrived
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) and sorted(seen) == sorted(existing), seen


def test_date_sorted_pages_rank_word_and_picture_matches_together(world: World) -> None:
    coll = world.catalog.ensure_collection(unique_name("dated"), world.embedder.model_id, world.embedder.dim)
    # "harbour" embeds to OTHER: w* match by name only, p* by picture only, b* by both, n* by neither.
    groups = {"harbour/w": unit(0, 1, 0, 0.1), "misc/p": unit(0.2, 0, 0, 1), "harbour/b": unit(0, 0.1, 0, 1),
              "misc/n": unit(0, 0, 1, 0)}
    rows = {f"{prefix}{i}.jpg": vector for i in range(4) for prefix, vector in groups.items()}  # dates interleave
    add_rows(world.catalog, coll, rows, model_id=world.embedder.model_id)
    reasons = {"harbour/w": ["name"], "misc/p": ["visual"], "harbour/b": ["name", "visual"]}
    for sort in ("newest", "oldest"):
        relevant = [key for key in rows if not key.startswith("misc/n")]  # in date order (add_rows' minutes)
        seen: list[str] = []
        cursor = None
        for page in range(10):
            body = search(world, "harbour", collection=coll.name, limit=5, sort=sort,
                          **({"cursor": cursor} if cursor else {}))
            seen += keys(body)
            for item in body["items"]:
                assert item["matched"] == next(why for group, why in reasons.items() if item["key"].startswith(group))
            arrived = {f"harbour/b-new-{sort}-{page}.jpg": unit(0, 0, 0, 1)}  # newest, and in both lists
            add_rows(world.catalog, coll, arrived, model_id=world.embedder.model_id, first_minute=1000 + len(rows))
            rows |= arrived
            cursor = body["next_cursor"]
            if cursor is None:
                break
        # Stable pages, no key twice, none skipped: exactly the relevant set by date, none of the new rows.
        assert seen == (relevant[::-1] if sort == "newest" else relevant), (sort, seen)


def test_the_deepest_picture_list_stays_within_pgvectors_ef_search_bound(world: World) -> None:
    deepest = queries.nearest(world.catalog, world.coll, RED, limit=hybrid.MAX_RESULTS, ef_search=100)
    assert [hit.id for hit in deepest] == [hit.id for hit in queries.search(world.catalog, world.coll, RED,
                                                                            limit=hybrid.MAX_RESULTS)]


def test_a_deep_list_read_as_far_as_the_cutoff_keeps(world: World) -> None:
    everything = queries.nearest(world.catalog, world.coll, RED, limit=hybrid.MAX_RESULTS, ef_search=100)
    kept = queries.nearest(world.catalog, world.coll, RED, limit=hybrid.MAX_RESULTS, ef_search=100,
                           stop=queries.StopRule(0.85))
    assert [hit.id for hit in kept] == [hit.id for hit in everything if hit.score >= 0.85]
    assert 0 < len(kept) < len(everything)


@pytest.mark.parametrize("has_minus", [False, True])
def test_the_databases_cutoff_keeps_what_the_search_keeps(world: World, has_minus: bool) -> None:
    everything = queries.nearest(world.catalog, world.coll, RED, limit=hybrid.MAX_RESULTS, ef_search=100)
    threshold = hybrid.cutoff_score(everything[0].score, 0.5, has_minus=has_minus)
    assert threshold is not None
    for after in (0, 3):
        read = queries.nearest(world.catalog, world.coll, RED, limit=hybrid.MAX_RESULTS, ef_search=100,
                               stop=hybrid.cutoff_stop(0.5, has_minus=has_minus, after=after))
        passing = [hit.id for hit in everything if hit.score >= threshold]
        # Every passing row, then (past the first `after`) nothing more: the first `after` rows whatever they score.
        expected = passing if len(passing) >= after else [hit.id for hit in everything[:after]]
        assert [hit.id for hit in read] == expected, (after, threshold)


def test_a_date_sort_keeping_more_than_the_first_list_reads_on(world: World) -> None:
    coll = world.catalog.ensure_collection(unique_name("deep"), world.embedder.model_id, world.embedder.dim)
    reds = {f"red/{i:03d}.jpg": unit(1, i / 1000, 0, 0) for i in range(hybrid.VECTOR_DEPTH + 16)}
    add_rows(world.catalog, coll, reds | {f"blue/{i}.jpg": BLUE for i in range(5)}, model_id=world.embedder.model_id)
    body = search(world, "red", collection=coll.name, mode="semantic", sort="oldest", limit=100)
    assert keys(body) == list(reds) and body["hidden"] == 0


def test_a_date_sort_sends_back_its_page_alone_and_counts_what_it_pages(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    coll = world.catalog.ensure_collection(unique_name("dated-one"), world.embedder.model_id, world.embedder.dim)
    reds = {f"red/{i:03d}.jpg": unit(1, i / 1000, 0, 0) for i in range(hybrid.VECTOR_DEPTH + 16)}
    add_rows(world.catalog, coll, reds | {f"blue/{i}.jpg": BLUE for i in range(5)}, model_id=world.embedder.model_id)
    received: list[tuple[str, int]] = []

    def recording(run: Callable[..., Any]) -> Callable[..., Any]:
        def recording_run(conn: Connection, sql: str, *args: object, **values: object) -> Any:
            rows = run(conn, sql, *args, **values)
            received.append((sql, len(rows or [])))
            return rows
        return recording_run

    for name in ("run", "run_prepared"):  # every statement, unnamed or named
        monkeypatch.setattr(Connection, name, recording(getattr(Connection, name)))
    body = search(world, "red", collection=coll.name, sort="newest", limit=5)
    assert keys(body) == list(reds)[::-1][:5] and body["next_cursor"] and body["hidden"] == 0
    # One statement, the page: the picture list of 80 rows ranks in the database and never comes back, and the
    # bound of later pages is read in the same statement.
    searched = [rows for sql, rows in received if coll.table in sql]
    assert searched == [5], received
    monkeypatch.undo()
    plan = hybrid.plan(parse("red"), "hybrid")
    assert hybrid.count(world.catalog, coll, plan, RED, hybrid.SearchRequest(
        floor=world.settings.search_floor_for(coll.model_id))) == len(reds)


def record_plans(monkeypatch: pytest.MonkeyPatch, marker: str) -> list[str]:
    """Per named statement holding `marker`, in order: whether it ran with a plan made once ("generic") or made for
    its values ("custom")."""
    plans: list[str] = []
    count = "SELECT COALESCE(sum(generic_plans), 0), COALESCE(sum(custom_plans), 0) FROM pg_prepared_statements"

    def recording(run: Callable[..., Any]) -> Callable[..., Any]:
        def recording_run(conn: Connection, sql: str, *args: object, **values: object) -> Any:
            before = conn.run(count)[0]
            rows = run(conn, sql, *args, **values)
            if marker in sql:
                generic, custom = (int(after - was) for after, was in zip(conn.run(count)[0], before, strict=True))
                plans.append("generic" if (generic, custom) == (1, 0) else "custom" if (generic, custom) == (0, 1)
                             else f"{generic} generic, {custom} custom")
            return rows
        return recording_run

    monkeypatch.setattr(Connection, "run_prepared", recording(Connection.run_prepared))
    return plans


def test_a_word_search_is_planned_once_unless_a_filter_narrows_it(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    plans = record_plans(monkeypatch, "search_tsv @@")
    for sort in ("relevance", "newest"):
        plain = search(world, "IMG_2041", mode="keyword", sort=sort)
        narrowed = search(world, "IMG_2041", mode="keyword", sort=sort, prefix="photos/2023/")
        assert keys(plain)[0] == keys(narrowed)[0] == "photos/2023/2023-06-04/IMG_2041.jpg"
    assert search(world, "mauer", mode="keyword", prefix="red/")["items"] == []  # the filter still applies
    # The plan of a statement without a narrowing filter is made once and serves every value; a filter's values
    # decide how much it keeps, so such a statement is planned for them each time.
    assert plans == ["generic", "custom"] * 2 + ["custom"], plans


def test_a_picture_search_is_planned_once_unless_a_filter_narrows_it(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    plans = record_plans(monkeypatch, "embedding <#>")
    like_red = {"key": "red/one.jpg", "cutoff": "none"}
    plain = world.client.get("/api/similar", params=like_red).json()
    narrowed = world.client.get("/api/similar", params={**like_red, "prefix": "red/"}).json()
    quoted = search(world, '"two" + similar:red/one.jpg', mode="semantic")
    assert keys(plain)[0] == keys(narrowed)[0] == "red/two.jpg" and keys(quoted) == ["red/two.jpg"]
    assert all(key.startswith("red/") for key in keys(narrowed)) and len(keys(plain)) > len(keys(narrowed))
    # As for words: a plan made once serves every stored image searched by; a filter's values decide the plan.
    assert plans == ["generic", "custom", "custom"], plans


def test_a_cursor_from_elsewhere_is_refused(world: World) -> None:
    recent = world.client.get("/api/recent", params={"limit": 1}).json()["next_cursor"]
    assert "cursor" in error_of(world.client.get("/api/search", params={"q": "red", "cursor": recent}), 400)


# ---- image + text ---------------------------------------------------------------------------------------


def red_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (255, 0, 0)).save(out, "PNG")
    return out.getvalue()


def test_uploaded_image_combines_with_terms_from_the_form_or_the_query(world: World) -> None:
    upload_alone = world.embedder.embed_images([Image.new("RGB", (4, 4), (255, 0, 0))])[0]
    expected = expected_order(combine([(1.0, upload_alone), (1.0, BLUE)]))
    for form, params in (({"q": "blue"}, {}), ({}, {"q": "blue"})):
        response = world.client.post("/api/search/image", params={"mode": "semantic", "cutoff": "none", **params},
                                     data=form, files={"file": ("red.png", red_png(), "image/png")})
        assert response.status_code == 200, response.text
        body = response.json()
        assert keys(body) == expected and expected[0] == "red/three.jpg"  # red and blue: the purple-ish one
        assert body["query"]["terms"] == [{"kind": "image", "value": "red.png", "weight": 1.0},
                                          {"kind": "text", "value": "blue", "weight": 1.0}]
    alone = world.client.post("/api/search/image", params={"cutoff": "none"},
                              files={"file": ("red.png", red_png(), "image/png")}).json()
    assert keys(alone) == expected_order(upload_alone)
    refused = world.client.post("/api/search/image", params={"mode": "keyword"},
                                files={"file": ("red.png", red_png(), "image/png")})
    assert "mode keyword" in error_of(refused, 400)


# ---- the keyword index's writes -------------------------------------------------------------------------


def test_name_words_are_written_with_the_key_and_filled_for_older_rows(world: World) -> None:
    table = quote_ident(world.coll.table)
    ((stored,),) = world.catalog.db.run(f"SELECT name_words FROM {table} WHERE key = 'scans/letter.png'")
    assert stored == "scans letter"
    world.catalog.db.run(f"UPDATE {table} SET name_words = NULL WHERE key LIKE 'mixed/%'")  # as before the index
    assert search(world, "four", mode="keyword")["items"] == []
    assert world.catalog.fill_name_words(world.coll) == 2 and world.catalog.fill_name_words(world.coll) == 0
    assert keys(search(world, "four", mode="keyword")) == ["mixed/four.jpg"]
