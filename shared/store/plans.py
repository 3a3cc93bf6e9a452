"""The backfill's plan per collection: a bucket listing resumable across invocations, and the backlog of
work it queued (the `backlog` block of /api/stats).

`ib_plans` holds, per collection, the continuation token of the listing under way and when it began (rows
not listed since then, and untouched since, lost their object), and when the current plan began queueing
and how many rows it queued: with the rows still to embed, that gives done, the rate and the time left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.store.catalog import NEEDS_VECTOR, Catalog, Collection
from shared.store.db import quote_ident
from shared.store.neighbours import NEEDS_LIST
from shared.store.tables import FACES_WAITING, OCR_WAITING, neighbours_table

PLANS = "ib_plans"
# Claimable now: not under a lease (a worker embedding it) nor waiting for its backoff.
FREE = "(next_attempt_at IS NULL OR next_attempt_at <= now())"
# The stages after embedding: the rows each waits for, and which of them no worker of it holds now.
STAGE_WAITING = {
    "ocr": f"{OCR_WAITING} AND "
           "(ocr_next_attempt_at IS NULL OR ocr_next_attempt_at <= now() OR ocr_etag IS DISTINCT FROM etag)",
    "faces": f"{FACES_WAITING} AND "
             "(faces_next_attempt_at IS NULL OR faces_next_attempt_at <= now() OR faces_etag IS DISTINCT FROM etag)",
}


@dataclass(frozen=True)
class Plan:
    collection: str
    listing_token: str | None  # the next page of the listing under way; None: no listing under way
    listing_started: datetime | None
    planned_at: datetime | None  # when the current plan began queueing
    queued: int  # rows it queued for embedding


def ensure_table(catalog: Catalog) -> None:
    """The plans table, created once per process (the stats answer reads it on every call)."""
    if getattr(catalog, "_plans_ready", False):
        return
    catalog.db.create_once(
        PLANS,
        f"""CREATE TABLE IF NOT EXISTS {PLANS} (
            collection text PRIMARY KEY,
            listing_token text,
            listing_started timestamptz,
            planned_at timestamptz,
            queued bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    catalog._plans_ready = True  # type: ignore[attr-defined]


def load(catalog: Catalog, collection: str) -> Plan | None:
    ensure_table(catalog)
    rows = catalog.db.run(f"SELECT collection, listing_token, listing_started, planned_at, queued FROM {PLANS} "
                          "WHERE collection = :collection", collection=collection)
    return Plan(*rows[0]) if rows else None


def start_listing(catalog: Catalog, collection: str) -> Plan:
    """A new listing (and plan) from the first page: its start is the database clock now."""
    ensure_table(catalog)
    ((token, started, planned_at, queued),) = catalog.db.run(
        f"""INSERT INTO {PLANS} (collection, listing_token, listing_started, planned_at, queued)
            VALUES (:collection, NULL, now(), now(), 0)
            ON CONFLICT (collection) DO UPDATE SET listing_token = NULL, listing_started = now(),
                planned_at = now(), queued = 0, updated_at = now()
            RETURNING listing_token, listing_started, planned_at, queued""",
        collection=collection,
    )
    return Plan(collection, token, started, planned_at, int(queued))


def save_page(catalog: Catalog, collection: str, next_token: str | None, queued: int) -> None:
    """After a page: where the listing goes on (None: it ended) and how many rows were queued."""
    catalog.db.run(
        f"""UPDATE {PLANS} SET listing_token = :token, queued = queued + :queued, updated_at = now(),
                listing_started = CASE WHEN CAST(:token AS text) IS NULL THEN NULL ELSE listing_started END
            WHERE collection = :collection""",
        token=next_token, queued=int(queued), collection=collection,
    )


# ---- a page of the listing against the collection's rows -------------------------------------------


def row_states(catalog: Catalog, collection: Collection, keys: Sequence[str]) -> dict[str, tuple[str | None, str]]:
    """key -> (etag, status) of the rows of these keys (tombstones included), stamping them as listed."""
    rows = catalog.db.run(
        f"UPDATE {quote_ident(collection.table)} SET listed_at = now() WHERE key = ANY(CAST(:keys AS text[])) "
        "RETURNING key, etag, status",
        keys=list(keys),
    )
    return {key: (etag, status) for key, etag, status in rows}


def needing_vector(catalog: Catalog, collection: Collection, keys: Sequence[str], *, max_attempts: int) -> list[str]:
    """Those of `keys` that need a vector and that no worker holds now."""
    rows = catalog.db.run(
        f"SELECT key FROM {quote_ident(collection.table)} WHERE key = ANY(CAST(:keys AS text[])) "
        f"AND {NEEDS_VECTOR} AND {FREE} ORDER BY id",
        keys=list(keys), max_attempts=int(max_attempts),
    )
    return [row[0] for row in rows]


def waiting_for(catalog: Catalog, collection: Collection, stage: str, keys: Sequence[str]) -> list[str]:
    """Those of `keys` that a stage after embedding (STAGE_WAITING: ocr, faces) has still to do and that none of
    its workers holds now."""
    rows = catalog.db.run(
        f"SELECT key FROM {quote_ident(collection.table)} WHERE key = ANY(CAST(:keys AS text[])) "
        f"AND {STAGE_WAITING[stage]} ORDER BY id",
        keys=list(keys),
    )
    return [row[0] for row in rows]


def unlisted(catalog: Catalog, collection: Collection, since: datetime, *, limit: int = 1000) -> list[str]:
    """Rows (not tombstones) the listing begun at `since` did not see, untouched since it began."""
    rows = catalog.db.run(
        f"SELECT key FROM {quote_ident(collection.table)} WHERE status <> 'deleted' "
        "AND (listed_at IS NULL OR listed_at < :since) AND updated_at < :since ORDER BY id LIMIT :limit",
        since=since, limit=int(limit),
    )
    return [row[0] for row in rows]


def moving_keys(catalog: Catalog, collection: Collection, *, after_id: int, limit: int) -> list[tuple[int, str]]:
    """(id, key) of embedded rows without the next model's vector, in id order after `after_id` (a model
    move's work list)."""
    rows = catalog.db.run(
        f"SELECT id, key FROM {quote_ident(collection.table)} WHERE status = 'embedded' AND embedding_next IS NULL "
        f"AND {FREE} AND id > :after_id ORDER BY id LIMIT :limit",
        after_id=int(after_id), limit=int(limit),
    )
    return [(int(row_id), key) for row_id, key in rows]


# Embedded rows that lack what a release before this one did not read at ingest (content hash and EXIF,
# embedded tags) or whose duplicate neighbours are missing or stale: the plan's fill messages.
NEEDS_FILL = f"t.status = 'embedded' AND (t.sha256 IS NULL OR t.tags IS NULL OR ({NEEDS_LIST}))"


def needing_fill(catalog: Catalog, collection: Collection, *, after_id: int, limit: int) -> list[tuple[int, str]]:
    """(id, key) of rows that need a fill (NEEDS_FILL), in id order after `after_id`."""
    rows = catalog.db.run(
        f"SELECT t.id, t.key FROM {quote_ident(collection.table)} AS t "
        f"LEFT JOIN {quote_ident(neighbours_table(collection.table))} AS s ON s.id = t.id "
        f"WHERE {NEEDS_FILL} AND t.id > :after_id ORDER BY t.id LIMIT :limit",
        after_id=int(after_id), limit=int(limit), model_id=collection.model_id,
    )
    return [(int(row_id), key) for row_id, key in rows]


def fill_states(catalog: Catalog, collection: Collection,
                keys: Sequence[str]) -> list[tuple[str, str | None, bool, bool]]:
    """(key, etag, lacks hash and EXIF, lacks tags) of those of `keys` that are embedded."""
    rows = catalog.db.run(
        f"SELECT key, etag, sha256 IS NULL, tags IS NULL FROM {quote_ident(collection.table)} "
        "WHERE key = ANY(CAST(:keys AS text[])) AND status = 'embedded' ORDER BY id",
        keys=list(keys),
    )
    return [(key, etag, bool(facts), bool(tags)) for key, etag, facts, tags in rows]


# ---- the backlog -------------------------------------------------------------------------------------


def backlog(catalog: Catalog, collection: Collection, *, max_attempts: int) -> dict[str, Any] | None:
    """{"queued", "done", "per_minute", "eta_seconds"} while queued work drains; None when nothing is left
    (or nothing was queued)."""
    plan = load(catalog, collection.name)
    if plan is None or not plan.queued or plan.planned_at is None:
        return None
    ((remaining, minutes),) = catalog.db.run(
        f"SELECT count(*), extract(epoch FROM now() - CAST(:since AS timestamptz)) / 60.0 "
        f"FROM {quote_ident(collection.table)} WHERE {NEEDS_VECTOR}",
        since=plan.planned_at, max_attempts=int(max_attempts),
    )
    remaining = int(remaining)
    if remaining == 0:
        return None
    done = max(0, plan.queued - remaining)
    per_minute = done / max(float(minutes), 1 / 60)
    eta = round(remaining / per_minute * 60) if per_minute > 0 else None
    return {"queued": plan.queued, "done": done, "per_minute": round(per_minute, 1), "eta_seconds": eta}
