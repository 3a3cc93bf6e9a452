"""The backfill sweep: reconcile a collection with its bucket, then embed whatever still lacks a vector.

1. Reconcile: list the bucket; objects without a row (missed events) or with another etag get a
   `pending` row; rows whose object is gone get a tombstone. Rows touched after the listing began are
   left alone, so a sweep never undoes an event that raced it.
2. Sweep: claim rows in batches (`FOR UPDATE SKIP LOCKED` + a lease, so two sweeps at once split the
   work) and run them through the same pipeline as events. Stops before the deadline.

Also the model move (`reembed`): vectors of the new model are written beside the live ones, then
switched in one short transaction.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from shared.catalog import Collection
from shared.embedders import Embedder
from shared.events import ObjectEvent
from shared.images import is_image_key
from shared.ingest import TRANSIENT_ERRORS, Ingestor, IngestReport, Prepared, WorkItem

log = logging.getLogger(__name__)

CLAIM_LEASE_SECONDS = 600.0  # a claimed row is ours this long; a crashed sweep's rows come back after it
SWITCH_TRIES = 3
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
        for (_, key), exc in list(report.errors.items())[:5]:
            self.errors.append(f"{key}: {exc}")


def reconcile(ingestor: Ingestor, collection: Collection, summary: SweepSummary,
              time_left: Callable[[], float] | None = None) -> bool:
    """Bring rows in line with the bucket listing; False if the deadline cut the listing short."""
    catalog, storage = ingestor.catalog, ingestor.storage
    listing_started = catalog.db_now()
    rows = catalog.row_states(collection)
    seen: set[str] = set()
    for index, info in enumerate(storage.list(collection.bucket)):
        if time_left is not None and index % 1000 == 0 and time_left() <= 0:  # once a listing page
            summary.stopped_early = True
            return False
        seen.add(info.key)  # any object present keeps its row (an image may lack an extension)
        if storage.is_thumbnail(info.key) or not is_image_key(info.key, info.content_type):
            continue
        summary.listed += 1
        state = rows.get(info.key)
        if state is not None and state[1] != "deleted" and state[0] == info.etag:
            continue
        event = ObjectEvent(collection.bucket, info.key, "created", info.etag, info.size,
                            event_time=info.last_modified)
        if catalog.record_event(collection, event):
            summary.added += 1
    for key, (_, status, updated_at) in rows.items():
        if status == "deleted" or key in seen or updated_at >= listing_started:
            continue
        # Gone from the bucket and untouched since the listing began: its remove event was missed.
        catalog.record_event(collection, ObjectEvent(collection.bucket, key, "removed", event_time=listing_started))
        storage.delete(collection.bucket, storage.thumbnail_key(key))
        summary.removed += 1
    return True


def sweep(ingestor: Ingestor, collection_name: str, *, remaining_ms: Callable[[], int] | None = None,
          margin_ms: int = 30_000, reconcile_bucket: bool = True, max_rounds: int = 100_000) -> SweepSummary:
    """Reconcile, then embed claimed rows in rounds until none are left or the deadline nears."""
    started = time.monotonic()
    settings, catalog = ingestor.settings, ingestor.catalog
    collection = ingestor.collection_for(collection_name)
    summary = SweepSummary(collection.name)
    last_round = 0.0

    def time_left() -> float:
        if remaining_ms is None:
            return float("inf")
        return (remaining_ms() - margin_ms) / 1000.0 - last_round  # room for one more round like the last

    if reconcile_bucket:
        reconcile(ingestor, collection, summary, time_left)
        summary.purged = catalog.purge_tombstones(collection)  # else deleted keys pile up forever
    for _ in range(max_rounds):
        if time_left() <= 0:
            summary.stopped_early = True
            break
        round_started = time.monotonic()
        claimed = catalog.claim_todo(collection, settings.backfill_batch_size, max_attempts=settings.max_attempts,
                                     lease_seconds=CLAIM_LEASE_SECONDS)
        if not claimed:
            break
        items = [WorkItem(collection, key, etag, attempts, "backfill") for key, etag, attempts in claimed]
        report = IngestReport()
        ingestor.embed_items(items, report, missing="remove")
        summary.add_report(report)
        for _, key in report.errors:
            with contextlib.suppress(*TRANSIENT_ERRORS):  # else the lease runs out by itself
                catalog.release_claim(collection, key, retry_after_seconds=TRANSIENT_RETRY_SECONDS)
        last_round = time.monotonic() - round_started
        if report.errors and len(report.errors) == len(items):
            break  # everything failed transiently (database or storage down): try again next run
    summary.remaining = catalog.count_todo(collection, max_attempts=settings.max_attempts)
    summary.seconds = round(time.monotonic() - started, 3)
    log.info("backfill %s: %s", collection.name, summary.as_dict())
    return summary


# ---- reembed ----------------------------------------------------------------------------------------


@dataclass
class ReembedSummary:
    collection: str
    model: str
    embedded: int = 0
    failed: int = 0
    switched: bool = False
    reset_to_pending: int = 0


def reembed(ingestor: Ingestor, collection_name: str, new_embedder: Embedder,
            progress: Callable[[int, int], None] | None = None) -> ReembedSummary:
    """Move a collection to `new_embedder`'s model while searches keep using the old vectors.

    `ingestor` carries the collection's current model (the one events still use). Rows that change
    while this runs are caught by the loop; any left at the switch go back to `pending`, for a sweep
    with the new model. Deploy the new IB_MODEL to the functions after the switch.
    """
    catalog = ingestor.catalog
    collection = catalog.get_collection(collection_name)
    if collection.model_id == new_embedder.model_id and collection.dim == new_embedder.dim:
        return ReembedSummary(collection.name, new_embedder.model_id, switched=True)
    catalog.begin_reembed(collection, new_embedder.model_id, new_embedder.dim)
    summary = ReembedSummary(collection.name, new_embedder.model_id)
    writer = _NextModelIngestor(ingestor.settings, catalog, ingestor.storage, new_embedder)
    for attempt in range(SWITCH_TRIES + 1):
        while claimed := catalog.claim_reembed(collection, ingestor.settings.backfill_batch_size,
                                               lease_seconds=CLAIM_LEASE_SECONDS):
            report = IngestReport()
            writer.embed_items([WorkItem(collection, key, etag, 0, "reembed") for key, etag in claimed],
                               report, missing="skip")
            counts = report.summary()
            summary.embedded += counts["embedded"]
            summary.failed += counts["failed"]
            if report.errors and len(report.errors) == len(claimed):
                raise next(iter(report.errors.values()))
            if progress is not None:
                progress(*catalog.reembed_progress(collection))
        catalog.build_next_index(collection)
        force = attempt == SWITCH_TRIES
        done, total = catalog.reembed_progress(collection)
        if catalog.switch_model(collection, force=force):
            summary.switched = True
            summary.reset_to_pending = total - done
            break
    return summary


class _NextModelIngestor(Ingestor):
    """The pipeline writing into `embedding_next` instead of the live vector (thumbnails exist already)."""

    write_thumbnails = False

    def _store(self, p: Prepared, vector: np.ndarray) -> bool:
        item = p.item
        return self.catalog.store_next_embedding(item.collection, item.key, item.etag, vector)

    def _mark_failed(self, item: WorkItem, exc: BaseException, report: IngestReport) -> None:
        # The live row keeps its old vector; only this move skips it (it goes pending at the switch).
        report.add(item.collection.bucket, item.key, item.action, "failed", str(exc))
