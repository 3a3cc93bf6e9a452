"""The sweep's catch-up for places, embedded tags, faces and stored search counts: rows embedded before ingest
named places or read tags get them now (their vectors untouched), faces of pictures removed or replaced leave
their people, and saved searches and Discover categories are counted again. Called once per sweep from
shared/ingest/backfill.py, after the other catch-up fills.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.ingest.tags import read_photo_tags
from shared.jobs import TRANSIENT_ERRORS
from shared.places.lookup import places_of
from shared.store import faces, places
from shared.store.catalog import Catalog, Collection

log = logging.getLogger(__name__)

PLACE_BATCH = 5000  # positions named per statement (a batch lookup costs ~4 µs a position)
TAG_BATCH = 200  # objects read per round


def fill_places(catalog: Catalog, collection: Collection, time_left: Callable[[], float]) -> int:
    """Name the place of every embedded row with a position and none looked up yet; how many were written."""
    written, after_id = 0, 0
    while time_left() > 0:
        rows = places.rows_without_place(catalog, collection, after_id=after_id, limit=PLACE_BATCH)
        if not rows:
            break
        columns = places_of([(lat, lon) for _, lat, lon in rows])
        if columns is None:  # no place data in this deployment (logged): the next sweep tries again
            break
        written += places.store_places(catalog, collection, rows, columns)
        after_id = rows[-1][0]
    return written


def fill_tags(ingestor: Any, collection: Collection, time_left: Callable[[], float]) -> int:
    """Read the keywords and caption of embedded rows that were never read (the object is read again, S3
    reads side by side); how many were written. Objects gone or replaced are left to their events."""
    written, after_id = 0, 0
    with ThreadPoolExecutor(max_workers=ingestor.workers, thread_name_prefix="tags") as pool:
        while time_left() > 0:
            rows = places.rows_without_tags(ingestor.catalog, collection, after_id=after_id, limit=TAG_BATCH)
            if not rows:
                break
            written += sum(pool.map(lambda row: _fill_tags_row(ingestor, collection, row[1], row[2]), rows))
            after_id = rows[-1][0]
    return written


def _fill_tags_row(ingestor: Any, collection: Collection, key: str, etag: str | None) -> bool:
    data = ingestor.storage.read_unchanged(collection.bucket, key, etag)
    return data is not None and ingestor.catalog.store_photo_facts(collection, key, etag,
                                                                   read_photo_tags(data).columns())


def refresh_counts(ingestor: Any, collection: Collection, time_left: Callable[[], float]) -> int:
    """Count the collection's saved searches and Discover categories again (the lists read stored counts)."""
    from shared.api.app import create_services  # the API's way of answering a search; loads the text tower
    from shared.api.saved_query import refresh_counts as refresh

    services = create_services(ingestor.settings, ingestor.catalog, ingestor.models)
    return refresh(services, ingestor.catalog.get_collection(collection.name), time_left)


def catch_up(ingestor: Any, collection: Collection, errors: list[str], time_left: Callable[[], float]) -> None:
    """Places, tags, faces of pictures gone, then counts; a transient failure stops that part until the next
    sweep (in `errors`)."""
    done: dict[str, int] = {}
    for name, fill in (("places", lambda: fill_places(ingestor.catalog, collection, time_left)),
                       ("tags", lambda: fill_tags(ingestor, collection, time_left)),
                       ("faces pruned", lambda: faces.prune(ingestor.catalog, collection)),
                       ("counts", lambda: refresh_counts(ingestor, collection, time_left))):
        try:
            done[name] = fill()
        except TRANSIENT_ERRORS as exc:
            errors.append(f"filling {name}: {exc}")
    log.info("catch-up %s: %s", collection.name, done)
