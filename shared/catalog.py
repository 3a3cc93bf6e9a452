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
        conn.run(
            f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_hnsw')} ON {q} "
            "USING hnsw (embedding halfvec_ip_ops) WITH (m = 16, ef_construction = 64) "
            "WHERE embedding IS NOT NULL"
        )
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

    def purge_tombstones(self, collection: Collection, older_than_days: float = 7) -> int:
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

    def is_embedded(self, collection: Collection, key: str, etag: str | None) -> bool:
        """True when this key's current etag already has a vector (the idempotency check)."""
        q = quote_ident(collection.table)
        rows = self.db.run(
            f"SELECT 1 FROM {q} WHERE key = :key AND status = 'embedded' AND embedding IS NOT NULL "
            "AND etag IS NOT DISTINCT FROM :etag",
            key=key, etag=etag,
        )
        return bool(rows)

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


def utcnow() -> datetime:
    return datetime.now(UTC)
