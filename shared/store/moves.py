"""A model move's SQL: recording the next model, claiming rows for its vectors, its index, and the switch.

The steps and their order are shared/ingest/model_move.py's; this module only says what each does to the
registry and to the collection's table.
"""

from __future__ import annotations

from collections.abc import Sequence

import pg8000.native

from shared.store import leases
from shared.store.catalog import REGISTRY, Catalog, Collection, valid_dim
from shared.store.db import quote_ident
from shared.store.errors import CatalogError
from shared.store.tables import hnsw_index_sql

# Rows a move still has to give the next model's vector.
WITHOUT_NEXT = "status = 'embedded' AND embedding_next IS NULL"


def begin(catalog: Catalog, collection: Collection, model_id: str, dim: int) -> bool:
    """Record the target model; returns False when this move was already under way (resume)."""
    dim = valid_dim(dim)
    q = quote_ident(collection.table)

    def start(conn: pg8000.native.Connection) -> bool:
        ((next_model, next_dim),) = conn.run(
            f"SELECT next_model_id, next_dim FROM {REGISTRY} WHERE name = :name FOR UPDATE", name=collection.name
        )
        if next_model == model_id and next_dim == dim:
            return False
        conn.run(f"UPDATE {q} SET embedding_next = NULL WHERE embedding_next IS NOT NULL")
        conn.run(f"DROP INDEX IF EXISTS {quote_ident(collection.table + '_hnsw2')}")
        conn.run(f"ALTER TABLE {q} ALTER COLUMN embedding_next TYPE halfvec({dim})")
        conn.run(
            f"UPDATE {REGISTRY} SET next_model_id = :model_id, next_dim = :dim WHERE name = :name",
            model_id=model_id, dim=dim, name=collection.name,
        )
        return True

    return catalog.db.transaction(start)


def claim(catalog: Catalog, collection: Collection, limit: int, *, lease_seconds: float = leases.LEASE_SECONDS,
          keys: Sequence[str] | None = None) -> list[tuple[str, str | None]]:
    """Claim embedded rows that have no vector of the next model yet: (key, etag). `keys`: only these (a
    re-embedding work message's), so a message delivered twice is embedded once."""
    waiting = WITHOUT_NEXT + (" AND key = ANY(CAST(:keys AS text[]))" if keys is not None else "")
    rows = leases.claim(catalog.db, collection.table, waiting=waiting, lease_column="next_attempt_at",
                        returning="key, etag", limit=limit, lease_seconds=lease_seconds,
                        **({"keys": list(keys)} if keys is not None else {}))
    return [(key, etag) for key, etag in rows]


def release(catalog: Catalog, collection: Collection, keys: Sequence[str]) -> None:
    """Give claimed rows back at once (a transient failure): the message's retry claims them again."""
    catalog.db.run(f"UPDATE {quote_ident(collection.table)} SET next_attempt_at = NULL "
                   f"WHERE key = ANY(CAST(:keys AS text[])) AND {WITHOUT_NEXT}", keys=list(keys))


def build_next_index(catalog: Catalog, collection: Collection) -> None:
    """The next model's HNSW index, built beside the live one without blocking writes."""
    catalog.db.run(hnsw_index_sql(collection.table, "embedding_next", index=collection.table + "_hnsw2",
                                  concurrently=True))


def switch(catalog: Catalog, collection: Collection, *, force: bool = False) -> bool:
    """Make the next model live in one short transaction (column renames, no rewrite).

    Rows embedded meanwhile by the old model alone make it return False, unless `force`, which sets
    them back to `pending` for a sweep with the new model.
    """
    q, table = quote_ident(collection.table), collection.table

    def swap(conn: pg8000.native.Connection) -> bool:
        ((next_model,),) = conn.run(
            f"SELECT next_model_id FROM {REGISTRY} WHERE name = :name FOR UPDATE", name=collection.name
        )
        if not next_model:
            raise CatalogError(f"collection {collection.name!r} is not moving to another model")
        conn.run(f"LOCK TABLE {q} IN EXCLUSIVE MODE")  # writers wait; readers go on
        ((left,),) = conn.run(f"SELECT count(*) FROM {q} WHERE {WITHOUT_NEXT}")
        if left and not force:
            return False
        conn.run(f"UPDATE {q} SET status = 'pending', embedding = NULL, next_attempt_at = NULL WHERE {WITHOUT_NEXT}")
        conn.run(f"ALTER TABLE {q} RENAME COLUMN embedding TO embedding_old")
        conn.run(f"ALTER TABLE {q} RENAME COLUMN embedding_next TO embedding")
        conn.run(f"ALTER TABLE {q} DROP COLUMN embedding_old")  # drops the old HNSW index with it
        conn.run(f"ALTER TABLE {q} ADD COLUMN embedding_next halfvec")
        conn.run(f"ALTER INDEX IF EXISTS {quote_ident(table + '_hnsw2')} RENAME TO {quote_ident(table + '_hnsw')}")
        conn.run(hnsw_index_sql(table))
        conn.run(f"UPDATE {REGISTRY} SET model_id = next_model_id, dim = next_dim, next_model_id = NULL, "
                 "next_dim = NULL WHERE name = :name", name=collection.name)
        return True

    return catalog.db.transaction(swap)
