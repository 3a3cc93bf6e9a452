"""Ingestion core: object events -> catalog rows with a vector, size, etag and a WebP thumbnail.

One `Ingestor` serves the embed function (events), the backfill sweep (claimed rows) and the CLI.
Work flows as a small pipeline so the model is never idle waiting for S3:

    worker threads: read object -> decode -> thumbnail (write it) -> model preprocessing
    model threads: batches of `embed_batch_size` -> model -> store vectors (IB_EMBED_PARALLEL side by side)

Failures are sorted three ways:
- permanent (corrupt image, bomb, too large, unsupported): the row is marked `failed` with the reason and
  a backoff; the batch goes on, and the attempts limit stops retries;
- object gone since the event: skipped (events) or tombstoned (backfill);
- transient (database down, S3 5xx/throttling, embedding backend 429): kept in `IngestReport.errors`
  so the caller hands only those messages back to the queue.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from shared.catalog import Catalog, Collection
from shared.config import Settings
from shared.db import DatabaseUnavailable
from shared.embedders import EmbedderTemporaryError, normalize_rows
from shared.events import ObjectEvent
from shared.images import ImageError, content_type_for, decode, is_image_key, thumbnail
from shared.storage import ObjectInfo, ObjectMissing, ObjectTooLarge, Storage, StorageUnavailable

if TYPE_CHECKING:
    from shared.embedders import Embedder

log = logging.getLogger(__name__)
THUMBNAIL_SKIP = "thumbnail (our own write)"

# Worth retrying later: the message (or the claimed row) comes back.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (DatabaseUnavailable, StorageUnavailable, EmbedderTemporaryError)
# The object itself is unusable: mark the row failed.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (ImageError, ObjectTooLarge)

RETRY_BASE_SECONDS = 60.0  # failed rows wait 1 min, 4 min, 16 min, ... before a sweep retries them
RETRY_MAX_SECONDS = 24 * 3600.0
DEFAULT_WORKERS = 4

Outcome = Literal["embedded", "skipped", "failed", "removed", "missing", "retry"]
MissingPolicy = Literal["skip", "remove"]


class IngestRetry(RuntimeError):
    """Some objects hit a transient failure (database, storage or embedding backend): retry them later."""

    def __init__(self, errors: dict[tuple[str, str], BaseException]):
        self.errors = errors
        (bucket, key), first = next(iter(errors.items()))
        super().__init__(
            f"{len(errors)} object(s) could not be ingested now and should be retried, "
            f"e.g. s3://{bucket}/{key}: {first}"
        )


@dataclass(frozen=True)
class ObjectOutcome:
    """One object's result, for structured logs."""

    bucket: str
    key: str
    action: str
    outcome: Outcome
    reason: str | None = None
    seconds: float | None = None


@dataclass
class IngestReport:
    """What happened to each object; filled from the worker threads and the calling thread."""

    outcomes: list[ObjectOutcome] = field(default_factory=list)
    errors: dict[tuple[str, str], BaseException] = field(default_factory=dict)  # transient, by (bucket, key)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, bucket: str, key: str, action: str, outcome: Outcome, reason: str | None = None,
            seconds: float | None = None) -> None:
        with self._lock:
            self.outcomes.append(ObjectOutcome(bucket, key, action, outcome, reason, seconds))

    def retry(self, bucket: str, key: str, action: str, exc: BaseException) -> None:
        with self._lock:
            self.errors[(bucket, key)] = exc
        self.add(bucket, key, action, "retry", f"{type(exc).__name__}: {exc}")

    def keys(self, outcome: Outcome) -> list[str]:
        return [o.key for o in self.outcomes if o.outcome == outcome]

    def summary(self) -> dict[str, int]:
        counts = {name: 0 for name in ("embedded", "skipped", "failed", "removed", "missing", "retry")}
        for o in self.outcomes:
            counts[o.outcome] += 1
        return counts



@dataclass(frozen=True)
class WorkItem:
    """A row to embed: the etag is the row's, so a vector is only stored for the content it came from."""

    collection: Collection
    key: str
    etag: str | None
    attempts: int = 0
    action: str = "created"

    @property
    def bucket(self) -> str:
        return self.collection.bucket


@dataclass(frozen=True)
class KeyEvents:
    """The events of one object in a batch, still to be applied to the catalog (in a worker thread)."""

    bucket: str
    key: str
    events: tuple[ObjectEvent, ...]

    @property
    def action(self) -> str:
        return self.events[-1].action


@dataclass
class Prepared:
    item: WorkItem
    info: ObjectInfo
    width: int
    height: int
    image: Image.Image | None  # for embedders without a separate preprocessing step
    pixels: np.ndarray | None  # the model's input row, computed in the worker thread
    started: float


def retry_delay(attempts: int) -> float:
    """Backoff before a sweep retries a failed row that has failed `attempts` times before."""
    return min(RETRY_BASE_SECONDS * 4 ** max(0, attempts), RETRY_MAX_SECONDS)


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, ImageError):
        return f"{exc.reason}: {exc}"
    if isinstance(exc, ObjectTooLarge):
        return f"too_large: {exc}"
    return f"{type(exc).__name__}: {exc}"


def original_size(data: bytes, fallback: tuple[int, int]) -> tuple[int, int]:
    """Width and height as displayed (EXIF rotation applied), from the header only.

    The decoder may have used JPEG draft mode, so the decoded image can be smaller than the original.
    """
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
            orientation = header.getexif().get(0x0112)
    except Exception:  # the decoder already accepted the data; a header quirk only costs us exact sizes
        return fallback
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


class Ingestor:
    """Embeds objects into the catalog; thread-safe to share, one per process is enough."""

    write_thumbnails = True

    def __init__(self, settings: Settings, catalog: Catalog, storage: Storage, embedder: Embedder,
                 *, workers: int | None = None):
        self.settings = settings
        self.catalog = catalog
        self.storage = storage
        self.embedder = embedder
        self.workers = workers or max(DEFAULT_WORKERS, settings.backfill_concurrency)
        # Split preprocessing from the model call when the embedder allows it (local ONNX models), so
        # resizing runs in the worker threads; hosted models take PIL images.
        self._split = callable(getattr(embedder, "preprocess", None)) and callable(
            getattr(embedder, "run_visual", None)
        )

    # ---- events ---------------------------------------------------------------------------------

    def collection_for(self, bucket: str) -> Collection:
        """The bucket's collection, created on first use with this process's model."""
        return self.catalog.ensure_collection(bucket, self.embedder.model_id, self.embedder.dim, bucket=bucket)

    def process_events(self, events: Sequence[ObjectEvent]) -> IngestReport:
        """Apply events (ordering and tombstones by the catalog), then embed what is new.

        Never raises for one object's transient failure: see `report.errors`.
        """
        report = IngestReport()
        by_key: dict[tuple[str, str], list[ObjectEvent]] = {}
        for event in events:
            by_key.setdefault((event.bucket, event.key), []).append(event)
        for bucket in {bucket for bucket, _ in by_key}:
            self.collection_for(bucket)  # once, before the workers need it
        # Catalog updates run in the worker threads too, so the model starts on the first images at once.
        jobs = [KeyEvents(bucket, key, tuple(key_events)) for (bucket, key), key_events in by_key.items()]
        self.embed_items(jobs, report, missing="skip")
        return report

    def _record(self, bucket: str, key: str, events: Sequence[ObjectEvent], report: IngestReport) -> WorkItem | None:
        """Apply one object's events; the row to embed, or None (the outcome is reported)."""
        action = events[-1].action
        if self.storage.is_thumbnail(key):
            report.add(bucket, key, action, "skipped", THUMBNAIL_SKIP)
            return None
        creates = any(event.action == "created" for event in events)
        collection = self.collection_for(bucket)
        if not is_image_key(key):
            # No image extension: only a HEAD's content type can make it one; removals of such keys
            # matter only if we hold a row for them.
            info = self.storage.head(bucket, key) if creates else None
            if not (info and is_image_key(key, info.content_type)) and (
                creates or self.catalog.get_row(collection, key) is None
            ):
                report.add(bucket, key, action, "skipped", "not an image (extension and content type)")
                return None
        for event in events:
            self.catalog.record_event(collection, event)
        row = self.catalog.get_row(collection, key)
        if row is None or row.status == "deleted":
            self.storage.delete(bucket, self.storage.thumbnail_key(key))
            report.add(bucket, key, "removed", "removed")
            return None
        if row.status == "embedded" and row.has_embedding:
            report.add(bucket, key, action, "skipped", "already embedded (same etag)")
            return None
        if row.status == "failed":
            # Same content failed before; the sweep retries it with backoff up to IB_MAX_ATTEMPTS.
            report.add(bucket, key, action, "skipped", f"failed before ({row.attempts} attempts): {row.error}")
            return None
        return WorkItem(collection, key, row.etag, row.attempts, action)

    # ---- the pipeline ---------------------------------------------------------------------------

    def embed_items(self, items: Sequence[WorkItem | KeyEvents], report: IngestReport, *,
                    missing: MissingPolicy) -> None:
        """Read, decode, thumbnail and embed `items` in batches, S3 reads overlapping the model."""
        if not items:
            return
        batch_size = self.settings.embed_batch_size
        model_calls = self.settings.image_model_calls
        window = max((model_calls + 1) * batch_size, self.workers)  # bounded: decoded photos are big
        queue: deque[tuple[WorkItem | KeyEvents, Future[Prepared | None]]] = deque()
        embedding: deque[Future[None]] = deque()
        pending = iter(items)
        with (
            ThreadPoolExecutor(max_workers=min(self.workers, len(items)), thread_name_prefix="ingest") as pool,
            ThreadPoolExecutor(max_workers=model_calls, thread_name_prefix="model") as model,
        ):

            def embed(batch: list[Prepared]) -> None:
                # Up to `model_calls` batches in the model at once; wait for the oldest beyond that.
                while len(embedding) >= model_calls:
                    embedding.popleft().result()
                embedding.append(model.submit(self._embed_batch, batch, report))

            def refill() -> None:
                while len(queue) < window:
                    item = next(pending, None)
                    if item is None:
                        return
                    queue.append((item, pool.submit(self._prepare, item, report, missing)))

            refill()
            batch: list[Prepared] = []
            while queue:
                item, future = queue.popleft()
                refill()
                prepared = self._collect(item, future, report)
                if prepared is not None:
                    batch.append(prepared)
                if len(batch) >= batch_size:
                    embed(batch)
                    batch = []
            if batch:
                embed(batch)
            for future in embedding:
                future.result()

    def _prepare(self, job: WorkItem | KeyEvents, report: IngestReport, missing: MissingPolicy) -> Prepared | None:
        """Worker thread: everything per object that does not need the model. None: outcome reported.

        Permanent failures and vanished objects are handled here; transient errors propagate.
        """
        started = time.perf_counter()
        item = self._record(job.bucket, job.key, job.events, report) if isinstance(job, KeyEvents) else job
        if item is None:
            return None
        try:
            return self._read_and_decode(item, started, report)
        except PERMANENT_ERRORS as exc:
            self._mark_failed(item, exc, report)
        except ObjectMissing:
            self._object_gone(item, report, missing)
        return None

    def decode(self, data: bytes) -> Image.Image:
        """Decode for embedding and the thumbnail: big JPEGs at a reduced scale that still covers both."""
        return decode(
            data,
            max_pixels=self.settings.max_image_pixels,
            max_bytes=self.settings.max_image_bytes,
            min_side=self.embedder.input_side,
            min_long_side=self.settings.thumbnail_size if self.write_thumbnails else None,
        )

    def _read_and_decode(self, item: WorkItem, started: float, report: IngestReport) -> Prepared | None:
        bucket = item.bucket
        obj = self.storage.read(bucket, item.key, self.settings.max_image_bytes)
        if item.etag and obj.info.etag and obj.info.etag != item.etag:
            # Replaced since the event: the newer event (or the sweep) embeds the new content.
            report.add(bucket, item.key, item.action, "skipped", "object replaced since the event (etag differs)")
            return None
        image = self.decode(obj.data)
        width, height = original_size(obj.data, image.size)
        if self.write_thumbnails:
            thumb = thumbnail(image, self.settings.thumbnail_size)
            self.storage.put(bucket, self.storage.thumbnail_key(item.key), thumb, "image/webp")
        if self._split:
            pixels = self.embedder.preprocess([image])  # type: ignore[attr-defined]
            return Prepared(item, obj.info, width, height, None, pixels, started)
        return Prepared(item, obj.info, width, height, image, None, started)

    @staticmethod
    def _collect(job: WorkItem | KeyEvents, future: Future[Prepared | None], report: IngestReport) -> Prepared | None:
        try:
            return future.result()
        except TRANSIENT_ERRORS as exc:
            report.retry(job.bucket, job.key, job.action, exc)
        except Exception as exc:  # a bug or an unexpected storage answer: retry that object, keep the batch
            log.exception("unexpected error preparing s3://%s/%s", job.bucket, job.key)
            report.retry(job.bucket, job.key, job.action, exc)
        return None

    def _embed_batch(self, batch: list[Prepared], report: IngestReport) -> None:
        try:
            vectors = self._vectors(batch)
        except TRANSIENT_ERRORS as exc:
            for p in batch:
                report.retry(p.item.collection.bucket, p.item.key, p.item.action, exc)
            return
        for p, vector in zip(batch, vectors, strict=True):
            item, bucket = p.item, p.item.collection.bucket
            try:
                stored = self._store(p, vector)
            except TRANSIENT_ERRORS as exc:
                report.retry(bucket, item.key, item.action, exc)
                continue
            seconds = round(time.perf_counter() - p.started, 4)
            if stored:
                report.add(bucket, item.key, item.action, "embedded", seconds=seconds)
            else:
                report.add(bucket, item.key, item.action, "skipped", "row changed meanwhile (newer etag or deleted)",
                           seconds)

    def _store(self, p: Prepared, vector: np.ndarray) -> bool:
        """Write one vector for the row's current etag; False if the row moved on."""
        item = p.item
        return self.catalog.store_embedding(
            item.collection, item.key, item.etag, vector, model_id=self.embedder.model_id,
            width=p.width, height=p.height, size=p.info.size,
            content_type=p.info.content_type or content_type_for(item.key),
            last_modified=p.info.last_modified,
        )

    def _vectors(self, batch: list[Prepared]) -> np.ndarray:
        if self._split:
            raw = self.embedder.run_visual(np.concatenate([p.pixels for p in batch]))  # type: ignore[attr-defined]
            vectors = normalize_rows(raw)
            if vectors.shape != (len(batch), self.embedder.dim):
                raise RuntimeError(
                    f"{self.embedder.model_id} returned vectors of shape {vectors.shape}, expected "
                    f"({len(batch)}, {self.embedder.dim}): check the model directory"
                )
            return vectors
        return self.embedder.embed_images([p.image for p in batch])

    def _mark_failed(self, item: WorkItem, exc: BaseException, report: IngestReport) -> None:
        bucket, reason = item.collection.bucket, failure_reason(exc)
        try:
            self.catalog.mark_failed(
                item.collection, item.key, item.etag, reason, retry_after_seconds=retry_delay(item.attempts)
            )
        except TRANSIENT_ERRORS as db_exc:
            report.retry(bucket, item.key, item.action, db_exc)
            return
        report.add(bucket, item.key, item.action, "failed", reason)

    def _object_gone(self, item: WorkItem, report: IngestReport, missing: MissingPolicy) -> None:
        bucket = item.collection.bucket
        if missing == "skip":
            # Deleted after the event: its remove event tombstones the row.
            report.add(bucket, item.key, item.action, "missing", "object no longer in the bucket")
            return
        try:
            self.catalog.record_event(
                item.collection, ObjectEvent(bucket, item.key, "removed", event_time=datetime.now(UTC))
            )
            self.storage.delete(bucket, self.storage.thumbnail_key(item.key))
        except TRANSIENT_ERRORS as exc:
            report.retry(bucket, item.key, "removed", exc)
            return
        report.add(bucket, item.key, "removed", "removed", "object no longer in the bucket")


def default_ingestor() -> Ingestor:
    """The process-wide ingestor on `shared.runtime` resources (lazy: first call loads the model)."""
    global _ingestor
    if _ingestor is None:
        from shared import runtime
        from shared.config import get_settings

        _ingestor = Ingestor(get_settings(), runtime.catalog(), runtime.storage(), runtime.embedder())
    return _ingestor


_ingestor: Ingestor | None = None


def reset_default_ingestor() -> None:
    """Forget the process-wide ingestor (tests that change settings)."""
    global _ingestor
    _ingestor = None


def ingest_events(events: Iterable[ObjectEvent]) -> IngestReport:
    """Ingest events with the process-wide resources; raises IngestRetry if any object must be retried."""
    report = default_ingestor().process_events(list(events))
    if report.errors:
        raise IngestRetry(report.errors)
    return report


def log_outcomes(report: IngestReport, logger: Any) -> None:
    """One structured log line per object (Powertools Logger or stdlib)."""
    for o in report.outcomes:
        fields = {"bucket": o.bucket, "key": o.key, "action": o.action, "outcome": o.outcome,
                  "reason": o.reason, "seconds": o.seconds}
        if o.outcome in ("failed", "retry"):
            logger.warning("object %s", o.outcome, extra=fields)
        elif o.reason == THUMBNAIL_SKIP:
            logger.debug("object %s", o.outcome, extra=fields)  # the echo of our own write, every time
        else:
            logger.info("object %s", o.outcome, extra=fields)
