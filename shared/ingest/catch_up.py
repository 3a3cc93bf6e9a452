"""Catch-up for rows from before a feature, their vectors untouched.

- Fills (`fill_keys`): what ingest reads now but a release before did not (content hash and EXIF,
  embedded tags: one read of each object), then the duplicate neighbours. The backfill's plan queues them as
  `fill` work messages, so the embed function's concurrency does them (`plans.needing_fill`); the sweep
  without a queue does them in its own process (`fill_older_rows`).
- The rest runs in the plan itself, once per listing (`catch_up`): key words of the names (SQL), places
  named from stored positions (a
  lookup in memory, ~4 µs each), faces of pictures removed or replaced leaving their people, and saved searches
  and Discover categories counted again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.ingest.exif import read_metadata
from shared.ingest.tags import read_photo_tags
from shared.jobs import TRANSIENT_ERRORS
from shared.places.lookup import places_of
from shared.search.duplicates import content_hash
from shared.store import faces, neighbours, places, plans
from shared.store.catalog import Catalog, Collection

log = logging.getLogger(__name__)

PLACE_BATCH = 5000  # positions named per statement (a batch lookup costs ~4 µs a position)


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


def fill_keys(ingestor: Any, collection: Collection, keys: Sequence[str]) -> tuple[int, int]:
    """A fill message's keys (those still embedded): content hash, EXIF and embedded tags where missing, from
    one read of each object (reads side by side), then their duplicate neighbours. (rows filled, rows whose
    neighbours were found). Objects gone or replaced are left to their events; an outage raises."""
    rows = [row for row in plans.fill_states(ingestor.catalog, collection, keys) if row[2] or row[3]]
    with ThreadPoolExecutor(max_workers=ingestor.workers, thread_name_prefix="fill") as pool:
        filled = sum(pool.map(lambda row: _fill_row(ingestor, collection, *row), rows))
    return filled, neighbours.index_neighbours(ingestor.catalog, collection, keys=list(keys))


def _fill_row(ingestor: Any, collection: Collection, key: str, etag: str | None, facts: bool, tags: bool) -> bool:
    try:
        data = ingestor.storage.read_unchanged(collection.bucket, key, etag)
        if data is None:
            return False
        values: dict[str, Any] = {}
        if facts:
            photo = read_metadata(data)
            values.update(photo.columns(), sha256=content_hash(data))
            if photo.width and photo.height:
                values.update(width=photo.width, height=photo.height)
        if tags:
            values.update(read_photo_tags(data).columns())
        return ingestor.catalog.store_photo_facts(collection, key, etag, values)
    except TRANSIENT_ERRORS:
        raise  # the message comes back
    except Exception as exc:  # this object only (access denied, ...): left for the next plan, the rest go on
        log.warning("filling s3://%s/%s failed: %s: %s", collection.bucket, key, type(exc).__name__, exc)
        return False


def fill_older_rows(ingestor: Any, collection: Collection, time_left: Callable[[], float],
                    errors: list[str]) -> tuple[int, int, bool]:
    """`fill_keys` over every row that needs it, in this process, a batch at a time until the deadline:
    (rows filled, rows whose neighbours were found, finished)."""
    filled = compared = after_id = 0
    while time_left() > 0:
        rows = plans.needing_fill(ingestor.catalog, collection, after_id=after_id,
                                  limit=ingestor.settings.backfill_batch_size)
        if not rows:
            return filled, compared, True
        try:
            done = fill_keys(ingestor, collection, [key for _, key in rows])
        except TRANSIENT_ERRORS as exc:
            errors.append(f"filling older rows: {exc}")
            return filled, compared, True  # the next sweep goes on
        filled, compared, after_id = filled + done[0], compared + done[1], rows[-1][0]
    return filled, compared, False


def refresh_counts(ingestor: Any, collection: Collection, time_left: Callable[[], float]) -> int:
    """Count the collection's saved searches and Discover categories again (the lists read stored counts)."""
    from shared.api.app import create_services  # the API's way of answering a search; loads the text tower
    from shared.api.saved_query import refresh_counts as refresh

    services = create_services(ingestor.settings, ingestor.catalog, ingestor.models)
    return refresh(services, ingestor.catalog.get_collection(collection.name), time_left)


def fill_name_words(catalog: Catalog, collection: Collection, time_left: Callable[[], float]) -> int:
    """Rows recorded before the keyword index get their key's words, a batch at a time; how many did."""
    written = 0
    while time_left() > 0 and (done := catalog.fill_name_words(collection)):
        written += done
    return written


def catch_up(ingestor: Any, collection: Collection, errors: list[str], time_left: Callable[[], float]) -> None:
    """Key words, places, faces of pictures gone, neighbour lists of images gone, then counts; a transient
    failure stops that part until the next sweep (in `errors`)."""
    done: dict[str, int] = {}
    for name, fill in (("key words", lambda: fill_name_words(ingestor.catalog, collection, time_left)),
                       ("places", lambda: fill_places(ingestor.catalog, collection, time_left)),
                       ("faces pruned", lambda: faces.prune(ingestor.catalog, collection)),
                       ("neighbour lists dropped", lambda: neighbours.forget_gone(ingestor.catalog, collection)),
                       ("counts", lambda: refresh_counts(ingestor, collection, time_left))):
        try:
            done[name] = fill()
        except TRANSIENT_ERRORS as exc:
            errors.append(f"filling {name}: {exc}")
    log.info("catch-up %s: %s", collection.name, done)
