"""Moving a collection to another model without downtime.

1. `begin`: the registry records the next model; `embedding_next` takes its dimension.
2. The move's own pass (`reembed`) writes the next model's vector beside the live one for every
   embedded row, through the ingest pipeline; meanwhile new uploads get both vectors from any
   deployment that holds both models (`Ingestor.writes_for`).
3. `switch`: one short transaction renames the columns and records the new model. Searches use the
   old model until then and the new one after; every process reads the registry per request or batch.

The pass is resumable: rows are claimed with a lease, and a run cut short by its deadline (the backfill
function's `reembed` flag) goes on where it stopped the next time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pg8000.native

from shared.embedders import Embedder
from shared.ingest.pipeline import Ingestor, IngestReport, WorkItem, Writes
from shared.jobs import Deadline
from shared.store.catalog import MAX_DIM, REGISTRY, Catalog, CatalogError, Collection
from shared.store.db import quote_ident
from shared.store.queries import move_progress
from shared.store.tables import hnsw_index_sql

log = logging.getLogger(__name__)

SWITCH_TRIES = 3  # passes over rows embedded by the old model meanwhile, before the switch forces
CLAIM_LEASE_SECONDS = 600.0


@dataclass
class ReembedSummary:
    collection: str
    model: str
    embedded: int = 0
    failed: int = 0
    switched: bool = False
    reset_to_pending: int = 0
    stopped_early: bool = False

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def begin(catalog: Catalog, collection: Collection, model_id: str, dim: int) -> bool:
    """Record the target model; returns False when this move was already under way (resume)."""
    if not (0 < int(dim) <= MAX_DIM):
        raise CatalogError(f"embedding dimension must be 1..{MAX_DIM}, got {dim}")
    q = quote_ident(collection.table)

    def start(conn: pg8000.native.Connection) -> bool:
        ((next_model, next_dim),) = conn.run(
            f"SELECT next_model_id, next_dim FROM {REGISTRY} WHERE name = :name FOR UPDATE", name=collection.name
        )
        if next_model == model_id and next_dim == int(dim):
            return False
        conn.run(f"UPDATE {q} SET embedding_next = NULL WHERE embedding_next IS NOT NULL")
        conn.run(f"DROP INDEX IF EXISTS {quote_ident(collection.table + '_hnsw2')}")
        conn.run(f"ALTER TABLE {q} ALTER COLUMN embedding_next TYPE halfvec({int(dim)})")
        conn.run(
            f"UPDATE {REGISTRY} SET next_model_id = :model_id, next_dim = :dim WHERE name = :name",
            model_id=model_id, dim=int(dim), name=collection.name,
        )
        return True

    return catalog.db.transaction(start)


def claim(catalog: Catalog, collection: Collection, limit: int, *,
          lease_seconds: float = CLAIM_LEASE_SECONDS) -> list[tuple[str, str | None]]:
    """Claim embedded rows that have no vector of the next model yet: (key, etag)."""
    q = quote_ident(collection.table)
    rows = catalog.db.run(
        f"""UPDATE {q} SET next_attempt_at = now() + make_interval(secs => :lease)
            WHERE id IN (
                SELECT id FROM {q}
                WHERE status = 'embedded' AND embedding_next IS NULL
                  AND (next_attempt_at IS NULL OR next_attempt_at <= now())
                ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)
            RETURNING key, etag""",
        lease=float(lease_seconds), limit=int(limit),
    )
    return [(key, etag) for key, etag in rows]


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
        ((left,),) = conn.run(f"SELECT count(*) FROM {q} WHERE status = 'embedded' AND embedding_next IS NULL")
        if left and not force:
            return False
        conn.run(f"UPDATE {q} SET status = 'pending', embedding = NULL, next_attempt_at = NULL "
                 "WHERE status = 'embedded' AND embedding_next IS NULL")
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


def reembed(ingestor: Ingestor, collection_name: str, new_embedder: Embedder, *,
            progress_callback: Callable[[int, int], None] | None = None,
            deadline: Deadline | None = None) -> ReembedSummary:
    """Move a collection to `new_embedder`'s model while searches keep using the old vectors.

    Rows that change while this runs are caught by the loop; any left at the last switch go back to
    `pending`, for a sweep with the new model. `deadline` stops the pass early; the next
    run resumes it.
    """
    catalog = ingestor.catalog
    collection = catalog.get_collection(collection_name)
    summary = ReembedSummary(collection.name, new_embedder.model_id)
    if collection.model_id == new_embedder.model_id and collection.dim == new_embedder.dim:
        summary.switched = True
        return summary
    begin(catalog, collection, new_embedder.model_id, new_embedder.dim)
    collection = catalog.get_collection(collection_name)
    writes = Writes(live=None, next=new_embedder, thumbnails=False)  # thumbnails exist already
    batch = ingestor.settings.backfill_batch_size
    for attempt in range(SWITCH_TRIES + 1):
        while not (stopped := deadline is not None and deadline.seconds_left() <= 0) and (
            claimed := claim(catalog, collection, batch)
        ):
            _embed_claimed(ingestor, collection, writes, claimed, summary)
            if progress_callback is not None:
                progress_callback(*move_progress(catalog, collection))
        if stopped:
            summary.stopped_early = True
            return summary
        build_next_index(catalog, collection)
        done, total = move_progress(catalog, collection)
        if switch(catalog, collection, force=attempt == SWITCH_TRIES):
            summary.switched, summary.reset_to_pending = True, total - done
            break
    log.info("reembed %s: %s", collection.name, summary.as_dict())
    return summary


def _embed_claimed(ingestor: Ingestor, collection: Collection, writes: Writes,
                   claimed: list[tuple[str, str | None]], summary: ReembedSummary) -> None:
    report = IngestReport()
    ingestor.embed_items([WorkItem(collection, key, etag, 0, "reembed") for key, etag in claimed], writes,
                         report, missing="skip")
    counts = report.summary()
    summary.embedded += counts["embedded"]
    summary.failed += counts["failed"]
    if report.errors and len(report.errors) == len(claimed):
        raise next(iter(report.errors.values()))  # all transient (database or storage down): stop here
