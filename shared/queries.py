"""Queries over a collection: nearest neighbours (text, image or a stored image), newest first, stats,
and the reads of single rows the writers need.

Each is one statement: the search sets its HNSW settings inside its own transaction and checks, in
the same statement, that the collection still records the model the query vector came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from shared.catalog import Catalog, CatalogError, Collection, Status, model_guard, vector_literal, vectors_of
from shared.db import quote_ident


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


@dataclass(frozen=True)
class SearchFilters:
    """Filters that combine with vector search: key prefix, last_modified range, content type."""

    prefix: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    content_type: str | None = None

    def sql(self, params: dict[str, Any]) -> list[str]:
        """WHERE terms; the values go into `params`, never into the SQL text."""
        terms = []
        if self.prefix:
            terms.append("starts_with(key, :prefix)")
            params["prefix"] = self.prefix
        if self.after is not None:
            terms.append("last_modified >= :modified_after")
            params["modified_after"] = self.after
        if self.before is not None:
            terms.append("last_modified < :modified_before")
            params["modified_before"] = self.before
        if self.content_type:
            terms.append("content_type = :content_type")
            params["content_type"] = self.content_type
        return terms


def _from_epoch(seconds: float | None) -> datetime | None:
    """Timestamps come back as epoch seconds: parsing pg8000's text timestamps costs ~15 µs each."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _search_target(collection: Collection, vector: np.ndarray | None, similar_to: str | None,
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
    params.update(vec=vector_literal(vector), collection=collection.name, model_id=collection.model_id)
    return "CAST(:vec AS halfvec)"


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
    q = quote_ident(collection.table)
    params: dict[str, Any] = {"limit": int(limit)}
    target = _search_target(collection, vector, similar_to, params)
    where = ["embedding IS NOT NULL", "status = 'embedded'"]
    if similar_to is not None:
        # A one-time gate: no stored vector (unknown key) means no rows, not NULL distances.
        where += ["key <> :source", f"{target} IS NOT NULL"]
    where += (filters or SearchFilters()).sql(params)
    if after is not None:
        where.append(f"(embedding <#> {target}, id) > (:after_distance, :after_id)")
        params["after_distance"], params["after_id"] = float(after[0]), int(after[1])
    cutoff = ""
    if min_score is not None:
        # Applied outside the index scan: hits come best first, so the first weak one ends the
        # page instead of making the iterative scan walk the whole graph for nothing.
        cutoff = "WHERE h.distance <= :max_distance"
        params["max_distance"] = -float(min_score)
    params["ef"] = str(max(int(ef_search), int(limit)))
    # One statement, one round trip. `set_config(..., true)` is SET LOCAL: it lasts for this
    # statement's own transaction. The lateral subquery refers to `cfg`, so the settings are in
    # place before the index scan starts.
    # A query vector is compared only while the registry still names its model (else no rows).
    sql = f"""
        WITH cfg AS MATERIALIZED (
            SELECT set_config('hnsw.ef_search', :ef, true) AS ef,
                   set_config('hnsw.iterative_scan', 'relaxed_order', true) AS scan
            {"WHERE " + model_guard() if vector is not None else ""}
        )
        SELECT h.id, h.key, h.size, h.content_type, h.width, h.height,
               extract(epoch FROM h.last_modified)::float8, h.distance
        FROM cfg CROSS JOIN LATERAL (
            SELECT id, key, size, content_type, width, height, last_modified,
                   embedding <#> {target} AS distance
            FROM {q}
            WHERE {" AND ".join(where)} AND cfg.scan IS NOT NULL
            ORDER BY embedding <#> {target}
            LIMIT :limit
        ) AS h
        {cutoff} ORDER BY h.distance + 0, h.id"""
    with vectors_of(collection, collection.model_id):
        rows = catalog.db.run(sql, **params)
    if not rows and similar_to is not None and not is_embedded(catalog, collection, similar_to):
        raise KeyError(similar_to)
    if not rows and vector is not None:
        catalog.raise_if_moved(collection, collection.model_id, None)
    return [Hit(row[0], row[1], -float(row[7]), row[2], row[3], row[4], row[5], _from_epoch(row[6]),
                float(row[7])) for row in rows]

def recent(
    catalog: Catalog, collection: Collection, *, limit: int = 30, after: tuple[datetime | None, int] | None = None
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
    rows = catalog.db.run(
        f"""SELECT id, key, size, content_type, width, height, extract(epoch FROM last_modified)::float8
            FROM {q} WHERE {where} ORDER BY last_modified DESC, id DESC LIMIT :limit""",
        **params,
    )
    return [Hit(row[0], row[1], None, row[2], row[3], row[4], row[5], _from_epoch(row[6])) for row in rows]




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
