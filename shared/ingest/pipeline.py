"""Ingestion core: object events -> catalog rows with a vector, size, etag and a WebP thumbnail.

One `Ingestor` serves the embed function (events), the backfill sweep (claimed rows), the model move
and the CLI. Each collection is embedded by the model it records (`ModelTargets`); while it moves to another
model, new objects get the next model's vector too. Work flows as a small pipeline so the model is
never idle waiting for S3:

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

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from PIL import Image

from shared.config import Settings
from shared.embedders import Embedder, Models
from shared.events import ObjectEvent, key_problem
from shared.images import content_type_for, decode, is_image_key, thumbnail
from shared.ingest.exif import PhotoMetadata, read_metadata
from shared.ingest.tags import read_photo_tags
from shared.jobs import PERMANENT_ERRORS, TRANSIENT_ERRORS, failure_reason, retry_delay
from shared.places.lookup import place_of
from shared.search.duplicates import content_hash
from shared.storage import ObjectInfo, ObjectMissing, Storage, queue_client
from shared.store import queries
from shared.store.catalog import Catalog, CatalogError, Collection, ModelChanged
from shared.store.neighbours import StoredCopy, index_neighbours, stored_copy

log = logging.getLogger(__name__)
THUMBNAIL_SKIP = "thumbnail (our own write)"
CLAIMED_ELSEWHERE = "already embedded, or being embedded by another worker (its lease holds the row)"

DEFAULT_WORKERS = 4
RELEASE_PAUSES = (0.2, 0.5, 1.0, 2.0)  # seconds between tries to give claims back while the database recovers

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
    reused_from: str | None = None  # embedded without a model call: the vector of this key (same SHA-256)


@dataclass
class IngestReport:
    """What happened to each object; filled from the worker threads and the calling thread."""

    outcomes: list[ObjectOutcome] = field(default_factory=list)
    errors: dict[tuple[str, str], BaseException] = field(default_factory=dict)  # transient, by (bucket, key)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, bucket: str, key: str, action: str, outcome: Outcome, reason: str | None = None,
            seconds: float | None = None, reused_from: str | None = None) -> None:
        with self._lock:
            self.outcomes.append(ObjectOutcome(bucket, key, action, outcome, reason, seconds, reused_from))

    def retry(self, bucket: str, key: str, action: str, exc: BaseException) -> None:
        with self._lock:
            self.errors[(bucket, key)] = exc
        self.add(bucket, key, action, "retry", f"{type(exc).__name__}: {exc}")

    def keys(self, outcome: Outcome) -> list[str]:
        return [o.key for o in self.outcomes if o.outcome == outcome]

    def take_moved(self, bucket: str) -> list[str]:
        """The keys of `bucket` that failed only because its collection switched models meanwhile, forgotten
        here: the caller embeds them again at once with the collection's new model."""
        with self._lock:
            moved = [key for (b, key), exc in self.errors.items() if b == bucket and isinstance(exc, ModelChanged)]
            for key in moved:
                del self.errors[(bucket, key)]
            self.outcomes = [o for o in self.outcomes
                             if not (o.bucket == bucket and o.key in moved and o.outcome == "retry")]
        return moved

    def summary(self) -> dict[str, int]:
        counts = {name: 0 for name in ("embedded", "skipped", "failed", "removed", "missing", "retry")}
        for o in self.outcomes:
            counts[o.outcome] += 1
        counts["reused"] = sum(1 for o in self.outcomes if o.reused_from is not None)  # among the embedded
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

    collection: Collection
    key: str
    events: tuple[ObjectEvent, ...]

    @property
    def bucket(self) -> str:
        return self.collection.bucket

    @property
    def action(self) -> str:
        return self.events[-1].action


@dataclass(frozen=True)
class ModelTargets:
    """What the pipeline writes per object: the live model's vector (none during a model move's own
    pass), the next model's vector while a move runs, and the thumbnail."""

    live: Embedder | None
    next: Embedder | None = None
    thumbnails: bool = True

    @property
    def embedders(self) -> list[Embedder]:
        return [embedder for embedder in (self.live, self.next) if embedder is not None]


@dataclass
class Prepared:
    item: WorkItem
    info: ObjectInfo
    width: int
    height: int
    inputs: list[Any]  # one model input per embedder of the ModelTargets, made in the worker thread
    started: float
    sha256: str | None = None
    photo: PhotoMetadata | None = None
    copy: StoredCopy | None = None  # the same bytes already embedded under another key: no model call
    described: dict[str, Any] = field(default_factory=dict)  # place and embedded tags (their columns)


class Ingestor:
    """Embeds objects into the catalog; thread-safe to share, one per process is enough."""

    def __init__(self, settings: Settings, catalog: Catalog, storage: Storage, models: Models | Embedder,
                 *, workers: int | None = None, queues: Callable[[str], Any] | None = None):
        self.settings = settings
        # SQS clients by queue URL (the backfill's plan and the OCR hand-off send work messages)
        self.queues = queues or lru_cache(maxsize=8)(lambda url: queue_client(url, settings))
        self.catalog = catalog
        self.storage = storage
        self.models = models if isinstance(models, Models) else Models([models], settings)
        self.workers = workers or max(DEFAULT_WORKERS, settings.backfill_concurrency)

    @property
    def embedder(self) -> Embedder:
        """The default model: new collections get it."""
        return self.models.default

    # ---- events ---------------------------------------------------------------------------------

    def collection_for(self, bucket: str) -> Collection:
        """The bucket's collection as the registry has it now, created on first use with the default model."""
        return self.catalog.open_collection(bucket, self.embedder.model_id, self.embedder.dim, bucket=bucket)

    def writes_for(self, collection: Collection) -> ModelTargets:
        """The collection's own model; while it moves, the next one too if this deployment holds it."""
        live = self.models.get(collection.model_id, collection.name)
        following = self.models.find(collection.next_model_id) if collection.next_model_id else None
        return ModelTargets(live, following)

    def process_events(self, events: Sequence[ObjectEvent]) -> IngestReport:
        """Apply events (ordering and tombstones by the catalog), then embed what is new.

        Never raises for one object's transient failure: see `report.errors`.
        """
        report = IngestReport()
        by_bucket: dict[str, dict[str, list[ObjectEvent]]] = {}
        for event in events:
            problem = key_problem(event.key)
            if problem:  # no row can hold it and retrying cannot help: recorded here, the message acknowledged
                report.add(event.bucket, event.key, event.action, "failed", f"unstorable_key: the key {problem}")
            elif self.storage.is_thumbnail(event.key):
                report.add(event.bucket, event.key, event.action, "skipped", THUMBNAIL_SKIP)
            else:
                by_bucket.setdefault(event.bucket, {}).setdefault(event.key, []).append(event)
        for bucket, by_key in by_bucket.items():
            self._apply_and_embed(bucket, by_key, report)
        return report

    def _apply_and_embed(self, bucket: str, by_key: dict[str, list[ObjectEvent]], report: IngestReport, *,
                         again: bool = False) -> None:
        """One bucket's events of a batch; the objects a model switch caught mid-way once more, at once, with the
        collection's new model (else their message would wait out the queue's visibility timeout)."""
        try:  # once per batch: the registry says which model(s) this collection takes now
            collection = self.collection_for(bucket)
            writes = self.writes_for(collection)
        except TRANSIENT_ERRORS as exc:
            for key, key_events in by_key.items():
                report.retry(bucket, key, key_events[-1].action, exc)
            return
        except CatalogError as exc:  # a bucket name no collection can take (NUL, ...): permanent
            for key, key_events in by_key.items():
                report.add(bucket, key, key_events[-1].action, "failed", f"bad_collection: {exc}")
            return
        # Catalog updates run in the worker threads, so the model starts on the first images at once.
        jobs = [KeyEvents(collection, key, tuple(key_events)) for key, key_events in by_key.items()]
        self.embed_items(jobs, writes, report, missing="skip")
        self.release_failed(collection, report)
        moved = [] if again else report.take_moved(bucket)
        if moved:
            self._apply_and_embed(bucket, {key: by_key[key] for key in moved}, report, again=True)

    def process_work(self, collection_name: str, keys: Sequence[str]) -> IngestReport:
        """Embed the keys of a work message (shared/ingest/work.py) that still need a vector: exactly those
        this call claims, so a key queued twice or also sent by an event is embedded once. Never raises for
        one object's transient failure: see `report.errors` (their claims are given back)."""
        report = IngestReport()
        self._claim_and_embed(collection_name, keys, report)
        return report

    def _claim_and_embed(self, collection_name: str, keys: Sequence[str], report: IngestReport, *,
                         again: bool = False) -> None:
        """The keys this call claims; those a model switch caught mid-way once more, at once, with the
        collection's new model (as `_apply_and_embed` does for events)."""
        collection = self.catalog.get_collection(collection_name)
        writes = self.writes_for(collection)
        claimed = self.catalog.claim_keys(collection, keys, max_attempts=self.settings.max_attempts)
        for key in set(keys) - {key for key, _, _ in claimed}:
            report.add(collection.bucket, key, "queued", "skipped", CLAIMED_ELSEWHERE)
        items = [WorkItem(collection, key, etag, attempts, "queued") for key, etag, attempts in claimed]
        self.embed_items(items, writes, report, missing="remove")
        self.release_failed(collection, report)
        moved = [] if again else report.take_moved(collection.bucket)
        if moved:
            self._claim_and_embed(collection_name, moved, report, again=True)

    def release_failed(self, collection: Collection, report: IngestReport, *, retry_after_seconds: float = 0) -> None:
        """Give back the claims of objects that hit a transient failure, so their message's retry (which is
        the backoff) claims them again at once. The database may be the thing that failed, so this waits a
        little between tries; if it stays down, the lease (shorter than the queue's visibility timeout) runs
        out before the message comes back."""
        keys = [key for bucket, key in report.errors if bucket == collection.bucket]
        for pause in (*RELEASE_PAUSES, None):
            if not keys:
                return
            try:
                self.catalog.release_claims(collection, keys, retry_after_seconds=retry_after_seconds)
                return
            except TRANSIENT_ERRORS as exc:
                if pause is None:
                    log.warning("could not give back %d claim(s) of %s; their lease runs out instead: %s",
                                len(keys), collection.name, exc)
                    return
                time.sleep(pause)

    def _record(self, job: KeyEvents, report: IngestReport) -> WorkItem | None:
        """Apply one object's events; the row to embed, or None (the outcome is reported)."""
        collection, bucket, key, events, action = job.collection, job.bucket, job.key, job.events, job.action
        creates = any(event.action == "created" for event in events)
        if not is_image_key(key):
            # No image extension: only a HEAD's content type can make it one; removals of such keys
            # matter only if we hold a row for them.
            info = self.storage.head(bucket, key) if creates else None
            if not (info and is_image_key(key, info.content_type)) and (
                creates or queries.get_row(self.catalog, collection, key) is None
            ):
                report.add(bucket, key, action, "skipped", "not an image (extension and content type)")
                return None
        for event in events:
            self.catalog.record_event(collection, event)
        row = queries.get_row(self.catalog, collection, key)
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
        # The row's lease decides who embeds it: an event racing a work message (or a second delivery) for
        # the same key embeds it once.
        claimed = self.catalog.claim_keys(collection, [key], max_attempts=self.settings.max_attempts)
        if not claimed:
            report.add(bucket, key, action, "skipped", CLAIMED_ELSEWHERE)
            return None
        _, etag, attempts = claimed[0]
        return WorkItem(collection, key, etag, attempts, action)

    # ---- the pipeline ---------------------------------------------------------------------------

    def embed_items(self, items: Sequence[WorkItem | KeyEvents], writes: ModelTargets, report: IngestReport, *,
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
                embedding.append(model.submit(self._embed_batch, batch, writes, report))

            def refill() -> None:
                while len(queue) < window:
                    item = next(pending, None)
                    if item is None:
                        return
                    queue.append((item, pool.submit(self._prepare, item, writes, report, missing)))

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

    def _prepare(self, job: WorkItem | KeyEvents, writes: ModelTargets, report: IngestReport,
                 missing: MissingPolicy) -> Prepared | None:
        """Worker thread: everything per object that does not need the model. None: outcome reported.

        Permanent failures and vanished objects are handled here; transient errors propagate.
        """
        started = time.perf_counter()
        item = self._record(job, report) if isinstance(job, KeyEvents) else job
        if item is None:
            return None
        try:
            prepared = self._read_and_decode(item, writes, started, report)
            if prepared is None or prepared.copy is None:
                return prepared
            if self._finish(prepared, writes, prepared.copy.vectors, report):  # a copy: stored here, no model
                self._find_neighbours(item.collection, [item.key])
            return None
        except PERMANENT_ERRORS as exc:
            self._mark_failed(item, writes, exc, report)
        except ObjectMissing:
            self._object_gone(item, report, missing)
        return None

    def decode(self, data: bytes, writes: ModelTargets) -> Image.Image:
        """Decode for embedding and the thumbnail: big JPEGs at a reduced scale that still covers both."""
        return decode(
            data,
            max_pixels=self.settings.max_image_pixels,
            max_bytes=self.settings.max_image_bytes,
            min_side=max(embedder.input_side for embedder in writes.embedders),
            min_long_side=self.settings.thumbnail_size if writes.thumbnails else None,
        )

    def _read_and_decode(self, item: WorkItem, writes: ModelTargets, started: float,
                         report: IngestReport) -> Prepared | None:
        bucket = item.bucket
        obj = self.storage.read(bucket, item.key, self.settings.max_image_bytes)
        if item.etag and obj.info.etag and obj.info.etag != item.etag:
            # Replaced since the event: the newer event (or the sweep) embeds the new content.
            report.add(bucket, item.key, item.action, "skipped", "object replaced since the event (etag differs)")
            return None
        image = self.decode(obj.data, writes)
        # The header's size and EXIF (the decoder may have used JPEG draft mode, so the decoded image can
        # be smaller than the original); broken EXIF only leaves fields empty.
        photo = read_metadata(obj.data)
        described = {**read_photo_tags(obj.data).columns(), **place_of(photo.latitude, photo.longitude)}
        width, height = (photo.width, photo.height) if photo.width and photo.height else image.size
        if writes.thumbnails:
            thumb = thumbnail(image, self.settings.thumbnail_size)
            self.storage.put(bucket, self.storage.thumbnail_key(item.key), thumb, "image/webp")
        sha256 = content_hash(obj.data)
        copy = (stored_copy(self.catalog, item.collection, sha256, item.key, with_next=writes.next is not None)
                if writes.live else None)  # a model move's own pass embeds every row
        inputs = [] if copy else [embedder.prepare_image(image) for embedder in writes.embedders]
        return Prepared(item, obj.info, width, height, inputs, started, sha256, photo, copy, described)

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

    def _embed_batch(self, batch: list[Prepared], writes: ModelTargets, report: IngestReport) -> None:
        try:
            vectors = [self._vectors(embedder, [p.inputs[i] for p in batch])
                       for i, embedder in enumerate(writes.embedders)]
        except TRANSIENT_ERRORS as exc:
            for p in batch:
                report.retry(p.item.bucket, p.item.key, p.item.action, exc)
            return
        stored = [p.item.key for row, p in enumerate(batch)
                  if self._finish(p, writes, [v[row] for v in vectors], report)]
        if writes.live is not None:  # a model move's own pass leaves the live vectors as they are
            self._find_neighbours(batch[0].item.collection, stored)

    def _find_neighbours(self, collection: Collection, keys: list[str]) -> None:
        """The new images' nearest neighbours, for duplicate groups (shared/search/duplicates.py). Optional here:
        if it fails, the sweep or the next duplicates request finds them."""
        if not keys:
            return
        try:
            index_neighbours(self.catalog, collection, keys=keys)
        except Exception as exc:  # never fails an image that is stored already
            log.warning("finding neighbours of %d new image(s) in %s failed (done later): %s",
                        len(keys), collection.name, exc)

    def _finish(self, p: Prepared, writes: ModelTargets, vectors: list[np.ndarray], report: IngestReport) -> bool:
        """Store one object's vectors and report the outcome; whether they were stored."""
        item = p.item
        try:
            stored = self._store(p, writes, vectors)
        except TRANSIENT_ERRORS as exc:
            report.retry(item.bucket, item.key, item.action, exc)
            return False
        seconds = round(time.perf_counter() - p.started, 4)
        if stored:
            report.add(item.bucket, item.key, item.action, "embedded", seconds=seconds,
                       reused_from=p.copy.key if p.copy else None)
        else:
            report.add(item.bucket, item.key, item.action, "skipped",
                       "row changed meanwhile (newer etag or deleted)", seconds)
        return stored

    def _store(self, p: Prepared, writes: ModelTargets, vectors: list[np.ndarray]) -> bool:
        """Write the vectors for the row's current etag; False if the row moved on."""
        item = p.item
        if writes.live is None:  # a model move's own pass: only the next model's vector
            assert writes.next is not None
            return self.catalog.store_next_embedding(item.collection, item.key, item.etag, vectors[0],
                                                     model_id=writes.next.model_id)
        return self.catalog.store_embedding(
            item.collection, item.key, item.etag, vectors[0], model_id=writes.live.model_id,
            next_vector=vectors[1] if writes.next else None,
            next_model_id=writes.next.model_id if writes.next else None,
            width=p.width, height=p.height, size=p.info.size,
            content_type=p.info.content_type or content_type_for(item.key),
            last_modified=p.info.last_modified, sha256=p.sha256,
            photo={**p.photo.columns(), **p.described} if p.photo else None,
        )

    @staticmethod
    def _vectors(embedder: Embedder, inputs: list[Any]) -> np.ndarray:
        vectors = embedder.embed_prepared(inputs)
        if vectors.shape != (len(inputs), embedder.dim):
            raise RuntimeError(
                f"{embedder.model_id} returned vectors of shape {vectors.shape}, expected "
                f"({len(inputs)}, {embedder.dim}): check the model directory"
            )
        return vectors

    def _mark_failed(self, item: WorkItem, writes: ModelTargets, exc: BaseException, report: IngestReport) -> None:
        bucket, reason = item.bucket, failure_reason(exc)
        if writes.live is None:
            # A model move's pass: the live row keeps its old vector; it goes pending at the switch.
            report.add(bucket, item.key, item.action, "failed", reason)
            return
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


def log_outcomes(report: IngestReport, logger: Any) -> None:
    """One structured log line per object (Powertools Logger or stdlib)."""
    for o in report.outcomes:
        fields = {"bucket": o.bucket, "key": o.key, "action": o.action, "outcome": o.outcome,
                  "reason": o.reason, "seconds": o.seconds, "reused_from": o.reused_from}
        if o.outcome in ("failed", "retry"):
            logger.warning("object %s", o.outcome, extra=fields)
        elif o.reason == THUMBNAIL_SKIP:
            logger.debug("object %s", o.outcome, extra=fields)  # the echo of our own write, every time
        else:
            logger.info("object %s", o.outcome, extra=fields)
