"""The catalog: collections (one per bucket) and their images with pgvector embeddings.

Each collection has its own table, named from the sanitised bucket name. Rows move through
`pending` -> `embedded` | `failed`; a removed object leaves a `deleted` tombstone that carries the
delete's sequencer/time, so a late, older create cannot bring it back.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pg8000.exceptions
import pg8000.native

from shared.events import ObjectEvent, sequencer_sort_key
from shared.search.keywords import name_words
from shared.store import leases
from shared.store.db import Database, error_fields, quote_ident
from shared.store.errors import CatalogError, ModelChanged, ModelMismatch, UnknownCollection
from shared.store.tables import (
    add_missing_columns_sql,
    create_table_sql,
    faces_table,
    faces_table_sql,
    neighbours_table,
    neighbours_table_sql,
)
from shared.store.vectors import vector_literal

Status = Literal["pending", "embedded", "failed", "deleted"]
MAX_COLLECTION_NAME = 255
MAX_TABLE_NAME = 56
MAX_DIM = 4000  # halfvec HNSW indexes support up to 4,000 dimensions
REGISTRY = "ib_collections"
COLLECTION_FIELDS = "name, bucket, table_name, model_id, dim, created_at, next_model_id, next_dim, faces_found"
# Rows a sweep embeds: pending ones, and failed ones under the attempts limit.
NEEDS_VECTOR = "embedding IS NULL AND (status = 'pending' OR (status = 'failed' AND attempts < :max_attempts))"
# A tombstone must outlive any delayed event for its key: SQS keeps messages at most 14 days.
TOMBSTONE_DAYS = 14


@dataclass(frozen=True)
class Collection:
    name: str
    bucket: str
    table: str
    model_id: str
    dim: int
    created_at: datetime
    next_model_id: str | None = None  # set while the collection moves to another model
    next_dim: int | None = None
    # Whether a face was ever stored: until then an answer's rows skip the people subquery (queries.hit_sql).
    faces_found: bool = True


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


def valid_dim(dim: int) -> int:
    if not (0 < int(dim) <= MAX_DIM):
        raise CatalogError(f"embedding dimension must be 1..{MAX_DIM}, got {dim}")
    return int(dim)


def model_guard(column: Literal["model_id", "next_model_id"] = "model_id") -> str:
    """SQL: the registry still records `:collection`'s (next) model as the parameter of the same name.
    A vector of a model the collection has left must never be written or compared."""
    return f"EXISTS (SELECT 1 FROM {REGISTRY} WHERE name = :collection AND {column} = :{column})"


@contextmanager
def vectors_of(collection: Collection, model_id: str) -> Iterator[None]:
    """Turn pgvector's dimension errors into ModelChanged: the collection switched to a model of another size."""
    try:
        yield
    except pg8000.exceptions.DatabaseError as exc:
        fields = error_fields(exc)
        if fields.get("C") == "22000" and "dimensions" in fields.get("M", ""):
            raise ModelChanged(collection.name, model_id) from None
        raise


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
        self._schema_ready = False

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 8) -> Catalog:
        return cls(Database(url, max_size=pool_size))

    # ---- schema -----------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        if self._schema_ready:
            return
        self.db.create_once(
            REGISTRY,
            "CREATE EXTENSION IF NOT EXISTS vector",
            f"""CREATE TABLE IF NOT EXISTS {REGISTRY} (
                name text PRIMARY KEY,
                bucket text NOT NULL,
                table_name text NOT NULL UNIQUE,
                model_id text NOT NULL,
                dim integer NOT NULL CHECK (dim > 0),
                next_model_id text,
                next_dim integer,
                created_at timestamptz NOT NULL DEFAULT now(),
                faces_found boolean NOT NULL DEFAULT true
            )"""
        )
        # Registries of older releases: their collections may hold faces, so the flag starts true there. Looked up
        # first: ALTER TABLE locks the registry out of every reader even when it has nothing to add.
        if not self.db.run("SELECT 1 FROM information_schema.columns WHERE table_name = :registry "
                           "AND column_name = 'faces_found'", registry=REGISTRY):
            self.db.run(f"ALTER TABLE {REGISTRY} ADD COLUMN IF NOT EXISTS faces_found boolean NOT NULL DEFAULT true")
        self._add_missing_columns()
        self._schema_ready = True

    def _add_missing_columns(self) -> None:
        """Tables made by an older release get the columns, indexes and tables added since, once per catalog."""
        tables = [row[0] for row in self.db.run(f"SELECT table_name FROM {REGISTRY}")]
        present = self.db.run("SELECT table_name, column_name FROM information_schema.columns "
                              "WHERE table_name = ANY(:tables)", tables=tables)
        for statement in add_missing_columns_sql(tables, {(table, column) for table, column in present}):
            self.db.run(statement)
        # Tables made before duplicate groups (or people) get their neighbours (faces and people) tables; new
        # tables are made with them.
        companions = [neighbours_table(table) for table in tables] + [faces_table(table) for table in tables]
        found = {row[0] for row in self.db.run(
            "SELECT table_name FROM information_schema.tables WHERE table_name = ANY(:names)", names=companions)}
        for table in tables:
            if neighbours_table(table) not in found:
                self.db.run(neighbours_table_sql(table))
            if faces_table(table) not in found:
                for statement in faces_table_sql(table):
                    self.db.run(statement)

    def open_collection(self, name: str, model_id: str, dim: int, *, bucket: str | None = None) -> Collection:
        """The collection as the registry has it now; created with this model (and its table) if missing."""
        self.ensure_schema()
        validate_collection_name(name)
        try:
            return self.get_collection(name)
        except UnknownCollection:
            pass
        table = table_name_for(name)
        dim = valid_dim(dim)
        self.db.transaction(lambda conn: self._create_collection(conn, name, bucket or name, table, model_id, dim))
        return self.get_collection(name)

    def ensure_collection(self, name: str, model_id: str, dim: int, *, bucket: str | None = None) -> Collection:
        """`open_collection`, refusing an existing collection of another model (ModelMismatch)."""
        collection = self.open_collection(name, model_id, dim, bucket=bucket)
        self.check_model(collection, model_id, dim)
        return collection

    def _create_collection(
        self, conn: pg8000.native.Connection, name: str, bucket: str, table: str, model_id: str, dim: int
    ) -> None:
        # A lock per collection name makes concurrent first writers create it once.
        conn.run("SELECT pg_advisory_xact_lock(hashtext(:name))", name=name)
        if conn.run(f"SELECT 1 FROM {REGISTRY} WHERE name = :name", name=name):
            return
        for statement in create_table_sql(table, dim):
            conn.run(statement)
        conn.run(
            f"INSERT INTO {REGISTRY} (name, bucket, table_name, model_id, dim, faces_found) "
            "VALUES (:name, :bucket, :table, :model_id, :dim, false)",
            name=name, bucket=bucket, table=table, model_id=model_id, dim=int(dim),
        )

    def get_collection(self, name: str) -> Collection:
        """The registry row, read every time: another process may have moved the collection to another
        model a moment ago (one primary-key lookup, well under a millisecond; a named statement, as every request
        reads it: parsed and planned once per connection)."""
        self.ensure_schema()
        validate_collection_name(name)
        rows = self.db.run_prepared(f"SELECT {COLLECTION_FIELDS} FROM {REGISTRY} WHERE name = :name", name=name)
        if not rows:
            raise UnknownCollection(
                f"no collection named {name!r}. Upload images to that bucket first, or list collections "
                "with `image-browser status`."
            )
        return Collection(*rows[0])

    def list_collections(self) -> list[Collection]:
        self.ensure_schema()
        return [Collection(*row) for row in self.db.run(f"SELECT {COLLECTION_FIELDS} FROM {REGISTRY} ORDER BY name")]

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
                INSERT INTO {q} AS t (key, etag, size, sequencer, event_time, status, name_words)
                VALUES (:key, :etag, :size, :seq, :time, 'pending', :name_words)
                ON CONFLICT (key) DO UPDATE SET
                    etag = EXCLUDED.etag,
                    name_words = EXCLUDED.name_words,
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
            params["name_words"] = name_words(event.key)  # the keyword index's words of the key
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
        next_vector: np.ndarray | None = None,
        next_model_id: str | None = None,
        width: int | None = None,
        height: int | None = None,
        size: int | None = None,
        content_type: str | None = None,
        last_modified: datetime | None = None,
        sha256: str | None = None,
        photo: Mapping[str, Any] | None = None,
    ) -> bool:
        """Write the vector (and, while the collection moves, the next model's) for the row's current etag,
        with the content hash and the photo's metadata columns (`PhotoMetadata.columns()`).

        False if the row moved on (newer etag, deleted); ModelChanged if the collection left `model_id`
        (or `next_model_id`) meanwhile, so the vector is never written into another model's column.
        """
        self.check_model(collection, model_id, int(np.asarray(embedding).shape[-1]))
        q = quote_ident(collection.table)
        params: dict[str, Any] = {"vec": vector_literal(embedding), "collection": collection.name,
                                  "model_id": model_id, "next_model_id": next_model_id}
        guard, set_next = model_guard(), ""
        photo = dict(photo or {}, sha256=sha256)  # column names from our code (shared/ingest/exif.py), never a caller's
        set_photo = "".join(f"{quote_ident(name)} = :{name}, " for name in photo)
        if next_vector is not None:
            guard += " AND " + model_guard("next_model_id")
            set_next, params["next_vec"] = "embedding_next = CAST(:next_vec AS halfvec),", vector_literal(next_vector)
        with vectors_of(collection, model_id):
            rows = self.db.run(
                f"""UPDATE {q} SET embedding = CAST(:vec AS halfvec), {set_next} status = 'embedded', error = NULL,
                        {set_photo} width = :width, height = :height, size = COALESCE(:size, size),
                        content_type = COALESCE(:content_type, content_type),
                        last_modified = COALESCE(:last_modified, last_modified),
                        next_attempt_at = NULL, updated_at = now()
                    WHERE key = :key AND status <> 'deleted' AND etag IS NOT DISTINCT FROM :etag AND {guard}
                    RETURNING key""",
                width=width, height=height, size=size, content_type=content_type, last_modified=last_modified,
                key=key, etag=etag, **params, **photo,
            )
        if not rows:
            self.raise_if_moved(collection, model_id, next_model_id if next_vector is not None else None)
        return bool(rows)

    def store_next_embedding(self, collection: Collection, key: str, etag: str | None, embedding: np.ndarray,
                             *, model_id: str) -> bool:
        """The next model's vector (a model move) for the row's current etag; False if the row moved on."""
        q = quote_ident(collection.table)
        with vectors_of(collection, model_id):
            rows = self.db.run(
                f"""UPDATE {q} SET embedding_next = CAST(:vec AS halfvec), next_attempt_at = NULL
                    WHERE key = :key AND status = 'embedded' AND etag IS NOT DISTINCT FROM :etag
                      AND {model_guard("next_model_id")}
                    RETURNING key""",
                vec=vector_literal(embedding), key=key, etag=etag, collection=collection.name, next_model_id=model_id,
            )
        if not rows:
            self.raise_if_moved(collection, None, model_id)
        return bool(rows)

    def store_photo_facts(self, collection: Collection, key: str, etag: str | None, values: Mapping[str, Any]) -> bool:
        """Content hash and photo metadata for an embedded row, its vector untouched (the sweep fills rows
        embedded before these columns existed). `values`: column names from our code, never a caller's."""
        sets = ", ".join(f"{quote_ident(name)} = :{name}" for name in values)
        rows = self.db.run(
            f"UPDATE {quote_ident(collection.table)} SET {sets} WHERE key = :key AND status = 'embedded' "
            "AND etag IS NOT DISTINCT FROM :etag RETURNING key",
            key=key, etag=etag, **values,
        )
        return bool(rows)

    def raise_if_moved(self, collection: Collection, model_id: str | None, next_model_id: str | None) -> None:
        """ModelChanged if the registry no longer records these models for the collection."""
        current = self.get_collection(collection.name)
        if model_id is not None and current.model_id != model_id:
            raise ModelChanged(collection.name, model_id)
        if next_model_id is not None and current.next_model_id != next_model_id:
            raise ModelChanged(collection.name, next_model_id)

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

    def fill_name_words(self, collection: Collection, limit: int = 5000) -> int:
        """Up to `limit` rows recorded before the keyword index get their key's words; how many did."""
        q = quote_ident(collection.table)
        keys = [row[0] for row in self.db.run(
            f"SELECT key FROM {q} WHERE name_words IS NULL AND status <> 'deleted' LIMIT :limit", limit=int(limit))]
        if keys:
            self.db.run(f"UPDATE {q} AS t SET name_words = u.words FROM unnest(CAST(:keys AS text[]), "
                        "CAST(:words AS text[])) AS u(key, words) WHERE t.key = u.key",
                        keys=keys, words=[name_words(key) for key in keys])
        return len(keys)

    def purge_tombstones(self, collection: Collection, older_than_days: float = TOMBSTONE_DAYS) -> int:
        """Drop tombstones old enough that no delayed event for them can still arrive."""
        q = quote_ident(collection.table)
        rows = self.db.run(
            f"DELETE FROM {q} WHERE status = 'deleted' AND updated_at < now() - make_interval(days => :days) "
            "RETURNING key",
            days=int(older_than_days),
        )
        return len(rows)

    # ---- ingestion ----------------------------------------------------------------------------

    def claim_todo(
        self, collection: Collection, limit: int, *, max_attempts: int, lease_seconds: float = 300
    ) -> list[tuple[str, str | None, int]]:
        """Claim up to `limit` rows that need a vector: (key, etag, attempts).

        `pending` rows, and `failed` ones under `max_attempts` whose backoff has passed. A claimed
        row's `next_attempt_at` becomes a lease, so a second sweep running at the same time skips it
        (SKIP LOCKED covers the instant of claiming, the lease the time spent embedding).
        """
        rows = leases.claim(self.db, collection.table, waiting=NEEDS_VECTOR, lease_column="next_attempt_at",
                            returning="key, etag, attempts", limit=limit, lease_seconds=lease_seconds,
                            max_attempts=int(max_attempts))
        return [(key, etag, int(attempts)) for key, etag, attempts in rows]

    def claim_keys(
        self, collection: Collection, keys: Sequence[str], *, max_attempts: int,
        lease_seconds: float = leases.LEASE_SECONDS,
    ) -> list[tuple[str, str | None, int]]:
        """Claim exactly these keys where they need a vector and no lease holds them: (key, etag, attempts).

        `claim_todo`'s claim for a queue message (or an event) that names its keys: a key queued twice, or
        queued and also sent by an S3 event, is claimed (so embedded) once.
        """
        rows = leases.claim(self.db, collection.table, waiting=f"key = ANY(CAST(:keys AS text[])) AND {NEEDS_VECTOR}",
                            lease_column="next_attempt_at", returning="key, etag, attempts", limit=len(keys),
                            lease_seconds=lease_seconds, max_attempts=int(max_attempts), keys=list(keys))
        return [(key, etag, int(attempts)) for key, etag, attempts in rows]

    def release_claims(self, collection: Collection, keys: Sequence[str], *, retry_after_seconds: float = 0) -> None:
        """Give claimed rows back early (a transient failure): claimable again after the delay."""
        q = quote_ident(collection.table)
        self.db.run(
            f"UPDATE {q} SET next_attempt_at = now() + make_interval(secs => :delay) "
            "WHERE key = ANY(CAST(:keys AS text[])) AND status IN ('pending', 'failed')",
            keys=list(keys), delay=float(retry_after_seconds),
        )

    def release_unfinished_claims(self, collection: Collection) -> int:
        """Give back every claim still running on a row waiting for its vector (status pending: a failure would
        have marked it failed). Only for a start with no other worker alive: the local stack's, after a crash of
        its last run, whose claims would otherwise hold their rows for the rest of the lease. Rows given back."""
        rows = self.db.run(f"UPDATE {quote_ident(collection.table)} SET next_attempt_at = NULL "
                           "WHERE status = 'pending' AND next_attempt_at > now() RETURNING id")
        return len(rows)

    def count_todo(self, collection: Collection, *, max_attempts: int) -> int:
        """Rows a sweep would still embed (including failed ones waiting for their backoff)."""
        q = quote_ident(collection.table)
        ((count,),) = self.db.run(
            f"SELECT count(*) FROM {q} WHERE {NEEDS_VECTOR}",
            max_attempts=int(max_attempts),
        )
        return int(count)
