"""The catalog: collections (one per bucket) and their images with pgvector embeddings.

Each collection has its own table, named from the sanitised bucket name. Rows move through
`pending` -> `embedded` | `failed`; a removed object leaves a `deleted` tombstone that carries the
delete's sequencer/time, so a late, older create cannot bring it back.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pg8000.native

from shared.db import Database, DatabaseUnavailable, quote_ident
from shared.events import ObjectEvent, sequencer_sort_key

__all__ = [
    "Catalog",
    "CatalogError",
    "Collection",
    "DatabaseUnavailable",
    "ImageRow",
    "ModelMismatch",
    "UnknownCollection",
    "table_name_for",
    "vector_literal",
]

Status = Literal["pending", "embedded", "failed", "deleted"]
MAX_COLLECTION_NAME = 255
MAX_TABLE_NAME = 56
MAX_DIM = 4000  # halfvec HNSW indexes support up to 4,000 dimensions
REGISTRY = "ib_collections"
ANY_ETAG: Any = object()  # is_embedded(): whatever the etag
# A tombstone must outlive any delayed event for its key: SQS keeps messages at most 14 days.
TOMBSTONE_DAYS = 14


class CatalogError(ValueError):
    """A request the catalog refuses; the message says why and what to do."""


class UnknownCollection(CatalogError):
    pass


class ModelMismatch(CatalogError):
    def __init__(self, collection: str, stored_model: str, stored_dim: int, model: str, dim: int):
        self.collection, self.stored_model, self.model = collection, stored_model, model
        super().__init__(
            f"collection {collection!r} holds embeddings of model {stored_model!r} ({stored_dim}-d), "
            f"but this server uses {model!r} ({dim}-d). Set IB_MODEL={stored_model} to query it, or "
            f"move it with `image-browser reembed --collection {collection} --model {model}`."
        )


@dataclass(frozen=True)
class Collection:
    name: str
    bucket: str
    table: str
    model_id: str
    dim: int
    created_at: datetime


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


def validate_collection_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise CatalogError("collection name must be a non-empty string (use the bucket name)")
    if len(name) > MAX_COLLECTION_NAME:
        raise CatalogError(f"collection name is {len(name)} characters; at most {MAX_COLLECTION_NAME}")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise CatalogError(f"collection name {name!r} contains control characters")
    return name


def table_name_for(collection: str) -> str:
    """`img_` + [a-z0-9_] of the name, a hash suffix whenever sanitising changed it.

    At most 56 bytes, so index names (table + `_recent`) stay within Postgres' 63.

    The suffix keeps `my-bucket` and `my_bucket` (and long names that share a prefix) apart.
    """
    validate_collection_name(collection)
    cleaned = re.sub(r"[^a-z0-9_]", "_", collection.lower())
    base = "img_" + cleaned
    if cleaned == collection and len(base) <= MAX_TABLE_NAME:
        return base
    suffix = hashlib.sha256(collection.encode("utf-8")).hexdigest()[:8]
    return f"{base[: MAX_TABLE_NAME - 9]}_{suffix}"


def vector_literal(vector: Sequence[float] | np.ndarray) -> str:
    """pgvector text form; 6 significant digits is past halfvec's precision."""
    values = np.asarray(vector, dtype=np.float32).ravel()
    if not np.all(np.isfinite(values)):
        raise CatalogError("embedding contains NaN or infinity")
    return "[" + ",".join(f"{value:.6g}" for value in values.tolist()) + "]"


# HNSW graph parameters (bench/bench_search.py measures them): m 16 links per node, and a wider
# ef_construction than pgvector's default 64 for a better graph, i.e. more recall per query-time ef.
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 128


def hnsw_index_sql(table: str, column: str = "embedding", *, index: str | None = None,
                   concurrently: bool = False) -> str:
    """The one definition of a collection's vector index: HNSW, inner product, embedded rows only."""
    col = quote_ident(column)
    return (
        f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS "
        f"{quote_ident(index or table + '_hnsw')} ON {quote_ident(table)} USING hnsw ({col} halfvec_ip_ops) "
        f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) WHERE {col} IS NOT NULL"
    )


def _padded(sequencer: str | None) -> str | None:
    return sequencer_sort_key(sequencer) if sequencer else None


# Whether the incoming values (EXCLUDED, or parameters) are newer than the stored row `t`, per the
# ordering rule: sequencers when both have one, otherwise event times. Equal order with a different
# action or etag still applies (last writer wins; backfill reconciles with the bucket), so an exact
# duplicate is the only no-op.
_NEWER = """
    CASE
        WHEN {new_seq} IS NOT NULL AND t.sequencer IS NOT NULL THEN
            {new_seq} > t.sequencer OR ({new_seq} = t.sequencer AND {differs})
        WHEN {new_time} IS NOT NULL AND t.event_time IS NOT NULL THEN
            {new_time} > t.event_time OR ({new_time} = t.event_time AND {differs})
        ELSE {differs}
    END
"""


class Catalog:
    """Collections and their rows in PostgreSQL + pgvector."""

    def __init__(self, db: Database):
        self.db = db
        self._collections: dict[str, Collection] = {}
        self._schema_ready = False

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 8) -> Catalog:
        return cls(Database(url, max_size=pool_size))

    # ---- schema -----------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        if self._schema_ready:
            return
        self.db.run("CREATE EXTENSION IF NOT EXISTS vector")
        self.db.run(
            f"""CREATE TABLE IF NOT EXISTS {REGISTRY} (
                name text PRIMARY KEY,
                bucket text NOT NULL,
                table_name text NOT NULL UNIQUE,
                model_id text NOT NULL,
                dim integer NOT NULL CHECK (dim > 0),
                next_model_id text,
                next_dim integer,
                created_at timestamptz NOT NULL DEFAULT now()
            )"""
        )
        self._schema_ready = True

    def ensure_collection(self, name: str, model_id: str, dim: int, *, bucket: str | None = None) -> Collection:
        """Create the collection (and its table) if missing; refuse another model for an existing one."""
        self.ensure_schema()
        validate_collection_name(name)
        if not (0 < int(dim) <= MAX_DIM):
            raise CatalogError(f"embedding dimension must be 1..{MAX_DIM}, got {dim}")
        try:
            existing = self.get_collection(name)
        except UnknownCollection:
            existing = None
        if existing is None:
            table = table_name_for(name)
            self.db.transaction(lambda conn: self._create_collection(conn, name, bucket or name, table, model_id, dim))
            self._collections.pop(name, None)
            existing = self.get_collection(name)
        self.check_model(existing, model_id, dim)
        return existing

    def _create_collection(
        self, conn: pg8000.native.Connection, name: str, bucket: str, table: str, model_id: str, dim: int
    ) -> None:
        # A lock per collection name makes concurrent first writers create it once.
        conn.run("SELECT pg_advisory_xact_lock(hashtext(:name))", name=name)
        if conn.run(f"SELECT 1 FROM {REGISTRY} WHERE name = :name", name=name):
            return
        q = quote_ident(table)
        conn.run(
            f"""CREATE TABLE IF NOT EXISTS {q} (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                key text NOT NULL UNIQUE,
                etag text,
                size bigint,
                content_type text,
                width integer,
                height integer,
                last_modified timestamptz,
                sequencer text,
                event_time timestamptz,
                status text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'embedded', 'failed', 'deleted')),
                error text,
                attempts integer NOT NULL DEFAULT 0,
                next_attempt_at timestamptz,
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now(),
                embedding halfvec({int(dim)}),
                embedding_next halfvec
            )"""
        )
        conn.run(hnsw_index_sql(table))
        conn.run(
            f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_recent')} ON {q} "
            "(last_modified DESC, id DESC) WHERE status = 'embedded'"
        )
        conn.run(
            f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_todo')} ON {q} (status, next_attempt_at) "
            "WHERE status IN ('pending', 'failed')"
        )
        conn.run(
            f"INSERT INTO {REGISTRY} (name, bucket, table_name, model_id, dim) "
            "VALUES (:name, :bucket, :table, :model_id, :dim)",
            name=name, bucket=bucket, table=table, model_id=model_id, dim=int(dim),
        )

    def get_collection(self, name: str) -> Collection:
        cached = self._collections.get(name)
        if cached is not None:
            return cached
        self.ensure_schema()
        validate_collection_name(name)
        rows = self.db.run(
            f"SELECT name, bucket, table_name, model_id, dim, created_at FROM {REGISTRY} WHERE name = :name",
            name=name,
        )
        if not rows:
            raise UnknownCollection(
                f"no collection named {name!r}. Upload images to that bucket first, or list collections "
                "with `image-browser status`."
            )
        collection = Collection(*rows[0])
        self._collections[name] = collection
        return collection

    def list_collections(self) -> list[Collection]:
        self.ensure_schema()
        rows = self.db.run(
            f"SELECT name, bucket, table_name, model_id, dim, created_at FROM {REGISTRY} ORDER BY name"
        )
        return [Collection(*row) for row in rows]

    def forget_cached(self, name: str | None = None) -> None:
        """Drop cached collection records (after a model switch done by another process)."""
        if name is None:
            self._collections.clear()
        else:
            self._collections.pop(name, None)

    @staticmethod
    def check_model(collection: Collection, model_id: str, dim: int) -> None:
        if collection.model_id != model_id or collection.dim != dim:
            raise ModelMismatch(collection.name, collection.model_id, collection.dim, model_id, dim)

    # ---- writes -------------------------------------------------------------------------------

    def record_event(self, collection: Collection, event: ObjectEvent) -> bool:
        """Apply an object event if it is newer than what the row holds; returns whether it applied.

        A create makes (or refreshes) a `pending` row unless the same etag is already embedded; a
        remove leaves a `deleted` tombstone with no embedding.
        """
        q = quote_ident(collection.table)
        params: dict[str, Any] = {
            "key": event.key,
            "etag": event.etag,
            "size": event.size,
            "seq": _padded(event.sequencer),
            "time": event.event_time,
        }
        if event.action == "created":
            differs = "(t.status = 'deleted' OR t.etag IS DISTINCT FROM EXCLUDED.etag)"
            newer = _NEWER.format(new_seq="EXCLUDED.sequencer", new_time="EXCLUDED.event_time", differs=differs)
            same_content = "(t.etag IS NOT DISTINCT FROM EXCLUDED.etag AND t.status <> 'deleted')"
            sql = f"""
                INSERT INTO {q} AS t (key, etag, size, sequencer, event_time, status)
                VALUES (:key, :etag, :size, :seq, :time, 'pending')
                ON CONFLICT (key) DO UPDATE SET
                    etag = EXCLUDED.etag,
                    size = COALESCE(EXCLUDED.size, t.size),
                    sequencer = COALESCE(EXCLUDED.sequencer, t.sequencer),
                    event_time = COALESCE(EXCLUDED.event_time, t.event_time),
                    status = CASE WHEN {same_content} THEN t.status ELSE 'pending' END,
                    embedding = CASE WHEN {same_content} THEN t.embedding ELSE NULL END,
                    error = CASE WHEN {same_content} THEN t.error ELSE NULL END,
                    attempts = CASE WHEN {same_content} THEN t.attempts ELSE 0 END,
                    next_attempt_at = CASE WHEN {same_content} THEN t.next_attempt_at ELSE NULL END,
                    embedding_next = CASE WHEN {same_content} THEN t.embedding_next ELSE NULL END,
                    updated_at = now()
                WHERE {newer}
                RETURNING key"""
        else:
            differs = "(t.status <> 'deleted')"
            newer = _NEWER.format(new_seq="EXCLUDED.sequencer", new_time="EXCLUDED.event_time", differs=differs)
            sql = f"""
                INSERT INTO {q} AS t (key, sequencer, event_time, status)
                VALUES (:key, :seq, :time, 'deleted')
                ON CONFLICT (key) DO UPDATE SET
                    sequencer = COALESCE(EXCLUDED.sequencer, t.sequencer),
                    event_time = COALESCE(EXCLUDED.event_time, t.event_time),
                    status = 'deleted', embedding = NULL, embedding_next = NULL, error = NULL,
                    attempts = 0, next_attempt_at = NULL, updated_at = now()
                WHERE {newer}
                RETURNING key"""
            params.pop("etag")
            params.pop("size")
        return bool(self.db.run(sql, **params))

    def store_embedding(
        self,
        collection: Collection,
        key: str,
        etag: str | None,
        embedding: np.ndarray,
        *,
        model_id: str,
        width: int | None = None,
        height: int | None = None,
        size: int | None = None,
        content_type: str | None = None,
        last_modified: datetime | None = None,
    ) -> bool:
        """Write the vector for the row's current etag; False if the row moved on (newer etag, deleted)."""
        self.check_model(collection, model_id, int(np.asarray(embedding).shape[-1]))
        q = quote_ident(collection.table)
        rows = self.db.run(
            f"""UPDATE {q} SET embedding = CAST(:vec AS halfvec), status = 'embedded', error = NULL,
                    width = :width, height = :height, size = COALESCE(:size, size),
                    content_type = COALESCE(:content_type, content_type),
                    last_modified = COALESCE(:last_modified, last_modified),
                    next_attempt_at = NULL, updated_at = now()
                WHERE key = :key AND status <> 'deleted' AND etag IS NOT DISTINCT FROM :etag
                RETURNING key""",
            vec=vector_literal(embedding), width=width, height=height, size=size,
            content_type=content_type, last_modified=last_modified, key=key, etag=etag,
        )
        return bool(rows)

    def mark_failed(
        self, collection: Collection, key: str, etag: str | None, error: str, *, retry_after_seconds: float = 0
    ) -> bool:
        """Record a failure for the row's current etag: attempts + 1, the reason, when to retry."""
        q = quote_ident(collection.table)
        rows = self.db.run(
            f"""UPDATE {q} SET status = 'failed', error = :error, attempts = attempts + 1,
                    next_attempt_at = now() + make_interval(secs => :delay), updated_at = now()
                WHERE key = :key AND status <> 'deleted' AND etag IS NOT DISTINCT FROM :etag
                RETURNING key""",
            error=error[:2000], delay=float(retry_after_seconds), key=key, etag=etag,
        )
        return bool(rows)

    def purge_tombstones(self, collection: Collection, older_than_days: float = TOMBSTONE_DAYS) -> int:
        """Drop tombstones old enough that no delayed event for them can still arrive."""
        q = quote_ident(collection.table)
        rows = self.db.run(
            f"DELETE FROM {q} WHERE status = 'deleted' AND updated_at < now() - make_interval(days => :days) "
            "RETURNING key",
            days=int(older_than_days),
        )
        return len(rows)

    # ---- reads --------------------------------------------------------------------------------

    def get_row(self, collection: Collection, key: str) -> ImageRow | None:
        q = quote_ident(collection.table)
        rows = self.db.run(
            f"""SELECT key, etag, size, content_type, width, height, last_modified, status, error,
                       attempts, updated_at, embedding IS NOT NULL
                FROM {q} WHERE key = :key""",
            key=key,
        )
        return ImageRow(*rows[0]) if rows else None

    def is_embedded(self, collection: Collection, key: str, etag: str | None = ANY_ETAG) -> bool:
        """True when `key` has a vector; with `etag`, only when it is the vector of that content."""
        q = quote_ident(collection.table)
        sql = f"SELECT 1 FROM {q} WHERE key = :key AND status = 'embedded' AND embedding IS NOT NULL"
        if etag is ANY_ETAG:
            return bool(self.db.run(sql, key=key))
        return bool(self.db.run(sql + " AND etag IS NOT DISTINCT FROM :etag", key=key, etag=etag))

    def embedded_keys(self, collection: Collection) -> set[str]:
        q = quote_ident(collection.table)
        return {row[0] for row in self.db.run(f"SELECT key FROM {q} WHERE status = 'embedded'")}

    def counts(self, collection: Collection) -> dict[str, int]:
        q = quote_ident(collection.table)
        counts = {"embedded": 0, "pending": 0, "failed": 0}
        for status, count in self.db.run(f"SELECT status, count(*) FROM {q} GROUP BY status"):
            if status in counts:
                counts[status] = int(count)
        return counts

    def stats(self, collection: Collection) -> dict[str, Any]:
        """Counts by status, bytes of originals, last update: the gallery's stats widget."""
        q = quote_ident(collection.table)
        (total_bytes, last_update), = self.db.run(
            f"SELECT COALESCE(sum(size) FILTER (WHERE status <> 'deleted'), 0), max(updated_at) FROM {q}"
        )
        return {
            "collection": collection.name,
            "model": collection.model_id,
            "counts": self.counts(collection),
            "bytes": int(total_bytes),
            "last_update": last_update.isoformat() if last_update else None,
        }


    # ---- ingestion ----------------------------------------------------------------------------

    def claim_todo(
        self, collection: Collection, limit: int, *, max_attempts: int, lease_seconds: float = 300
    ) -> list[tuple[str, str | None, int]]:
        """Claim up to `limit` rows that need a vector: (key, etag, attempts).

        `pending` rows, and `failed` ones under `max_attempts` whose backoff has passed. A claimed
        row's `next_attempt_at` becomes a lease, so a second sweep running at the same time skips it
        (SKIP LOCKED covers the instant of claiming, the lease the time spent embedding).
        """
        q = quote_ident(collection.table)
        rows = self.db.run(
            f"""UPDATE {q} SET next_attempt_at = now() + make_interval(secs => :lease)
                WHERE id IN (
                    SELECT id FROM {q}
                    WHERE embedding IS NULL
                      AND (status = 'pending' OR (status = 'failed' AND attempts < :max_attempts))
                      AND (next_attempt_at IS NULL OR next_attempt_at <= now())
                    ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)
                RETURNING key, etag, attempts""",
            lease=float(lease_seconds), max_attempts=int(max_attempts), limit=int(limit),
        )
        return [(key, etag, int(attempts)) for key, etag, attempts in rows]

    def release_claim(self, collection: Collection, key: str, *, retry_after_seconds: float = 0) -> None:
        """Give a claimed row back early (a transient failure): claimable again after the delay."""
        q = quote_ident(collection.table)
        self.db.run(
            f"UPDATE {q} SET next_attempt_at = now() + make_interval(secs => :delay) "
            "WHERE key = :key AND status IN ('pending', 'failed')",
            key=key, delay=float(retry_after_seconds),
        )

    def count_todo(self, collection: Collection, *, max_attempts: int) -> int:
        """Rows a sweep would still embed (including failed ones waiting for their backoff)."""
        q = quote_ident(collection.table)
        ((count,),) = self.db.run(
            f"SELECT count(*) FROM {q} WHERE embedding IS NULL "
            "AND (status = 'pending' OR (status = 'failed' AND attempts < :max_attempts))",
            max_attempts=int(max_attempts),
        )
        return int(count)

    def row_states(self, collection: Collection) -> dict[str, tuple[str | None, str, datetime]]:
        """key -> (etag, status, updated_at) of every row, tombstones included: the reconcile input."""
        q = quote_ident(collection.table)
        return {key: (etag, status, updated) for key, etag, status, updated in
                self.db.run(f"SELECT key, etag, status, updated_at FROM {q}")}

    def db_now(self) -> datetime:
        """The database clock (rows' updated_at use it)."""
        return self.db.run("SELECT now()")[0][0]

    # Moving a collection to another model without downtime: vectors of the new model go into
    # `embedding_next` beside the live ones, then one short transaction swaps the columns.

    def begin_reembed(self, collection: Collection, model_id: str, dim: int) -> bool:
        """Record the target model; returns False when this move was already under way (resume)."""
        if not (0 < int(dim) <= MAX_DIM):
            raise CatalogError(f"embedding dimension must be 1..{MAX_DIM}, got {dim}")
        q = quote_ident(collection.table)

        def begin(conn: pg8000.native.Connection) -> bool:
            ((next_model, next_dim),) = conn.run(
                f"SELECT next_model_id, next_dim FROM {REGISTRY} WHERE name = :name FOR UPDATE",
                name=collection.name,
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

        return self.db.transaction(begin)

    def claim_reembed(
        self, collection: Collection, limit: int, *, lease_seconds: float = 300
    ) -> list[tuple[str, str | None]]:
        """Claim embedded rows that have no vector of the next model yet: (key, etag)."""
        q = quote_ident(collection.table)
        rows = self.db.run(
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

    def store_next_embedding(self, collection: Collection, key: str, etag: str | None, embedding: np.ndarray) -> bool:
        """The next model's vector for the row's current etag; False if the row moved on."""
        q = quote_ident(collection.table)
        rows = self.db.run(
            f"""UPDATE {q} SET embedding_next = CAST(:vec AS halfvec), next_attempt_at = NULL
                WHERE key = :key AND status = 'embedded' AND etag IS NOT DISTINCT FROM :etag
                RETURNING key""",
            vec=vector_literal(embedding), key=key, etag=etag,
        )
        return bool(rows)

    def reembed_progress(self, collection: Collection) -> tuple[int, int]:
        """(rows with the next model's vector, embedded rows)."""
        q = quote_ident(collection.table)
        ((done, total),) = self.db.run(
            f"SELECT count(*) FILTER (WHERE embedding_next IS NOT NULL), count(*) FROM {q} "
            "WHERE status = 'embedded'"
        )
        return int(done), int(total)

    def build_next_index(self, collection: Collection) -> None:
        """The next model's HNSW index, built beside the live one without blocking writes."""
        self.db.run(hnsw_index_sql(collection.table, "embedding_next", index=collection.table + "_hnsw2",
                                   concurrently=True))

    def switch_model(self, collection: Collection, *, force: bool = False) -> bool:
        """Make the next model live in one short transaction (column renames, no rewrite).

        Rows embedded meanwhile by the old model and still lacking a next vector make it return
        False, unless `force`, which sets them back to `pending` for a sweep with the new model.
        """
        q = quote_ident(collection.table)
        table = collection.table

        def switch(conn: pg8000.native.Connection) -> bool:
            ((next_model, next_dim),) = conn.run(
                f"SELECT next_model_id, next_dim FROM {REGISTRY} WHERE name = :name FOR UPDATE",
                name=collection.name,
            )
            if not next_model:
                raise CatalogError(f"collection {collection.name!r} is not moving to another model")
            conn.run(f"LOCK TABLE {q} IN EXCLUSIVE MODE")  # writers wait; readers go on
            ((left,),) = conn.run(
                f"SELECT count(*) FROM {q} WHERE status = 'embedded' AND embedding_next IS NULL"
            )
            if left and not force:
                return False
            conn.run(
                f"UPDATE {q} SET status = 'pending', embedding = NULL, next_attempt_at = NULL "
                "WHERE status = 'embedded' AND embedding_next IS NULL"
            )
            conn.run(f"ALTER TABLE {q} RENAME COLUMN embedding TO embedding_old")
            conn.run(f"ALTER TABLE {q} RENAME COLUMN embedding_next TO embedding")
            conn.run(f"ALTER TABLE {q} DROP COLUMN embedding_old")  # drops the old HNSW index with it
            conn.run(f"ALTER TABLE {q} ADD COLUMN embedding_next halfvec")
            conn.run(
                f"ALTER INDEX IF EXISTS {quote_ident(table + '_hnsw2')} RENAME TO {quote_ident(table + '_hnsw')}"
            )
            conn.run(hnsw_index_sql(table))
            conn.run(
                f"UPDATE {REGISTRY} SET model_id = next_model_id, dim = next_dim, next_model_id = NULL, "
                "next_dim = NULL WHERE name = :name",
                name=collection.name,
            )
            return True

        switched = self.db.transaction(switch)
        if switched:
            self.forget_cached(collection.name)
        return switched

    # ---- queries ------------------------------------------------------------------------------

    def search(
        self,
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
        if similar_to is not None:
            # An InitPlan: the stored vector never leaves the server and the HNSW scan still applies.
            target = f"(SELECT embedding FROM {q} WHERE key = :source AND status = 'embedded')"
            params["source"] = similar_to
        elif vector is not None:
            if int(np.asarray(vector).shape[-1]) != collection.dim:
                raise CatalogError(
                    f"query vector has {np.asarray(vector).shape[-1]} dimensions; "
                    f"collection {collection.name!r} stores {collection.dim}"
                )
            target = "CAST(:vec AS halfvec)"
            params["vec"] = vector_literal(vector)
        else:
            raise CatalogError("search needs a query vector or a key to search like")
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
        sql = f"""
            WITH cfg AS MATERIALIZED (
                SELECT set_config('hnsw.ef_search', :ef, true) AS ef,
                       set_config('hnsw.iterative_scan', 'relaxed_order', true) AS scan
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
        rows = self.db.run(sql, **params)
        if not rows and similar_to is not None and not self.is_embedded(collection, similar_to):
            raise KeyError(similar_to)
        return [Hit(row[0], row[1], -float(row[7]), row[2], row[3], row[4], row[5], _from_epoch(row[6]),
                    float(row[7])) for row in rows]

    def recent(
        self, collection: Collection, *, limit: int = 30, after: tuple[datetime | None, int] | None = None
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
        rows = self.db.run(
            f"""SELECT id, key, size, content_type, width, height, extract(epoch FROM last_modified)::float8
                FROM {q} WHERE {where} ORDER BY last_modified DESC, id DESC LIMIT :limit""",
            **params,
        )
        return [Hit(row[0], row[1], None, row[2], row[3], row[4], row[5], _from_epoch(row[6])) for row in rows]


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
