"""Saved searches and the Discover categories' stored answers, in one table for every collection.

A row is a search's parameters (`query`, as /api/search takes them) under a name, for one collection, of one
kind: 'saved' (a user's: POST /api/saved-searches) or 'discover' (a built-in category, one row per name,
made on the first GET /api/discover). Each keeps its last count and cover (the best match), the model they
were counted with and when: the lists read them, the sweep refreshes them (shared/api/saved_query.py).
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from shared.store.catalog import Catalog

TABLE = "ib_saved_searches"
Kind = Literal["saved", "discover"]
_ready: weakref.WeakSet[Catalog] = weakref.WeakSet()
COLUMNS = "id, name, query, count, cover_key, counted_model, counted_at"


@dataclass(frozen=True)
class SavedRow:
    id: int
    name: str
    query: dict[str, Any]
    count: int | None
    cover_key: str | None
    counted_model: str | None
    counted_at: datetime | None


def ensure_table(catalog: Catalog) -> None:
    """Create the table, once per catalog object (under create_once's lock: two first calls at once are safe)."""
    if catalog in _ready:
        return
    catalog.db.create_once(
        TABLE,
        f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            collection text NOT NULL,
            kind text NOT NULL CHECK (kind IN ('saved', 'discover')),
            name text NOT NULL,
            query jsonb NOT NULL,
            count integer,
            cover_key text,
            counted_model text,
            counted_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now()
        )""",
        f"CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_discover ON {TABLE} (collection, name) WHERE kind = 'discover'",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_collection ON {TABLE} (collection, kind, id)",
    )
    _ready.add(catalog)


def _row(values: list[Any]) -> SavedRow:
    query = values[2] if isinstance(values[2], dict) else json.loads(values[2])
    return SavedRow(int(values[0]), values[1], query, values[3], values[4], values[5], values[6])


def create(catalog: Catalog, collection: str, name: str, query: dict[str, Any], kind: Kind = "saved") -> SavedRow:
    ensure_table(catalog)
    rows = catalog.db.run(
        f"INSERT INTO {TABLE} (collection, kind, name, query) "
        f"VALUES (:collection, :kind, :name, CAST(:query AS jsonb)) RETURNING {COLUMNS}",
        collection=collection, kind=kind, name=name, query=json.dumps(query))
    return _row(rows[0])


def list_rows(catalog: Catalog, collection: str, kind: Kind = "saved") -> list[SavedRow]:
    """The collection's rows of this kind, oldest first."""
    ensure_table(catalog)
    return [_row(row) for row in catalog.db.run(
        f"SELECT {COLUMNS} FROM {TABLE} WHERE collection = :collection AND kind = :kind ORDER BY id",
        collection=collection, kind=kind)]


def get(catalog: Catalog, collection: str, saved_id: int, kind: Kind = "saved") -> SavedRow | None:
    ensure_table(catalog)
    rows = catalog.db.run(f"SELECT {COLUMNS} FROM {TABLE} WHERE id = :id AND collection = :collection "
                          "AND kind = :kind", id=int(saved_id), collection=collection, kind=kind)
    return _row(rows[0]) if rows else None


def delete(catalog: Catalog, collection: str, saved_id: int) -> bool:
    ensure_table(catalog)
    return bool(catalog.db.run(f"DELETE FROM {TABLE} WHERE id = :id AND collection = :collection "
                               "AND kind = 'saved' RETURNING id", id=int(saved_id), collection=collection))


def store_count(catalog: Catalog, saved_id: int, count: int, cover_key: str | None, model_id: str) -> SavedRow | None:
    """Record a count; the row as stored now (None: deleted meanwhile)."""
    ensure_table(catalog)
    rows = catalog.db.run(f"UPDATE {TABLE} SET count = :count, cover_key = :cover, counted_model = :model, "
                          f"counted_at = now() WHERE id = :id RETURNING {COLUMNS}", id=int(saved_id),
                          count=int(count), cover=cover_key, model=model_id)
    return _row(rows[0]) if rows else None


def discover_rows(catalog: Catalog, collection: str, categories: list[tuple[str, dict[str, Any]]]) -> list[SavedRow]:
    """The collection's Discover rows in the categories' order: made on first use, and a category whose
    query changed (a new release) gets it with its count cleared."""
    rows = {row.name: row for row in list_rows(catalog, collection, "discover")}
    if any(name not in rows or rows[name].query != query for name, query in categories):
        for name, query in categories:
            catalog.db.run(
                f"""INSERT INTO {TABLE} AS s (collection, kind, name, query)
                    VALUES (:collection, 'discover', :name, CAST(:query AS jsonb))
                    ON CONFLICT (collection, name) WHERE kind = 'discover' DO UPDATE SET query = EXCLUDED.query,
                        count = NULL, cover_key = NULL, counted_model = NULL, counted_at = NULL
                    WHERE s.query IS DISTINCT FROM EXCLUDED.query""",
                collection=collection, name=name, query=json.dumps(query))
        rows = {row.name: row for row in list_rows(catalog, collection, "discover")}
    return [rows[name] for name, _ in categories if name in rows]
