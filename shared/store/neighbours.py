"""Duplicates' SQL: each image's stored nearest neighbours, rows with the same bytes, and the neighbours
of a search page's hits. The grouping (union-find, the keeper, paging, folding a page) is
shared/search/duplicates.py.

Each image's nearest neighbours are found once for its content and model (one HNSW scan per image, inside
the database) and kept in the collection's neighbours table (tables.neighbours_table_sql), so a page of
groups costs a scan of the stored lists, not an index scan per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.store.catalog import Catalog, Collection, model_guard, vectors_of
from shared.store.db import quote_ident
from shared.store.hnsw import hnsw_session
from shared.store.queries import SearchFilters, search_target
from shared.store.tables import neighbours_table
from shared.store.vectors import as_array

NEIGHBOURS = 16  # kept per image; a burst larger than this still joins up through shared neighbours
RADIUS = 0.15  # cosine distance up to which neighbours are kept: the largest threshold a request may ask
EF_SEARCH = 40  # duplicates are each other's very nearest neighbours: a small candidate list finds them
ANCHORS_PER_STATEMENT = 2000  # images whose neighbours one statement finds

# Embedded images whose neighbour list (`s`) is missing or stale (another etag or model).
NEEDS_LIST = ("t.status = 'embedded' AND t.embedding IS NOT NULL "
              "AND (s.id IS NULL OR s.model_id <> :model_id OR s.etag IS DISTINCT FROM t.etag)")


@dataclass(frozen=True)
class StoredCopy:
    """An embedded row with the same bytes: its key and its vectors (the live model's, then the next's)."""

    key: str
    vectors: list[np.ndarray]


def stored_copy(catalog: Catalog, collection: Collection, sha256: str, key: str, *,
                with_next: bool = False) -> StoredCopy | None:
    """An embedded row (not `key`) with these bytes, and its vectors; None if there is none, or, while a
    model move runs (`with_next`), if that row lacks the next model's vector."""
    rows = catalog.db.run(
        f"SELECT key, embedding, embedding_next FROM {quote_ident(collection.table)} "
        "WHERE sha256 = :sha256 AND key <> :key AND status = 'embedded' AND embedding IS NOT NULL "
        f"{'AND embedding_next IS NOT NULL ' if with_next else ''}LIMIT 1",
        sha256=sha256, key=key,
    )
    if not rows:
        return None
    copy_key, live, following = rows[0]
    return StoredCopy(copy_key, [as_array(live)] + ([as_array(following)] if with_next else []))


def _near(collection: Collection) -> str:
    return quote_ident(neighbours_table(collection.table))


def index_neighbours(catalog: Catalog, collection: Collection, *, keys: Sequence[str] | None = None,
                     limit: int = ANCHORS_PER_STATEMENT) -> int:
    """Find and store the nearest neighbours (up to NEIGHBOURS, within RADIUS) of embedded images whose list
    is missing or stale (another etag or model): of `keys`, else of the next `limit` such images. One
    statement: an HNSW scan per image inside PostgreSQL. Returns how many images got their list."""
    q, near = quote_ident(collection.table), _near(collection)
    params: dict[str, Any] = {"collection": collection.name, "model_id": collection.model_id, "k": NEIGHBOURS,
                              "radius": RADIUS, "limit": int(limit)}
    only = ""
    if keys is not None:
        only, params["keys"] = "AND t.key = ANY(:keys)", list(keys)
    # Nothing runs once the collection left its model (`cfg` has no row then).
    # `<#>` is the negative inner product: cosine distance = 1 + (a <#> b) for unit vectors.
    session = hnsw_session(params, ef_search=max(EF_SEARCH, NEIGHBOURS), iterative_scan="off", only_if=model_guard())
    sql = f"""
        WITH {session},
        todo AS (
            SELECT t.id, t.etag, t.embedding FROM {q} AS t LEFT JOIN {near} AS s ON s.id = t.id
            WHERE {NEEDS_LIST} {only}
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
    return len(catalog.db.run(
        f"DELETE FROM {_near(collection)} AS s WHERE NOT EXISTS (SELECT 1 FROM {quote_ident(collection.table)} "
        "AS t WHERE t.id = s.id AND t.status = 'embedded') RETURNING s.id"))


def count_missing(catalog: Catalog, collection: Collection) -> int:
    """Embedded images whose neighbour list is missing or stale."""
    ((left,),) = catalog.db.run(
        f"SELECT count(*) FROM {quote_ident(collection.table)} AS t LEFT JOIN {_near(collection)} AS s "
        f"ON s.id = t.id WHERE {NEEDS_LIST}",
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
                FROM {_near(collection)} AS s JOIN {q} AS a ON a.id = s.id
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


def similarities(catalog: Catalog, collection: Collection, pairs: Sequence[tuple[int, int]]) -> dict[int, float]:
    """member id -> its cosine similarity to its keeper, for (member, keeper) id pairs."""
    if not pairs:
        return {}
    q = quote_ident(collection.table)
    with vectors_of(collection, collection.model_id):
        return dict(catalog.db.run(
            f"""SELECT m.id, -(m.embedding <#> k.embedding)::float8
                FROM unnest(CAST(:members AS bigint[]), CAST(:keepers AS bigint[])) AS p(member, keeper)
                JOIN {q} AS m ON m.id = p.member JOIN {q} AS k ON k.id = p.keeper""",
            members=[member for member, _ in pairs], keepers=[keeper for _, keeper in pairs],
        ))


def near_hits(catalog: Catalog, collection: Collection, ids: Sequence[int], threshold: float, *,
              vector: np.ndarray | None = None, similar_to: str | None = None,
              filters: SearchFilters | None = None) -> list[list[Any]]:
    """For each of the rows `ids` (a search page): (id, its distance to the query, a neighbour's id, that
    neighbour's distance to the query), one row per neighbour within cosine distance `threshold` that passes
    the same filters (a row with NULLs when it has none). Distances to the query are NULL without one."""
    q = quote_ident(collection.table)
    params: dict[str, Any] = {"ids": list(ids), "k": NEIGHBOURS, "max_distance": float(threshold) - 1.0}
    has_target = vector is not None or similar_to is not None
    # The same query vector (or stored image) the search compared against.
    target = search_target(collection, vector, similar_to, params) if has_target else "NULL"
    where = (filters or SearchFilters()).sql(params, collection.table)
    where += ["key <> :source"] if similar_to is not None else []
    session = hnsw_session(params, ef_search=max(EF_SEARCH, NEIGHBOURS), iterative_scan="off")
    with vectors_of(collection, collection.model_id):
        return catalog.db.run(
            f"""WITH {session}
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
