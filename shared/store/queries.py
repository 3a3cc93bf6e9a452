"""Queries over a collection: nearest neighbours (text, image or a stored image), newest first, stats,
and the reads of single rows the writers need.

Each is one statement: the search sets its HNSW settings inside its own transaction and checks, in
the same statement, that the collection still records the model the query vector came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np

from shared.store import stage_rows
from shared.store.catalog import Catalog, CatalogError, Collection, Status, model_guard, vectors_of
from shared.store.db import quote_ident
from shared.store.faces import FaceOfPerson, faces_of_people, people_of_row_sql, person_filter_sql
from shared.store.hnsw import MAX_EF_SEARCH, hnsw_session
from shared.store.vectors import as_array, vector_literal


@dataclass(frozen=True)
class Hit:
    """One image in a query answer. `distance` (negative inner product) is the paging position."""

    id: int
    key: str
    score: float | None
    size: int | None
    content_type: str | None
    width: int | None
    height: int | None
    last_modified: datetime | None
    distance: float | None = None
    # Photo metadata (PHOTO_SQL): taken_at in the photo's own UTC offset, naive when it recorded none.
    taken_at: datetime | None = None
    camera: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    ocr_text: str | None = None  # the words read in the picture (the OCR stage); null until read
    # Where it was taken (shared/places): city and state null when only the country is known.
    city: str | None = None
    state: str | None = None
    country: str | None = None
    country_code: str | None = None
    tags: tuple[str, ...] | None = None  # keywords written into the photo (IPTC, XMP); null until read
    caption: str | None = None
    people: tuple[FaceOfPerson, ...] = ()  # the people found in it, left to right


@dataclass(frozen=True)
class SearchFilters:
    """Filters that combine with vector search: key prefix, last_modified range, content type, when the
    photo was taken (EXIF; photos without a date never match a taken_* filter), camera (substring), words
    (the keyword index) and keys to leave out."""

    prefix: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    content_type: str | None = None
    taken_after: datetime | None = None
    taken_before: datetime | None = None
    camera: str | None = None
    words: str | None = None  # `to_tsquery('simple', …)` text every row must match (quoted query terms)
    exclude: tuple[str, ...] = ()  # keys left out (the images a query searches by)
    place: tuple[str, ...] = ()  # folded names the photo's place must all have (shared/places/lookup.py)
    up_to_id: int | None = None  # rows up to this id only: a search's later pages see what its first one saw
    people: tuple[int, ...] = ()  # person ids that must all be in the photo (person= and person: terms)

    def sql(self, params: dict[str, Any], table: str) -> list[str]:
        """WHERE terms on the collection's `table`; the values go into `params`, never into the SQL text."""
        # (value, condition, parameter): a filter applies when its value is set.
        filters = [
            (self.prefix or None, "starts_with(key, :prefix)", "prefix"),
            (self.after, "last_modified >= :modified_after", "modified_after"),
            (self.before, "last_modified < :modified_before", "modified_before"),
            (self.content_type or None, "content_type = :content_type", "content_type"),
            (self.taken_after, "taken_at >= :taken_after", "taken_after"),
            (self.taken_before, "taken_at < :taken_before", "taken_before"),
            # A substring, not LIKE: the caller's % and _ stay literal.
            (self.camera or None, "strpos(lower(camera), lower(:camera)) > 0", "camera"),
            (self.words or None, "search_tsv @@ to_tsquery('simple', :filter_words)", "filter_words"),
            (list(self.exclude) or None, "key <> ALL(CAST(:exclude_keys AS text[]))", "exclude_keys"),
            (list(self.place) or None, "place_names @> CAST(:place_names AS text[])", "place_names"),
            # Never an index condition (`id + 0`): the bound leaves out only rows added since a first page. A
            # generic plan, blind to its value, would AND every primary key entry into a word search's bitmap.
            (self.up_to_id, "id + 0 <= :up_to_id", "up_to_id"),
        ]
        terms = []
        for value, condition, name in filters:
            if value is not None:
                terms.append(condition)
                params[name] = value
        if self.people:
            terms.append(person_filter_sql(table, params, self.people))
        return terms

    def narrows(self) -> bool:
        """Whether a filter the caller chose narrows the rows (key prefix, dates, type, camera, place, people): how
        much it keeps decides the best plan. The page bound, quoted words and left-out keys do not."""
        return replace(self, up_to_id=None, words=None, exclude=()) != SearchFilters()


@dataclass(frozen=True)
class StopRule:
    """Where a deep list of nearest rows ends: past its first `after` rows, before the first row scoring below
    floor + fraction * (best - floor), `best` being the best score read so far (the floor itself when that is not
    above it). fraction 0 is a fixed score; the hybrid search's auto cutoff is its floor and CUTOFF_FRACTION."""

    floor: float
    fraction: float = 0.0
    after: int = 0


def _from_epoch(seconds: float | None) -> datetime | None:
    """Timestamps come back as epoch seconds: parsing pg8000's text timestamps costs ~15 µs each."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


# The photo metadata every answer carries, selected after a row's own columns; `{p}` is a table alias.
PHOTO_COLUMNS = "taken_at, taken_offset, camera, latitude, longitude"
PHOTO_SQL = "extract(epoch FROM {p}taken_at)::float8, {p}taken_offset, {p}camera, {p}latitude, {p}longitude"


def photo_fields(values: Sequence[Any]) -> dict[str, Any]:
    """Hit's photo fields from the PHOTO_SQL values: taken_at back in the offset the photo recorded."""
    epoch, offset, camera, latitude, longitude = values
    taken_at = _from_epoch(epoch)
    if taken_at is not None:
        taken_at = (taken_at.replace(tzinfo=None) if offset is None
                    else taken_at.astimezone(timezone(timedelta(minutes=int(offset)))))
    return {"taken_at": taken_at, "camera": camera, "latitude": latitude, "longitude": longitude}


def search_target(collection: Collection, vector: np.ndarray | None, similar_to: str | None,
                   params: dict[str, Any]) -> str:
    """SQL for the vector to search near: the query vector, or a stored image's (its values into `params`)."""
    if similar_to is not None:
        # An InitPlan: the stored vector never leaves the server and the HNSW scan still applies.
        params["source"] = similar_to
        return f"(SELECT embedding FROM {quote_ident(collection.table)} WHERE key = :source AND status = 'embedded')"
    if vector is None:
        raise CatalogError("search needs a query vector or a key to search like")
    if int(np.asarray(vector).shape[-1]) != collection.dim:
        raise CatalogError(f"query vector has {np.asarray(vector).shape[-1]} dimensions; "
                           f"collection {collection.name!r} stores {collection.dim}")
    if "vec" not in params:  # a statement comparing twice (a date sort's list and its page) writes it once
        params["vec"] = vector_literal(vector)
    params.update(collection=collection.name, model_id=collection.model_id)
    return "CAST(:vec AS halfvec)"


def _nearest_sql(collection: Collection, vector: np.ndarray | None, similar_to: str | None, params: dict[str, Any],
                 *, columns: str, limit: int, min_score: float | None, filters: SearchFilters | None,
                 after: tuple[float, int] | None, ef_search: int, stop: StopRule | None = None) -> tuple[str, str]:
    """(the `cfg` CTE, the SELECT) of the nearest-neighbour statement, best first: `columns` of each row (the first
    is `id`), then its distance; the values go into `params`. With `stop`, the list ends where its rule says, and
    the index scan stops there."""
    q = quote_ident(collection.table)
    target = search_target(collection, vector, similar_to, params)
    where = ["embedding IS NOT NULL", "status = 'embedded'"]
    if similar_to is not None:
        # A one-time gate: no stored vector (unknown key) means no rows, not NULL distances.
        where += ["key <> :source", f"{target} IS NOT NULL"]
    where += (filters or SearchFilters()).sql(params, collection.table)
    if after is not None:
        where.append(f"(embedding <#> {target}, id) > (:after_distance, :after_id)")
        params["after_distance"], params["after_id"] = float(after[0]), int(after[1])
    cutoff = ""
    if min_score is not None:
        # Applied outside the index scan: hits come best first, so the first weak one ends the
        # page instead of making the iterative scan walk the whole graph for nothing.
        cutoff = "WHERE h.distance <= :max_distance"
        params["max_distance"] = -float(min_score)
    # The scan reads one row past the limit (ties are ordered by id within a distance), so ef_search must
    # exceed it: else pgvector's iterative scan starts a second, costly pass for that one row. A list deeper
    # than ef_search's bound (a date sort's) is read by the iterative scan anyway: from the caller's ef_search,
    # which is faster than from the bound (1000 rows at 100k: 94 against 109 ms, beside other work). A list a
    # `stop` rule ends reads on past its first `after` rows: from twice that, most such lists end in the first
    # pass (the bench's date-sorted queries at 100k: p50 11.4 -> 7.3 ms, p95 19.7 -> 14.2 against ef_search 80).
    # A query vector is compared only while the registry still names its model (else no rows). The LIMIT is written
    # in the text: as a parameter, a plan made once (_nearest_plan) guesses a tenth of the table for it, and joins a
    # page's rows by hashing a scan of the whole table (70 ms at 100k rows).
    ef = int(ef_search) if limit >= MAX_EF_SEARCH else max(int(ef_search), int(limit) + 1)
    if stop is not None:
        ef = max(ef, 2 * int(stop.after))
    session = hnsw_session(params, ef_search=ef, iterative_scan="relaxed_order",
                           only_if=model_guard() if vector is not None else "", grow_with=q)
    scan = f"""
            SELECT {columns}, embedding <#> {target} AS distance
            FROM {q}
            WHERE {" AND ".join(where)} AND cfg.scan IS NOT NULL
            ORDER BY embedding <#> {target}, id  -- ties (identical vectors: copies) by id, as the cursor pages
            LIMIT {int(limit)}"""
    if stop is not None:
        scan = _stopped_sql(scan, stop, params)
    select = f"""
        SELECT h.* FROM cfg CROSS JOIN LATERAL ({scan}
        ) AS h
        {cutoff} ORDER BY h.distance + 0, h.id"""
    return session, select


def _stopped_sql(scan: str, stop: StopRule, params: dict[str, Any]) -> str:
    """`scan` (rows best first, with `id` and `distance`) ended by the rule `stop`. Each row gets its rank and the
    best score so far; a running count of the weaker rows past `after` is 0 up to the first of them, and PostgreSQL
    stops the window there (its run condition), and with it the index scan. A deep list kept by a cutoff reads as
    far as it keeps (242 of 1,000 rows, a tenth of the index pages, for a cluster of 242)."""
    bar = _bar_sql(stop, "r.best", params)
    return f"""
            SELECT * FROM (
                SELECT r.*, count(*) FILTER (WHERE r.rank > CAST(:stop_after AS bigint) AND -r.distance < {bar})
                    OVER (ORDER BY r.distance, r.id ROWS UNBOUNDED PRECEDING) AS weaker
                FROM (SELECT s.*, row_number() OVER w AS rank, -min(s.distance) OVER w AS best FROM ({scan}) AS s
                      WINDOW w AS (ORDER BY s.distance, s.id ROWS UNBOUNDED PRECEDING)) AS r
            ) AS w WHERE w.weaker = 0"""


def _bar_sql(rule: StopRule, best: str, params: dict[str, Any]) -> str:
    """SQL of the score `rule` holds rows to, given the SQL of the best score (its values into `params`):
    hybrid.cutoff_score's rule, in the database."""
    params.update(stop_floor=float(rule.floor), stop_fraction=float(rule.fraction), stop_after=int(rule.after))
    floor = "CAST(:stop_floor AS float8)"
    return f"CASE WHEN {best} > {floor} THEN {floor} + CAST(:stop_fraction AS float8) * ({best} - {floor}) " \
           f"ELSE {floor} END"


def plan_cache_mode(*, plan_once: bool) -> str:
    """The set_config call (for Connection.run_prepared's `setup`) that plans a named statement once, or for each
    run's values: when a filter's values decide the best plan."""
    return f"set_config('plan_cache_mode', '{'force_generic_plan' if plan_once else 'force_custom_plan'}', true)"


def _nearest_plan(filters: SearchFilters) -> str:
    """The setup of a nearest-neighbour statement: planned once (as an HNSW scan) unless a filter, quoted words
    included, narrows the rows: how many rows a filter keeps decides between the HNSW scan and another index. Planning
    the statement of /api/similar cost PostgreSQL ~0.7 ms of its 2.6 ms at 100k."""
    return "SELECT " + plan_cache_mode(plan_once=not (filters.narrows() or filters.words))


def _check_empty(catalog: Catalog, collection: Collection, vector: np.ndarray | None, similar_to: str | None) -> None:
    """After an empty answer: KeyError for a `similar_to` that is not an embedded row, ModelChanged for a query
    vector of a model the collection has left."""
    if similar_to is not None and not is_embedded(catalog, collection, similar_to):
        raise KeyError(similar_to)
    if vector is not None:
        catalog.raise_if_moved(collection, collection.model_id, None)


def _nearest(catalog: Catalog, collection: Collection, vector: np.ndarray | None, similar_to: str | None, *,
             columns: str, limit: int, min_score: float | None, filters: SearchFilters | None,
             after: tuple[float, int] | None, ef_search: int, stop: StopRule | None = None) -> list[list[Any]]:
    """Rows of the nearest-neighbour statement (one statement, one round trip), best first."""
    params: dict[str, Any] = {}
    filters = filters or SearchFilters()
    session, select = _nearest_sql(collection, vector, similar_to, params, columns=columns, limit=limit,
                                   min_score=min_score, filters=filters, after=after, ef_search=ef_search,
                                   stop=stop)
    with vectors_of(collection, collection.model_id):
        rows = catalog.db.run_prepared(f"WITH {session} {select}", setup=_nearest_plan(filters), **params)
    if not rows:
        _check_empty(catalog, collection, vector, similar_to)
    return rows


def search(
    catalog: Catalog,
    collection: Collection,
    vector: np.ndarray | None = None,
    *,
    similar_to: str | None = None,
    limit: int = 30,
    min_score: float | None = None,
    filters: SearchFilters | None = None,
    after: tuple[float, int] | None = None,
    ef_search: int = 64,
) -> list[Hit]:
    """Nearest embedded rows to `vector` (or to the stored row `similar_to`, itself excluded).

    Best first; `score` is the inner product, i.e. cosine similarity for unit vectors. `after` is
    the (distance, id) of the previous page's last hit. Filters combine with the HNSW scan through
    pgvector's iterative scan, so a selective filter still fills the page when enough rows match.
    Raises KeyError when `similar_to` is not an embedded row.
    """
    rows = _nearest(catalog, collection, vector, similar_to, columns=hit_sql(collection), limit=limit,
                    min_score=min_score, filters=filters, after=after, ef_search=ef_search)
    return [hit_of(row, row[HIT_WIDTH]) for row in rows]


@dataclass(frozen=True)
class Nearest:
    id: int
    distance: float  # negative inner product: -score
    when: float | None  # PHOTO_TIME_SQL, epoch seconds

    @property
    def score(self) -> float:
        return -self.distance


def nearest(catalog: Catalog, collection: Collection, vector: np.ndarray | None, *, limit: int,
            min_score: float | None = None, filters: SearchFilters | None = None, ef_search: int = 64,
            similar_to: str | None = None, stop: StopRule | None = None) -> list[Nearest]:
    """`search` without the rows' fields: ids, distances and dates of a deep list (hybrid search hydrates
    only the page it shows); with `stop`, it ends where that rule says."""
    rows = _nearest(catalog, collection, vector, similar_to, columns=f"id, {PHOTO_TIME_SQL}", limit=limit,
                    min_score=min_score, filters=filters, after=None, ef_search=ef_search, stop=stop)
    return [Nearest(row[0], float(row[2]), row[1]) for row in rows]


@dataclass(frozen=True)
class PicturePage:
    rows: list[Hit]  # the kept matches ranked offset+1 .. offset+limit, best first, with their scores
    kept: int  # the matches the cutoff kept among those looked at
    hidden: int  # those it held back
    cutoff_score: float | None  # the cutoff's score (None without a cutoff, or without matches)
    newest_id: int | None  # the newest row id as the statement saw it (None when filters.up_to_id was given)


def picture_page(catalog: Catalog, collection: Collection, vector: np.ndarray | None, *, similar_to: str | None,
                 depth: int, offset: int, limit: int, min_score: float | None, cutoff: StopRule | None,
                 filters: SearchFilters, ef_search: int) -> PicturePage:
    """A pictures-only search in one statement (one round trip): the `depth` nearest rows are looked at, the
    `cutoff` rule keeps the best of them (a prefix of the list), and the rows of those ranked offset+1 ..
    offset+limit come back; for a first page (no filters.up_to_id), with the newest row id, the bound of its later
    pages. Only the page's rows leave the database: decoding the rest was a third of the statement's Python time.
    Raises KeyError as `search` does."""
    q = quote_ident(collection.table)
    params: dict[str, Any] = {"offset": int(offset), "page_end": int(offset) + int(limit)}
    session, select = _nearest_sql(collection, vector, similar_to, params, columns="id",
                                   limit=depth, min_score=min_score, filters=filters, after=None, ef_search=ef_search)
    # The same snapshot as the scan: no row the page could show is newer.
    newest = "NULL::bigint" if filters.up_to_id is not None else f"(SELECT COALESCE(max(id), 0) FROM {q})"
    sql = f"""
        WITH {session}, pictures AS MATERIALIZED ({select}),
        scored AS (SELECT {_list_bar_sql(cutoff, params)} AS bar, count(*) AS read FROM pictures),
        kept AS MATERIALIZED (
            SELECT p.id, p.distance, row_number() OVER (ORDER BY p.distance, p.id) AS rank
            FROM pictures AS p, scored AS s WHERE s.bar IS NULL OR -p.distance >= s.bar)
        SELECT s.bar, s.read, (SELECT count(*) FROM kept), {newest}, k.distance, h.*
        FROM scored AS s
        LEFT JOIN kept AS k ON k.rank > :offset AND k.rank <= :page_end
        LEFT JOIN LATERAL (SELECT {hit_sql(collection)} FROM {q} WHERE id = k.id) AS h ON true
        ORDER BY k.rank"""
    with vectors_of(collection, collection.model_id):
        rows = catalog.db.run_prepared(sql, setup=_nearest_plan(filters), **params)
    bar, read, kept, newest_id = rows[0][:4]
    if not read:
        _check_empty(catalog, collection, vector, similar_to)
    return PicturePage([hit_of(row[5:], row[4]) for row in rows if row[5] is not None], int(kept),
                       int(read) - int(kept), bar, None if newest_id is None else int(newest_id))


def _list_bar_sql(cutoff: StopRule | None, params: dict[str, Any]) -> str:
    """SQL of the score a picture list's `cutoff` holds its rows to, an aggregate over `distance`: NULL without a
    cutoff or rows."""
    if cutoff is None:
        return "NULL::float8"
    return f"CASE WHEN count(*) > 0 THEN {_bar_sql(cutoff, '-min(distance)', params)} END"


# ---- hybrid search: stored vectors of query images, word matches, the rows of a page -----------------

def hit_sql(collection: Collection) -> str:
    """A Hit's columns of the collection's table (not aliased in the statement), in the order `hit_of` reads
    them: the row's own, then the people in it."""
    return ("id, key, size, content_type, width, height, extract(epoch FROM last_modified)::float8, "
            f"{PHOTO_SQL.format(p='')}, ocr_text, city, state, country, country_code, tags, caption, "
            f"{people_of_row_sql(collection, quote_ident(collection.table))}")


HIT_WIDTH = 20  # columns of hit_sql: what a statement selects after them starts at this index
# The date the date sorts use: when the photo was taken, else when the object was last modified.
# date_part, not extract: extract's numeric result, cast to float8, cost ~0.6 ms over the 1,000 rows of a word list.
PHOTO_TIME_SQL = "date_part('epoch', COALESCE(taken_at, last_modified))"


def hit_of(row: Sequence[Any], distance: float | None = None) -> Hit:
    """A Hit from the hit_sql columns; `distance` (to the query vector) gives it its score."""
    return Hit(row[0], row[1], None if distance is None else -float(distance), row[2], row[3], row[4], row[5],
               _from_epoch(row[6]), None if distance is None else float(distance), **photo_fields(row[7:12]),
               ocr_text=row[12], city=row[13], state=row[14], country=row[15], country_code=row[16],
               tags=None if row[17] is None else tuple(row[17]), caption=row[18], people=faces_of_people(row[19]))


def last_id(catalog: Catalog, collection: Collection) -> int:
    """The newest row id (ids only grow): the rows a search's first page sees."""
    return int(catalog.db.run(f"SELECT COALESCE(max(id), 0) FROM {quote_ident(collection.table)}")[0][0])


def stored_vectors(catalog: Catalog, collection: Collection, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """key -> stored vector of the embedded rows among `keys` (the images a query searches by)."""
    rows = catalog.db.run(
        f"SELECT key, embedding FROM {quote_ident(collection.table)} "
        "WHERE key = ANY(CAST(:keys AS text[])) AND status = 'embedded' AND embedding IS NOT NULL",
        keys=list(keys),
    )
    return {key: as_array(vector) for key, vector in rows}


def _through_word_index(catalog: Catalog, collection: Collection, sql: str, params: dict[str, Any], *,
                        filters: SearchFilters, index_scans: bool = False) -> list[list[Any]]:
    """Rows of a statement that finds words: through the keyword index, never a scan of the table (or of its ids)
    stopped by a LIMIT. The planner expects a common word ("2019") evenly spread, but photos are stored in time
    order, so such a scan reads most of the table before it finds the year (300 ms at a million rows, against a
    few ms via the index). `index_scans` keeps index scans (an HNSW scan is one, and a newest row id read through
    the primary key) for a statement whose word lists end without a LIMIT (_word_list_sql).

    The settings go with the statement, in its round trip and its transaction (Connection.run_prepared's `setup`):
    as a BEGIN, a settings statement and a COMMIT of their own they were three more round trips. The statement is a
    named one (parsed once per connection), planned once too when none of its `filters` narrows the rows
    (SearchFilters.narrows: their values change the best plan); planning was ~1.3 ms of a 5 ms keyword search at
    100k."""
    index_scan = "on" if index_scans else "off"
    setup = (f"SELECT set_config('enable_seqscan', 'off', true), set_config('enable_indexscan', '{index_scan}', true), "
             f"{plan_cache_mode(plan_once=not filters.narrows())}")
    with vectors_of(collection, collection.model_id):
        return catalog.db.run_prepared(sql, setup=setup, **params)


@dataclass(frozen=True)
class WordMatch:
    id: int
    exact: bool  # the query names this image (IMG_2041 for …/IMG_2041.jpg): it ranks first
    distance: float | None  # to the query vector, when the search has one
    when: float | None  # PHOTO_TIME_SQL, epoch seconds


def _distance_sql(vector: np.ndarray | None, params: dict[str, Any]) -> str:
    """SQL for the distance to the query vector (its value into `params`), NULL without one."""
    if vector is None:
        return "NULL::float8"
    params["vec"] = vector_literal(vector)
    return "(embedding <#> CAST(:vec AS halfvec))::float8"


# A row named as the query spells it; the tsquery is a subquery so that it is made once, not once per row.
EXACT_SQL = "search_tsv @@ (SELECT to_tsquery('simple', :exact))"


def word_matches(catalog: Catalog, collection: Collection, words: str, *, exact_name: str | None, limit: int,
                 filters: SearchFilters | None = None, vector: np.ndarray | None = None) -> tuple[list[WordMatch], int]:
    """Embedded rows whose words match `words` (`to_tsquery('simple', …)` text), at most `limit`, and how
    many that is, in the order the GIN index finds them (no sort of every match: a word in every name costs a
    LIMIT)."""
    params: dict[str, Any] = {"words": words, "limit": int(limit)}
    filters = filters or SearchFilters()
    distance = _distance_sql(vector, params)
    exact = "false"
    if exact_name:
        exact, params["exact"] = EXACT_SQL, exact_name
    where = " AND ".join(["status = 'embedded'", "search_tsv @@ to_tsquery('simple', :words)",
                          *filters.sql(params, collection.table)])
    found = (f"SELECT id, {exact} AS exact, {distance} AS distance, {PHOTO_TIME_SQL} AS taken "
             f"FROM {quote_ident(collection.table)} WHERE {where} LIMIT :limit")
    sql = f"SELECT *, count(*) OVER () FROM ({found}) AS m"

    rows = _through_word_index(catalog, collection, sql, params, filters=filters)
    return [WordMatch(row[0], bool(row[1]), row[2], row[3]) for row in rows], (int(rows[0][4]) if rows else 0)


@dataclass(frozen=True)
class PageRow:
    hit: Hit
    in_name: bool  # matches the query's words, some of them in its name (folders, file name)
    in_text: bool  # matches the query's words, some of them in its text (OCR, EXIF)
    in_place: bool = False  # … some of them in its place's names
    in_tag: bool = False  # … some of them in its own tags or caption (IPTC, XMP)


PAGE_FLAGS = ("in_name", "in_text", "in_place", "in_tag")  # PageRow's flags, in order


def _flags_sql(sources: dict[str, str], matched_by: str, params: dict[str, Any]) -> str:
    """SQL of PageRow's flags: a row matches the query's words (`matched_by`, the SQL of its tsquery) and some of
    them in that source (`sources`: flag -> tsquery text, into `params`); false for a source not asked about."""
    flags = []
    for name in PAGE_FLAGS:
        if sources.get(name):
            params[name] = sources[name]
            flags.append(f"search_tsv @@ to_tsquery('simple', {matched_by}) "
                         f"AND search_tsv @@ to_tsquery('simple', :{name})")
        else:
            flags.append("false")
    return ", ".join(flags)


def page_rows(catalog: Catalog, collection: Collection, ids: Sequence[int], *, vector: np.ndarray | None = None,
              words: str | None = None, in_name: str = "", in_text: str = "", in_place: str = "",
              in_tag: str = "") -> dict[int, PageRow]:
    """The rows a page shows, by id: with the score against `vector` and where the query's `words` matched
    (`in_name`/`in_text`/`in_place`/`in_tag`: tsquery text of any query word, weight A, B, C or D)."""
    if not ids:
        return {}
    params: dict[str, Any] = {"ids": list(ids)}
    distance = _distance_sql(vector, params)
    sources = {"in_name": in_name, "in_text": in_text, "in_place": in_place, "in_tag": in_tag}
    if words:
        params["words"] = words
    flags = _flags_sql(sources if words else {}, ":words", params)
    with vectors_of(collection, collection.model_id):
        rows = catalog.db.run(
            f"SELECT {hit_sql(collection)}, {distance}, {flags} FROM {quote_ident(collection.table)} "
            "WHERE id = ANY(CAST(:ids AS bigint[])) AND status = 'embedded'", **params)
    return {row[0]: PageRow(hit_of(row, row[HIT_WIDTH]), *(bool(flag) for flag in row[HIT_WIDTH + 1:]))
            for row in rows}


@dataclass(frozen=True)
class WordList:
    """The word list of a search ranked in SQL, at most `limit` rows: `match` (tsquery text), or `match_prefix` when
    `match` finds fewer than `prefix_below` rows; a row matching `exact_name` (the name the query spells) is `exact`;
    `in_name`/`in_text`/`in_place`/`in_tag` say where a row's words matched (PageRow)."""

    match: str
    match_prefix: str | None
    exact_name: str | None
    limit: int
    prefix_below: int
    in_name: str
    in_text: str
    in_place: str = ""
    in_tag: str = ""

    def sources(self) -> dict[str, str]:
        """PageRow's flags, by name: the tsquery text of each (empty: that source is not asked about)."""
        return {"in_name": self.in_name, "in_text": self.in_text, "in_place": self.in_place, "in_tag": self.in_tag}


@dataclass(frozen=True)
class RankedPage:
    rows: list[PageRow]  # the page, in order
    total: int  # rows in the ranking (the relevant set), 0 when the page is past its end
    newest_id: int | None  # the newest row id as the statement saw it (None when filters.up_to_id was given)
    visual: frozenset[int] = frozenset()  # ids of the page's rows that are picture matches the cutoff kept
    hidden: int = 0  # picture matches the cutoff held back, among the first it looked at
    cutoff_score: float | None = None  # the cutoff's score (None without a cutoff or picture matches)


# Orders `ranked_page` ranks by: a name the query spells first, then the newest; or by date, undated ones last
# (PHOTO_TIME_SQL). Ties: the id, the same way.
RANKED_ORDERS = {
    "relevance": "exact DESC, taken DESC NULLS LAST, id DESC",
    "newest": "taken DESC NULLS LAST, id DESC",
    "oldest": "taken ASC NULLS LAST, id ASC",
}


def _word_list_sql(collection: Collection, words: WordList | None, filters: SearchFilters,
                   params: dict[str, Any]) -> tuple[str, str]:
    """(CTEs ending in `found` (id, taken, exact) and `pick` (prefix: whether the prefixes were used), the SQL of
    the tsquery that found the words, for the page's flags)."""
    if words is None:
        return ("pick AS (SELECT false AS prefix), found AS (SELECT NULL::bigint AS id, NULL::float8 AS taken, "
                "false AS exact WHERE false)"), ""
    q = quote_ident(collection.table)
    where = " AND ".join(["status = 'embedded'", *filters.sql(params, collection.table)])
    params.update(words=words.match, words_prefix=words.match_prefix or words.match, word_limit=int(words.limit),
                  has_prefix=words.match_prefix is not None, prefix_below=int(words.prefix_below))
    exact = "false"
    if words.exact_name:
        exact, params["exact"] = EXACT_SQL, words.exact_name

    def matches(tsquery: str, only_if: str = "true") -> str:
        # At most word_limit rows, ended by a window's run condition rather than a LIMIT: the planner then costs
        # every match, so it never picks an index scan (of ids or dates) that a LIMIT would seem to stop early.
        return (f"SELECT id, taken, exact FROM (SELECT id, {PHOTO_TIME_SQL} AS taken, {exact} AS exact, "
                f"row_number() OVER () AS n FROM {q} WHERE {where} AND search_tsv @@ to_tsquery('simple', {tsquery}) "
                f"AND {only_if}) AS m WHERE m.n <= :word_limit")

    # Whole words first; prefixes (a superset, costlier on a common prefix) only when those find too few.
    return f"""whole AS MATERIALIZED ({matches(':words')}),
        pick AS (SELECT CAST(:has_prefix AS boolean) AND count(*) < :prefix_below AS prefix FROM whole),
        prefixed AS MATERIALIZED ({matches(':words_prefix', '(SELECT prefix FROM pick)')}),
        found AS (SELECT * FROM prefixed UNION ALL SELECT * FROM whole WHERE NOT (SELECT prefix FROM pick))""", \
        "CASE WHEN pick.prefix THEN :words_prefix ELSE :words END"


@dataclass(frozen=True)
class PictureList:
    """The picture matches a search ranked in SQL puts in its relevant set: the nearest rows to the query vector,
    at most `limit`, each scoring at least `min_score`; with `cutoff`, only those its rule keeps against the best
    score, and the list ends where it stops keeping (StopRule; its `after` rows are the ones `hidden` counts in)."""

    limit: int
    min_score: float | None
    ef_search: int
    cutoff: StopRule | None


def _picture_list_sql(collection: Collection, pictures: PictureList | None, vector: np.ndarray | None,
                      similar_to: str | None, filters: SearchFilters, params: dict[str, Any]) -> str:
    """CTEs ending in `kept` (id, taken: the picture matches of the relevant set) and `looked` (one row: `bar`, the
    cutoff's score, NULL without a cutoff or matches; `read`, the rows the list read; `hidden`, those of its first
    cutoff.after scoring under the bar)."""
    if pictures is None:
        return ("kept AS (SELECT NULL::bigint AS id, NULL::float8 AS taken WHERE false), "
                "looked AS (SELECT NULL::float8 AS bar, 0::bigint AS read, 0::bigint AS hidden)")
    session, select = _nearest_sql(collection, vector, similar_to, params, columns=f"id, {PHOTO_TIME_SQL} AS taken",
                                   limit=pictures.limit, min_score=pictures.min_score, filters=filters, after=None,
                                   ef_search=pictures.ef_search, stop=pictures.cutoff)
    bar, hidden = _list_bar_sql(pictures.cutoff, params), "0::bigint"
    if pictures.cutoff is not None:
        hidden = ("(SELECT count(*) FROM (SELECT distance FROM pictures ORDER BY distance, id LIMIT :stop_after) "
                  "AS f WHERE -f.distance < s.bar)")
    return f"""{session}, pictures AS MATERIALIZED ({select}),
        scored AS (SELECT {bar} AS bar, count(*) AS read FROM pictures),
        looked AS (SELECT s.bar, s.read, {hidden} AS hidden FROM scored AS s),
        kept AS (SELECT p.id, p.taken FROM pictures AS p, looked AS l WHERE l.bar IS NULL OR -p.distance >= l.bar)"""


def ranked_page(catalog: Catalog, collection: Collection, pictures: PictureList | None, words: WordList | None, *,
                order: str, offset: int, limit: int, most: int, filters: SearchFilters,
                vector: np.ndarray | None = None, similar_to: str | None = None) -> RankedPage:
    """One page of a search ranked in SQL, in one statement: the relevant set is the picture matches `pictures`
    describes (near `vector` or the stored `similar_to`) and the rows matching `words`, ranked by `order`
    (RANKED_ORDERS), at most `most` of them. The picture list never leaves the database (a thousand rows decoded in
    Python and sent back took twice the statement's own time). The page's rows come back with their score and where
    they matched; and, for a first page (no filters.up_to_id), the newest row id its snapshot holds. Raises
    KeyError as `search` does."""
    q = quote_ident(collection.table)
    # A first page (no bound yet) reads the newest row id in the statement's own snapshot: no row it ranks is newer.
    newest = "NULL::bigint" if filters.up_to_id is not None else f"(SELECT COALESCE(max(id), 0) FROM {q})"
    params: dict[str, Any] = {"offset": int(offset), "page_end": int(offset) + int(limit), "most": int(most)}
    pictures_sql = _picture_list_sql(collection, pictures, vector, similar_to, filters, params)
    words_sql, matched_by = _word_list_sql(collection, words, filters, params)
    distance = "NULL::float8"
    if vector is not None or similar_to is not None:
        distance = f"(embedding <#> {search_target(collection, vector, similar_to, params)})::float8"
    flags = _flags_sql(words.sources() if words is not None else {}, matched_by, params)
    # Words alone: each match once already (grouping a thousand of them cost ~0.9 ms of a 6 ms statement).
    relevant = "SELECT id, taken, exact, false AS visual FROM found" if pictures is None else """
        SELECT id, max(taken) AS taken, bool_or(exact) AS exact, bool_or(visual) AS visual FROM (
            SELECT id, taken, exact, false AS visual FROM found UNION ALL
            SELECT id, taken, false, true FROM kept) AS m
        GROUP BY id"""
    sql = f"""
        WITH {pictures_sql}, {words_sql},
        relevant AS ({relevant}),
        ranked AS (SELECT id, visual, row_number() OVER (ORDER BY {RANKED_ORDERS[order]}) AS rank,
                          count(*) OVER () AS total
                   FROM relevant),
        page AS (SELECT r.rank, r.total, r.visual, p.* FROM ranked AS r CROSS JOIN pick LEFT JOIN LATERAL (
                     SELECT {hit_sql(collection)}, {distance}, {flags} FROM {q} WHERE id = r.id AND status = 'embedded'
                 ) AS p ON true
                 WHERE r.rank > :offset AND r.rank <= :page_end AND r.rank <= :most)
        SELECT l.bar, l.read, l.hidden, {newest}, g.* FROM looked AS l LEFT JOIN page AS g ON true
        ORDER BY g.rank"""
    if words is None:
        with vectors_of(collection, collection.model_id):
            rows = catalog.db.run(sql, **params)
    else:  # index scans kept: the word lists end without a LIMIT; the pictures' HNSW scan and the newest id need them
        rows = _through_word_index(catalog, collection, sql, params, filters=filters, index_scans=True)
    bar, read, hidden, newest_id = rows[0][:4]
    if pictures is not None and not read:
        _check_empty(catalog, collection, vector, similar_to)
    shown = [row[4:] for row in rows if row[7] is not None]  # rank, total, visual, the hit, its distance, flags
    page = [PageRow(hit_of(row[3:], row[3 + HIT_WIDTH]), *(bool(flag) for flag in row[4 + HIT_WIDTH:]))
            for row in shown]
    return RankedPage(page, int(rows[0][5] or 0), None if newest_id is None else int(newest_id),
                      visual=frozenset(row[3] for row in shown if row[2]), hidden=int(hidden), cutoff_score=bar)


def recent(
    catalog: Catalog, collection: Collection, *, limit: int = 30, after: tuple[datetime | None, int] | None = None,
    filters: SearchFilters | None = None,
) -> list[Hit]:
    """Embedded rows, newest `last_modified` first (undated ones first, as the index orders them).

    Keyset pagination: `after` is the (last_modified, id) of the previous page's last row, so rows
    added meanwhile never shift later pages (no duplicates, no gaps).
    """
    q = quote_ident(collection.table)
    params: dict[str, Any] = {"limit": int(limit)}
    where = "status = 'embedded'"
    if after is not None:
        params["after_id"] = int(after[1])
        if after[0] is None:
            where += " AND (last_modified IS NOT NULL OR id < :after_id)"
        else:
            where += " AND (last_modified, id) < (:after_time, :after_id)"
            params["after_time"] = after[0]
    where = " AND ".join([where, *(filters or SearchFilters()).sql(params, collection.table)])
    rows = catalog.db.run(
        f"SELECT {hit_sql(collection)} FROM {q} WHERE {where} ORDER BY last_modified DESC, id DESC LIMIT :limit",
        **params)
    return [hit_of(row) for row in rows]




def dated_ids(catalog: Catalog, collection: Collection, filters: SearchFilters, *, newest: bool,
              limit: int) -> list[int]:
    """Ids of the embedded rows the filters keep, by when the photo was taken (else last modified), undated
    ones last, at most `limit`: a search of person terms alone."""
    params: dict[str, Any] = {"limit": int(limit)}
    where = " AND ".join(["status = 'embedded'", *filters.sql(params, collection.table)])
    way = "DESC" if newest else "ASC"
    rows = catalog.db.run(f"SELECT id FROM {quote_ident(collection.table)} WHERE {where} "
                          f"ORDER BY {PHOTO_TIME_SQL} {way} NULLS LAST, id {way} LIMIT :limit", **params)
    return [int(row[0]) for row in rows]


def stats(catalog: Catalog, collection: Collection) -> dict[str, Any]:
    """Counts by status, bytes of originals, last update and any model move: the gallery's stats widget."""
    q = quote_ident(collection.table)
    ((total_bytes, last_update),) = catalog.db.run(
        f"SELECT COALESCE(sum(size) FILTER (WHERE status <> 'deleted'), 0), max(updated_at) FROM {q}"
    )
    return {
        "collection": collection.name,
        "model": collection.model_id,
        "counts": counts(catalog, collection),
        "bytes": int(total_bytes),
        "last_update": last_update.isoformat() if last_update else None,
        "move": move_status(catalog, collection),
        "ocr_waiting": stage_rows.count_waiting(catalog, collection, stage_rows.OCR),
        "faces_waiting": stage_rows.count_waiting(catalog, collection, stage_rows.FACES),
    }


# ---- rows -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRow:
    key: str
    etag: str | None
    size: int | None
    content_type: str | None
    width: int | None
    height: int | None
    last_modified: datetime | None
    status: Status
    error: str | None
    attempts: int
    updated_at: datetime
    has_embedding: bool


def get_row(catalog: Catalog, collection: Collection, key: str) -> ImageRow | None:
    rows = catalog.db.run(
        f"""SELECT key, etag, size, content_type, width, height, last_modified, status, error,
                   attempts, updated_at, embedding IS NOT NULL
            FROM {quote_ident(collection.table)} WHERE key = :key""",
        key=key,
    )
    return ImageRow(*rows[0]) if rows else None


def hits_by_id(catalog: Catalog, collection: Collection, ids: Sequence[int]) -> dict[int, Hit]:
    """Embedded rows by id, as Hits without a score (duplicate groups)."""
    rows = catalog.db.run(
        f"SELECT {hit_sql(collection)} FROM {quote_ident(collection.table)} "
        "WHERE id = ANY(:ids) AND status = 'embedded'",
        ids=list(ids),
    )
    return {row[0]: hit_of(row) for row in rows}


def is_embedded(catalog: Catalog, collection: Collection, key: str) -> bool:
    """True when `key` has a vector of the collection's model."""
    sql = f"SELECT 1 FROM {quote_ident(collection.table)} WHERE key = :key AND status = 'embedded' " \
          "AND embedding IS NOT NULL"
    return bool(catalog.db.run(sql, key=key))


def counts(catalog: Catalog, collection: Collection) -> dict[str, int]:
    found = {"embedded": 0, "pending": 0, "failed": 0}
    for status, count in catalog.db.run(f"SELECT status, count(*) FROM {quote_ident(collection.table)} "
                                        "GROUP BY status"):
        if status in found:
            found[status] = int(count)
    return found


def row_states(catalog: Catalog, collection: Collection) -> dict[str, tuple[str | None, str, datetime]]:
    """key -> (etag, status, updated_at) of every row, tombstones included: the reconcile input."""
    return {key: (etag, status, updated) for key, etag, status, updated in
            catalog.db.run(f"SELECT key, etag, status, updated_at FROM {quote_ident(collection.table)}")}


def db_now(catalog: Catalog) -> datetime:
    """The database clock (rows' updated_at use it)."""
    return catalog.db.run("SELECT now()")[0][0]


def move_progress(catalog: Catalog, collection: Collection) -> tuple[int, int]:
    """(rows with the next model's vector, embedded rows) while the collection moves to another model."""
    ((done, total),) = catalog.db.run(
        "SELECT count(*) FILTER (WHERE embedding_next IS NOT NULL), count(*) "
        f"FROM {quote_ident(collection.table)} WHERE status = 'embedded'"
    )
    return int(done), int(total)


def move_status(catalog: Catalog, collection: Collection) -> dict[str, Any] | None:
    """The `move` block of /api/stats: from, to, done, total; None when no move is under way."""
    if not collection.next_model_id:
        return None
    done, total = move_progress(catalog, collection)
    return {"from": collection.model_id, "to": collection.next_model_id, "done": done, "total": total}
