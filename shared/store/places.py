"""Places and embedded tags in a collection's table: the Places list (GET /api/places), and the rows the
sweep still has to fill (a place for rows with a GPS position, tags for rows read before tags were).

The columns are declared in shared/store/tables.py ADDED_COLUMNS; ingest writes them with the vector
(`Catalog.store_embedding`), the sweep through the functions here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.store.catalog import Catalog, Collection
from shared.store.db import quote_ident


@dataclass(frozen=True)
class PlaceCount:
    city: str | None
    state: str | None
    country: str
    country_code: str
    count: int
    cover: str  # the key of its newest photo (highest id)


def place_counts(catalog: Catalog, collection: Collection, *, limit: int) -> list[PlaceCount]:
    """Every place of the collection's embedded photos with how many were taken there, most first (then by
    name), with the key of the newest. One pass over the table's rows that have a place."""
    q = quote_ident(collection.table)
    rows = catalog.db.run(
        f"""SELECT p.city, p.state, p.country, p.country_code, p.n, t.key
            FROM (SELECT city, state, country, country_code, count(*) AS n, max(id) AS cover_id FROM {q}
                  WHERE status = 'embedded' AND country IS NOT NULL
                  GROUP BY city, state, country, country_code
                  ORDER BY n DESC, country, state NULLS FIRST, city NULLS FIRST LIMIT :limit) AS p
            JOIN {q} AS t ON t.id = p.cover_id
            ORDER BY p.n DESC, p.country, p.state NULLS FIRST, p.city NULLS FIRST""",
        limit=int(limit),
    )
    return [PlaceCount(city, state, country, code, int(n), key) for city, state, country, code, n, key in rows]


def rows_without_place(catalog: Catalog, collection: Collection, *, after_id: int, limit: int,
                       ) -> list[tuple[int, float, float]]:
    """(id, latitude, longitude) of embedded rows with a position whose place was never looked up, in id order
    after `after_id`."""
    rows = catalog.db.run(
        f"SELECT id, latitude, longitude FROM {quote_ident(collection.table)} WHERE status = 'embedded' "
        "AND latitude IS NOT NULL AND longitude IS NOT NULL AND place_words IS NULL AND id > :after_id "
        "ORDER BY id LIMIT :limit",
        after_id=int(after_id), limit=int(limit),
    )
    return [(int(row_id), float(lat), float(lon)) for row_id, lat, lon in rows]


def store_places(catalog: Catalog, collection: Collection, rows: Sequence[tuple[int, float, float]],
                 columns: Sequence[dict[str, Any]]) -> int:
    """Write the looked-up place columns of rows (as `rows_without_place` gave them), one statement; a row
    whose position changed meanwhile (re-ingested) is left alone. How many were written."""
    if not rows:
        return 0
    values = [{"id": row_id, "latitude": lat, "longitude": lon, **place}
              for (row_id, lat, lon), place in zip(rows, columns, strict=True)]
    written = catalog.db.run(
        f"""UPDATE {quote_ident(collection.table)} AS t SET city = u.city, state = u.state, country = u.country,
                country_code = u.country_code, place_names = u.place_names, place_words = u.place_words
            FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS u(id bigint, latitude float8, longitude float8,
                city text, state text, country text, country_code text, place_names text[], place_words text)
            WHERE t.id = u.id AND t.latitude = u.latitude AND t.longitude = u.longitude AND t.place_words IS NULL
            RETURNING t.id""",
        rows=json.dumps(values),
    )
    return len(written)
