"""Duplicates: the same bytes under several keys, and pictures whose vectors (almost) coincide.

Three levels, each a set of groups with a suggested copy to keep:
- exact: the same SHA-256 of the object's bytes (computed at ingest; S3 ETags are no content hash for
  multipart uploads);
- near: cosine distance <= 0.01 (Immich's duplicate detection default): re-encodes, resizes, tiny edits;
- similar: cosine distance <= 0.06 (clip-retrieval deduplicates at similarity 0.94; Ente's similar-images
  view uses 0.04): bursts and retakes of one scene.

Near and similar groups come from the HNSW index: each image's nearest neighbours (one index scan per
image, inside the database) are found once for its content and model — at ingest, by the sweep for older
images, or by the request itself for the few still missing — and kept in a table of their own; a request
then joins the pairs within its threshold by union-find. Never an n² comparison, and a page costs a scan
of the stored lists, not an index scan per image.

Also here: finding a stored copy of the same bytes, so ingest reuses its vector without a model call,
and folding near-duplicates of a search page into one item (`collapse=near`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC
from typing import Any, Literal

import numpy as np

from shared.store import queries
from shared.store.catalog import Catalog, Collection, model_guard, vectors_of
from shared.store.db import quote_ident
from shared.store.queries import Hit, SearchFilters
from shared.store.tables import neighbours_table, neighbours_table_sql

Level = Literal["exact", "near", "similar"]
NEIGHBOURS = 16  # kept per image; a burst larger than this still joins up through shared neighbours
RADIUS = 0.15  # cosine distance up to which neighbours are kept: the largest threshold a request may ask
EF_SEARCH = 40  # duplicates are each other's very nearest neighbours: a small candidate list finds them
ANCHORS_PER_STATEMENT = 2000  # images whose neighbours one statement finds
INDEX_SECONDS = 10.0  # a request finds missing neighbour lists for about this long, then answers


@dataclass(frozen=True)
class StoredCopy:
    """An embedded row with the same bytes: its key and its vectors (the live model's, then the next's)."""

    key: str
    vectors: list[np.ndarray]


@dataclass(frozen=True)
class Group:
    """One set of duplicates, the suggested keeper first."""

    level: Level
    items: list[Hit]

    @property
    def keep(self) -> Hit:
        return self.items[0]


def content_hash(data: bytes) -> str:
    """What makes two objects exact duplicates: the SHA-256 of their bytes, hex."""
    return hashlib.sha256(data).hexdigest()


def _parse_vector(text: str) -> np.ndarray:
    return np.array(text.strip("[]").split(","), dtype=np.float32)


def stored_copy(catalog: Catalog, collection: Collection, sha256: str, key: str, *,
                with_next: bool = False) -> StoredCopy | None:
    """An embedded row (not `key`) with these bytes, and its vectors; None if there is none, or, while a
    model move runs (`with_next`), if that row lacks the next model's vector."""
    rows = catalog.db.run(
        f"SELECT key, embedding::text, embedding_next::text FROM {quote_ident(collection.table)} "
        "WHERE sha256 = :sha256 AND key <> :key AND status = 'embedded' AND embedding IS NOT NULL "
        f"{'AND embedding_next IS NOT NULL ' if with_next else ''}LIMIT 1",
        sha256=sha256, key=key,
    )
    if not rows:
        return None
    copy_key, live, following = rows[0]
    return StoredCopy(copy_key, [_parse_vector(live)] + ([_parse_vector(following)] if with_next else []))


# ---- grouping -----------------------------------------------------------------------------------


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, item: int) -> int:
        root = self.parent.setdefault(item, item)
        while root != self.parent[root]:
            root = self.parent[root]
        while item != root:  # path compression
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)

    def sets(self) -> list[list[int]]:
        members: dict[int, list[int]] = {}
        for item in self.parent:
            members.setdefault(self.find(item), []).append(item)
        return [sorted(ids) for ids in members.values() if len(ids) > 1]


def _ensure_neighbours_table(catalog: Catalog, collection: Collection) -> str:
    """The collection's neighbours table (tables.py), created once per process for tables made before it."""
    if collection.table not in _READY:
        catalog.db.run(neighbours_table_sql(collection.table))
        _READY.add(collection.table)
    return quote_ident(neighbours_table(collection.table))


_READY: set[str] = set()


def index_neighbours(catalog: Catalog, collection: Collection, *, keys: Sequence[str] | None = None,
                     limit: int = ANCHORS_PER_STATEMENT) -> int:
    """Find and store the nearest neighbours (up to NEIGHBOURS, within RADIUS) of embedded images whose list
    is missing or stale (another etag or model): of `keys`, else of the next `limit` such images. One
    statement: an HNSW scan per image inside PostgreSQL. Returns how many images got their list."""
    q, near = quote_ident(collection.table), _ensure_neighbours_table(catalog, collection)
    params: dict[str, Any] = {"collection": collection.name, "model_id": collection.model_id, "k": NEIGHBOURS,
                              "ef": str(max(EF_SEARCH, NEIGHBOURS)), "radius": RADIUS, "limit": int(limit)}
    only = ""
    if keys is not None:
        only, params["keys"] = "AND t.key = ANY(:keys)", list(keys)
    # set_config(..., true) lasts for this statement's transaction; the lateral scan refers to `cfg`, so the
    # settings are in place before the first index scan, and nothing runs once the collection left its model.
    # `<#>` is the negative inner product: cosine distance = 1 + (a <#> b) for unit vectors.
    sql = f"""
        WITH cfg AS MATERIALIZED (
            SELECT set_config('hnsw.ef_search', :ef, true) AS ef,
                   set_config('hnsw.iterative_scan', 'off', true) AS scan
            WHERE {model_guard()}),
        todo AS (
            SELECT t.id, t.etag, t.embedding FROM {q} AS t LEFT JOIN {near} AS s ON s.id = t.id
            WHERE t.status = 'embedded' AND t.embedding IS NOT NULL {only}
              AND (s.id IS NULL OR s.model_id <> :model_id OR s.etag IS DISTINCT FROM t.etag)
            ORDER BY t.id LIMIT :limit),
        found AS (
            SELECT todo.id, todo.etag,
                   coalesce(array_agg(n.id ORDER BY n.distance) FILTER (WHERE n.id IS NOT NULL), '{{}}') AS ids,
                   coalesce(array_agg(n.distance ORDER BY n.distance) FILTER (WHERE n.id IS NOT NULL), '{{}}')
                       AS distances
            FROM cfg CROSS JOIN todo LEFT JOIN LATERAL (
                SELECT b.id, (1 + (b.embedding <#> todo.embedding))::real AS distance FROM {q} AS b
                WHERE b.embedding IS NOT NULL AND cfg.scan IS NOT NULL
                ORDER BY b.embedding <#> todo.embedding LIMIT :k) AS n ON n.id <> todo.id AND n.distance <= :radius
            GROUP BY todo.id, todo.etag)
        INSERT INTO {near} (id, etag, model_id, near_ids, near_distances)
        SELECT id, etag, :model_id, ids, distances FROM found
        ON CONFLICT (id) DO UPDATE SET etag = EXCLUDED.etag, model_id = EXCLUDED.model_id,
            near_ids = EXCLUDED.near_ids, near_distances = EXCLUDED.near_distances
        RETURNING id"""
    with vectors_of(collection, collection.model_id):
        return len(catalog.db.run(sql, **params))


def forget_gone(catalog: Catalog, collection: Collection) -> int:
    """Drop the neighbour lists of images no longer embedded (deleted, replaced and waiting); how many."""
    near = _ensure_neighbours_table(catalog, collection)
    return len(catalog.db.run(
        f"DELETE FROM {near} AS s WHERE NOT EXISTS (SELECT 1 FROM {quote_ident(collection.table)} AS t "
        "WHERE t.id = s.id AND t.status = 'embedded') RETURNING s.id"))


def index_missing(catalog: Catalog, collection: Collection, *, seconds: float) -> int:
    """Neighbour lists for the images that lack one, for about `seconds` at most (whole statements);
    how many still lack one after that (the sweep, or the next request, does them)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if index_neighbours(catalog, collection) < ANCHORS_PER_STATEMENT:
            return 0
    ((left,),) = catalog.db.run(
        f"SELECT count(*) FROM {quote_ident(collection.table)} AS t "
        f"LEFT JOIN {_ensure_neighbours_table(catalog, collection)} AS s ON s.id = t.id "
        "WHERE t.status = 'embedded' AND t.embedding IS NOT NULL "
        "AND (s.id IS NULL OR s.model_id <> :model_id OR s.etag IS DISTINCT FROM t.etag)",
        model_id=collection.model_id,
    )
    return int(left)


def neighbour_pairs(catalog: Catalog, collection: Collection, threshold: float) -> list[tuple[int, int]]:
    """(image, neighbour) id pairs within cosine distance `threshold`, from the stored neighbour lists,
    each distance checked again against the current vectors (a neighbour may have changed since)."""
    q = quote_ident(collection.table)
    with vectors_of(collection, collection.model_id):
        rows = catalog.db.run(
            f"""SELECT a.id, b.id
                FROM {_ensure_neighbours_table(catalog, collection)} AS s JOIN {q} AS a ON a.id = s.id
                CROSS JOIN LATERAL unnest(s.near_ids, s.near_distances) AS n(id, distance)
                JOIN {q} AS b ON b.id = n.id
                WHERE s.model_id = :model_id AND s.etag IS NOT DISTINCT FROM a.etag AND n.distance <= :loose
                  AND a.status = 'embedded' AND b.status = 'embedded'
                  AND 1 + (a.embedding <#> b.embedding) <= :threshold""",
            model_id=collection.model_id, threshold=float(threshold), loose=float(threshold) + 1e-4,  # real's rounding
        )
    return [(a, b) for a, b in rows]


def exact_sets(catalog: Catalog, collection: Collection) -> list[list[int]]:
    """Ids of embedded rows sharing a SHA-256, one list per hash with more than one row."""
    rows = catalog.db.run(
        f"SELECT array_agg(id ORDER BY id) FROM {quote_ident(collection.table)} "
        "WHERE status = 'embedded' AND sha256 IS NOT NULL GROUP BY sha256 HAVING count(*) > 1"
    )
    return [list(ids) for (ids,) in rows]


def group_sets(catalog: Catalog, collection: Collection, level: Level, threshold: float) -> tuple[list[list[int]], int]:
    """Every group's ids, biggest first (then by smallest id, so pages are stable), and how many images
    are not compared yet (near and similar: neighbour lists are made for up to INDEX_SECONDS first)."""
    if level == "exact":
        sets, waiting = exact_sets(catalog, collection), 0
    else:
        waiting = index_missing(catalog, collection, seconds=INDEX_SECONDS)
        union = UnionFind()
        for a, b in neighbour_pairs(catalog, collection, threshold):
            union.union(a, b)
        sets = union.sets()
    return sorted(sets, key=lambda ids: (-len(ids), ids[0])), waiting


def keep_order(hit: Hit) -> tuple[Any, ...]:
    """The keeper first: most pixels, then taken earliest (undated last), then the shortest key."""
    taken = hit.taken_at
    when = (taken if taken.tzinfo else taken.replace(tzinfo=UTC)).timestamp() if taken else 0.0
    return (-((hit.width or 0) * (hit.height or 0)), taken is None, when, len(hit.key), hit.key)


def group_page(catalog: Catalog, collection: Collection, level: Level, threshold: float, *, limit: int,
               after: tuple[int, int] | None = None) -> tuple[list[Group], tuple[int, int] | None, int, int]:
    """One page of groups, biggest first: (groups, position for the next page or None, total groups, images
    not compared yet). `after` is the (size, smallest id) of the previous page's last group."""
    listing, waiting = group_sets(catalog, collection, level, threshold)
    sets = listing if after is None else [ids for ids in listing if (-len(ids), ids[0]) > (-after[0], after[1])]
    page = sets[:limit]
    rows = queries.hits_by_id(catalog, collection, [i for ids in page for i in ids])
    groups = []
    for ids in page:
        members = sorted((rows[i] for i in ids if i in rows), key=keep_order)
        if len(members) > 1:  # a member deleted meanwhile may leave one
            groups.append(Group(level, members))
    following = (len(page[-1]), page[-1][0]) if len(sets) > limit else None
    return _scored(catalog, collection, groups), following, len(listing), waiting


def _scored(catalog: Catalog, collection: Collection, groups: list[Group]) -> list[Group]:
    """Each member's `score`: its cosine similarity to the group's keeper (1 for the keeper and for exact
    copies, which halfvec's rounding would show as 0.9999)."""
    pairs = [(hit.id, group.keep.id) for group in groups if group.level != "exact" for hit in group.items[1:]]
    q = quote_ident(collection.table)
    with vectors_of(collection, collection.model_id):
        scores = {} if not pairs else dict(catalog.db.run(
            f"""SELECT m.id, -(m.embedding <#> k.embedding)::float8
                FROM unnest(CAST(:members AS bigint[]), CAST(:keepers AS bigint[])) AS p(member, keeper)
                JOIN {q} AS m ON m.id = p.member JOIN {q} AS k ON k.id = p.keeper""",
            members=[member for member, _ in pairs], keepers=[keeper for _, keeper in pairs],
        ))
    return [Group(group.level, [replace(hit, score=round(float(scores.get(hit.id, 1.0)), 6)) for hit in group.items])
            for group in groups]


# ---- collapse=near on a search page -----------------------------------------------------------------


def collapse_near(catalog: Catalog, collection: Collection, hits: Sequence[Hit], threshold: float, *,
                  vector: np.ndarray | None = None, similar_to: str | None = None,
                  filters: SearchFilters | None = None) -> list[tuple[Hit, int]]:
    """The page's hits with near-duplicates folded: (hit, how many near-duplicates it stands for).

    Of a hit and its neighbours within `threshold` (that pass the same filters), the one closest to the
    query stands for them all (ties: the lower id); the others are left out here and on every other page,
    so the rule does not depend on paging. Without a query vector the lowest id stands for them.
    """
    if not hits:
        return []
    q = quote_ident(collection.table)
    params: dict[str, Any] = {"ids": [hit.id for hit in hits], "k": NEIGHBOURS,
                              "ef": str(max(EF_SEARCH, NEIGHBOURS)), "max_distance": float(threshold) - 1.0}
    has_target = vector is not None or similar_to is not None
    # The same query vector (or stored image) the search compared against.
    target = queries._search_target(collection, vector, similar_to, params) if has_target else "NULL"
    where = (filters or SearchFilters()).sql(params) + (["key <> :source"] if similar_to is not None else [])
    with vectors_of(collection, collection.model_id):
        rows = catalog.db.run(
            f"""WITH cfg AS MATERIALIZED (
                SELECT set_config('hnsw.ef_search', :ef, true) AS ef,
                       set_config('hnsw.iterative_scan', 'off', true) AS scan)
            SELECT a.id, a.embedding <#> {target}, n.id, n.query_distance
            FROM cfg CROSS JOIN {q} AS a LEFT JOIN LATERAL (
                SELECT id, embedding <#> a.embedding AS distance, embedding <#> {target} AS query_distance
                FROM {q} WHERE embedding IS NOT NULL AND status = 'embedded' AND cfg.scan IS NOT NULL
                {"".join(" AND " + term for term in where)}
                ORDER BY embedding <#> a.embedding LIMIT :k) AS n
              ON n.id <> a.id AND n.distance <= :max_distance
            WHERE a.id = ANY(:ids)""",
            **params,
        )
    # (distance to the query, id): the lower stands for the group. No query: distances are NULL, ids decide.
    rank: dict[int, tuple[float, int]] = {}
    neighbours: dict[int, list[tuple[float, int]]] = {}
    for hit_id, own, other, other_distance in rows:
        rank[hit_id] = (float(own or 0.0), hit_id)
        if other is not None:
            neighbours.setdefault(hit_id, []).append((float(other_distance or 0.0), other))
    shown = []
    for hit in hits:
        near = neighbours.get(hit.id, [])
        if hit.id not in rank or all(rank[hit.id] < other for other in near):
            shown.append((hit, len(near)))
    return shown
