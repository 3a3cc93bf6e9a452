"""The backfill: reconcile a collection with its bucket, then get whatever still lacks a vector embedded.

With a work queue (IB_WORK_QUEUE_URL, the embed queue; deployed and `make dev`), `plan` does it:
1. List the bucket a page at a time, the continuation token stored (shared/store/plans.py), so a listing of
   millions of keys goes on in the next invocation where this one stopped. Objects without a row (missed
   events) or with another etag get a `pending` row; every listed row is stamped `listed_at`.
2. Queue each page's rows that need a vector as work messages (shared/ingest/work.py), and its rows whose
   words wait as OCR messages: the embed and OCR functions' concurrency does the work, and the plan returns
   within seconds with its counts.
3. At the listing's end, rows it did not see and that nobody touched since it began lost their object: a
   tombstone each (a remove event was missed). Rows from before a feature are queued as `fill` messages
   (content hash, EXIF, tags, duplicate neighbours; shared/ingest/catch_up.py), and places and stored
   counts are caught up here.

Without a queue (the command line on its own), `sweep` does the work in this process:
1. Reconcile as above, from one listing held in memory.
2. Sweep: claim rows in batches (`FOR UPDATE SKIP LOCKED` + a lease, so two sweeps at once split the
   work) and run them through the same pipeline as events, with the model the collection records at
   each round, then fill rows from before a feature. Stops before the deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.events import ObjectEvent, key_problem
from shared.images import is_image_key
from shared.ingest import model_move, work
from shared.ingest.catch_up import catch_up, fill_older_rows
from shared.ingest.pipeline import Ingestor, IngestReport, WorkItem
from shared.jobs import TRANSIENT_ERRORS, Deadline
from shared.store import plans, queries
from shared.store.catalog import Collection

log = logging.getLogger(__name__)

TRANSIENT_RETRY_SECONDS = 60.0  # a row that hit a transient error waits this long


@dataclass
class SweepSummary:
    collection: str
    listed: int = 0
    added: int = 0  # objects that had no row (missed events) or a stale etag
    embedded: int = 0
    failed: int = 0
    removed: int = 0
    purged: int = 0  # tombstones old enough that no delayed event can still need them
    skipped: int = 0
    retry: int = 0
    reused: int = 0  # embedded with the stored vector of the same bytes under another key: no model call
    filled: int = 0  # rows embedded before hashes and EXIF were read that got them now, not re-embedded
    compared: int = 0  # images whose nearest neighbours (duplicate groups) were found by this sweep
    remaining: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def add_report(self, report: IngestReport) -> None:
        counts = report.summary()
        self.embedded += counts["embedded"]
        self.failed += counts["failed"]
        self.removed += counts["removed"]
        self.skipped += counts["skipped"] + counts["missing"]
        self.retry += counts["retry"]
        self.reused += counts["reused"]
        for (_, key), exc in list(report.errors.items())[:5]:
            self.errors.append(f"{key}: {exc}")


def reconcile(ingestor: Ingestor, collection: Collection, summary: SweepSummary,
              time_left: Callable[[], float] | None = None) -> bool:
    """Bring rows in line with the bucket listing; False if the deadline cut the listing short."""
    catalog, storage = ingestor.catalog, ingestor.storage
    listing_started = queries.db_now(catalog)
    rows = queries.row_states(catalog, collection)
    seen: set[str] = set()
    for index, info in enumerate(storage.list(collection.bucket)):
        if time_left is not None and index % 1000 == 0 and time_left() <= 0:  # once a listing page
            summary.stopped_early = True
            return False
        seen.add(info.key)  # any object present keeps its row (an image may lack an extension)
        _record_listed(ingestor, collection, info, rows.get(info.key), summary)
    for key, (_, status, updated_at) in rows.items():
        if status == "deleted" or key in seen or updated_at >= listing_started:
            continue
        # Gone from the bucket and untouched since the listing began: its remove event was missed.
        catalog.record_event(collection, ObjectEvent(collection.bucket, key, "removed", event_time=listing_started))
        storage.delete(collection.bucket, storage.thumbnail_key(key))
        summary.removed += 1
    return True


@dataclass
class PlanSummary:
    collection: str
    listed: int = 0
    added: int = 0  # objects that had no row (missed events) or a stale etag
    removed: int = 0
    skipped: int = 0
    queued: int = 0  # rows queued for embedding
    queued_ocr: int = 0  # rows queued for reading their words
    queued_faces: int = 0  # rows queued for finding their faces
    queued_fill: int = 0  # rows from before a feature queued for a fill (hash, EXIF, tags, neighbours)
    messages: int = 0
    purged: int = 0
    listing_done: bool = False  # False: the listing goes on at the next run, from its stored token
    stopped_early: bool = False
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


PAGE_SIZE = 1000  # S3's largest listing page
FILL_PAGE = 5000  # rows read per statement when queueing fills


def plan(ingestor: Ingestor, collection_name: str, *, queue_url: str, deadline: Deadline | None = None,
         page_size: int = PAGE_SIZE) -> PlanSummary:
    """Reconcile the bucket with the catalog a listing page at a time and queue the work each page needs;
    stops before the deadline with the listing's token stored, so the next run goes on from there."""
    started = time.monotonic()
    catalog, storage = ingestor.catalog, ingestor.storage
    collection = ingestor.collection_for(collection_name)
    summary = PlanSummary(collection.name)
    deadline = deadline or Deadline()
    state = plans.load(catalog, collection.name)
    if state is None or state.listing_token is None:
        state = plans.start_listing(catalog, collection.name)
    token, listing_started = state.listing_token, state.listing_started
    sqs = ingestor.queues(queue_url)
    while True:
        infos, token = storage.list_page(collection.bucket, token, page_size)
        keys = _reconcile_page(ingestor, collection, infos, summary)
        queued = _queue_page(ingestor, collection, keys, sqs, queue_url, summary)
        plans.save_page(catalog, collection.name, token, queued)
        if token is None:
            summary.listing_done = True
            break
        if deadline.seconds_left() <= 0:
            summary.stopped_early = True
            break
    if summary.listing_done:
        assert listing_started is not None
        _tombstone_unlisted(ingestor, collection, listing_started, summary)
        summary.purged = catalog.purge_tombstones(collection)
        _catch_up(ingestor, collection, summary, sqs, queue_url, deadline)
    summary.seconds = round(time.monotonic() - started, 3)
    log.info("backfill plan %s: %s", collection.name, summary.as_dict())
    return summary


def _reconcile_page(ingestor: Ingestor, collection: Collection, infos: list[Any], summary: PlanSummary) -> list[str]:
    """Rows for a page's new or replaced objects; the page's image keys (rows stamped as listed)."""
    # A key no row can hold (NUL, ...) would fail the page's statement: _record_listed skips it with a warning.
    storable = [info.key for info in infos if key_problem(info.key) is None]
    states = plans.row_states(ingestor.catalog, collection, storable)
    return [info.key for info in infos if _record_listed(ingestor, collection, info, states.get(info.key), summary)]


def _record_listed(ingestor: Ingestor, collection: Collection, info: Any, state: tuple[Any, ...] | None,
                   summary: PlanSummary | SweepSummary) -> bool:
    """A listed object's row brought in line with the listing (a `created` event when it has none or another
    etag); False for what no row holds: thumbnails, non-images, keys PostgreSQL cannot store (skipped)."""
    if ingestor.storage.is_thumbnail(info.key) or not is_image_key(info.key, info.content_type):
        return False
    if problem := key_problem(info.key):  # no row can hold it (NUL, ...): skipped, the listing goes on
        log.warning("skipping s3://%s/%r: the key %s", collection.bucket, info.key, problem)
        summary.skipped += 1
        return False
    summary.listed += 1
    if state is not None and state[1] != "deleted" and state[0] == info.etag:
        return True
    # Listings give whole seconds: the object was written at the latest at the end of that second.
    # Its start would lose to a tombstone this listing wrote a moment after the write.
    written = info.last_modified.replace(microsecond=999_999) if info.last_modified else None
    event = ObjectEvent(collection.bucket, info.key, "created", info.etag, info.size, event_time=written)
    if ingestor.catalog.record_event(collection, event):
        summary.added += 1
    return True


def _queue_page(ingestor: Ingestor, collection: Collection, keys: list[str], sqs: Any, queue_url: str,
                summary: PlanSummary) -> int:
    """Queue the page's rows that need a vector (and, with OCR or faces on, those that stage waits for); rows
    queued for embedding."""
    settings, catalog = ingestor.settings, ingestor.catalog
    if not keys:
        return 0
    todo = plans.needing_vector(catalog, collection, keys, max_attempts=settings.max_attempts)
    summary.messages += work.send(sqs, queue_url, work.chunks("embed", collection.name, todo))
    summary.queued += len(todo)
    stages: tuple[tuple[work.Job, bool, str | None], ...] = (
        ("ocr", settings.ocr, settings.ocr_queue_url), ("faces", settings.faces, settings.faces_queue_url))
    for stage, enabled, stage_queue in stages:
        if enabled and stage_queue:
            waiting = plans.waiting_for(catalog, collection, stage, keys)
            summary.messages += work.send(ingestor.queues(stage_queue), stage_queue,
                                          work.chunks(stage, collection.name, waiting))
            setattr(summary, f"queued_{stage}", getattr(summary, f"queued_{stage}") + len(waiting))
    return len(todo)


def _tombstone_unlisted(ingestor: Ingestor, collection: Collection, listing_started: Any,
                        summary: PlanSummary) -> None:
    """Rows the whole listing did not see, untouched since it began: their remove event was missed."""
    catalog, storage = ingestor.catalog, ingestor.storage
    while gone := plans.unlisted(catalog, collection, listing_started):
        for key in gone:
            catalog.record_event(collection, ObjectEvent(collection.bucket, key, "removed",
                                                         event_time=listing_started))
            storage.delete(collection.bucket, storage.thumbnail_key(key))
            summary.removed += 1


def _catch_up(ingestor: Ingestor, collection: Collection, summary: PlanSummary, sqs: Any, queue_url: str,
              deadline: Deadline) -> None:
    """Work for rows from before a feature: the fills (one object read each, and the duplicate neighbours)
    queued as `fill` messages, then key words, places and counts here (shared/ingest/catch_up.py)."""
    time_left = deadline.seconds_left
    after_id = 0
    while time_left() > 0 and (rows := plans.needing_fill(ingestor.catalog, collection, after_id=after_id,
                                                          limit=FILL_PAGE)):
        summary.messages += work.send(sqs, queue_url, work.chunks("fill", collection.name, [k for _, k in rows]))
        summary.queued_fill += len(rows)
        after_id = rows[-1][0]
    catch_up(ingestor, collection, summary.errors, time_left)  # key words, places, saved-search counts


def queue_reembed(ingestor: Ingestor, collection_name: str, model_id: str, dim: int, *, queue_url: str,
                  batch: int = 5000) -> dict[str, Any]:
    """Begin (or resume) a move to `model_id` and queue a re-embedding message for every row still without
    its vector; the embed function does the work and the last one switches (shared/ingest/model_move.py)."""
    catalog = ingestor.catalog
    collection = catalog.get_collection(collection_name)
    if collection.model_id == model_id:
        return {"collection": collection.name, "model": model_id, "queued": 0, "switched": True}
    model_move.begin(catalog, collection, model_id, dim)
    collection = catalog.get_collection(collection_name)
    sqs, after_id, queued = ingestor.queues(queue_url), 0, 0
    while rows := plans.moving_keys(catalog, collection, after_id=after_id, limit=batch):
        work.send(sqs, queue_url, work.chunks("reembed", collection.name, [key for _, key in rows], model=model_id))
        queued, after_id = queued + len(rows), rows[-1][0]
    switched = model_move.finish_if_done(ingestor, collection.name) if not queued else False
    return {"collection": collection.name, "model": model_id, "queued": queued, "switched": switched,
            "stopped_early": False}


def sweep(ingestor: Ingestor, collection_name: str, *, deadline: Deadline | None = None, reconcile_bucket: bool = True,
          max_rounds: int = 100_000) -> SweepSummary:
    """Reconcile, then embed claimed rows in rounds until none are left or the deadline nears."""
    started = time.monotonic()
    settings, catalog = ingestor.settings, ingestor.catalog
    collection = ingestor.collection_for(collection_name)
    summary = SweepSummary(collection.name)
    last_round = 0.0

    deadline = deadline or Deadline()

    def time_left() -> float:
        return deadline.seconds_left() - last_round  # room for one more round like the last

    if reconcile_bucket:
        reconcile(ingestor, collection, summary, time_left)
        summary.purged = catalog.purge_tombstones(collection)  # else deleted keys pile up forever
    for _ in range(max_rounds):
        if time_left() <= 0:
            summary.stopped_early = True
            break
        round_started = time.monotonic()
        try:  # each round: the model the collection records now (a move may switch it meanwhile)
            collection = catalog.get_collection(collection.name)
            writes = ingestor.writes_for(collection)
        except TRANSIENT_ERRORS as exc:
            summary.errors.append(str(exc))
            break
        claimed = catalog.claim_todo(collection, settings.backfill_batch_size, max_attempts=settings.max_attempts)
        if not claimed:
            break
        items = [WorkItem(collection, key, etag, attempts, "backfill") for key, etag, attempts in claimed]
        report = IngestReport()
        ingestor.embed_items(items, writes, report, missing="remove")
        summary.add_report(report)
        ingestor.release_failed(collection, report, retry_after_seconds=TRANSIENT_RETRY_SECONDS)
        last_round = time.monotonic() - round_started
        if report.errors and len(report.errors) == len(items):
            break  # everything failed transiently (database or storage down): try again next run
    if not summary.stopped_early:  # catch-up work for rows from before a feature, after embedding
        summary.filled, summary.compared, finished = fill_older_rows(ingestor, collection, time_left, summary.errors)
        summary.stopped_early = not finished
        catch_up(ingestor, collection, summary.errors, time_left)  # key words, places, saved-search counts
    summary.remaining = catalog.count_todo(collection, max_attempts=settings.max_attempts)
    summary.seconds = round(time.monotonic() - started, 3)
    log.info("backfill %s: %s", collection.name, summary.as_dict())
    return summary
