"""The faces stage: finds the faces in embedded pictures and groups them into people, after embedding and
apart from it, as the OCR stage reads words (shared/ocr/stage.py).

A picture is searchable as soon as it is embedded; this stage never delays that, and its failures never
touch the row's vector or status. Rows are claimed (`tables.FACES_WAITING`) with the one lease claim, so
runs at the same time split the work. Each picture is read from the bucket, decoded at a reduced scale and
given to `shared.people.faces.FaceFinder`; its faces are stored with the etag they were found in
(shared/store/faces.py), replacing any found before. After each batch the new faces are grouped
incrementally (shared/people/grouping.py through `faces.group_faces`): they join the nearest person within
MAX_DISTANCE, start one when three are close, or wait.

It runs as `functions/faces.py` in Lambda, a consumer of the faces queue the embed function (and the backfill's
plan) send work messages to (`read_keys`); `make dev` polls that queue the same way; and
`image-browser faces --collection NAME` finds whatever waits (`run`). IB_FACES=false turns it off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from shared.config import Settings
from shared.images import decode
from shared.jobs import TRANSIENT_ERRORS, Deadline, failure_reason, retry_delay
from shared.people.faces import DESCRIBE_SIDE, FaceFinder, FacesUnavailable
from shared.storage import ObjectMissing, Storage
from shared.store import faces as store
from shared.store.catalog import Catalog, Collection

log = logging.getLogger(__name__)

TRANSIENT_RETRY_SECONDS = 60.0  # a row that met a database or storage outage waits this long
ROWS_PER_CALL = 8  # rows claimed per round for each picture read at once
FACES_NICENESS = 10  # below embedding where they share cores (`make dev`), as OCR

Outcome = Literal["found", "none", "failed", "skipped", "retry"]


@dataclass
class FacesSummary:
    collection: str
    read: int = 0  # pictures whose faces were stored
    with_faces: int = 0  # ... of which had at least one
    faces: int = 0  # faces stored
    grouped: int = 0  # faces given a person (new ones, and waiting ones near them)
    new_people: int = 0
    failed: int = 0
    skipped: int = 0  # replaced or removed since the claim, or read by another worker
    retry: int = 0  # database or storage outages: claimable again after a short wait
    remaining: int = 0
    stopped_early: bool = False
    disabled: bool = False  # IB_FACES=false
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class _Batch:
    """What the pictures of one batch left for grouping."""
    faces: list[int] = field(default_factory=list)
    lost: set[int] = field(default_factory=set)  # people whose faces were replaced
    lock: threading.Lock = field(default_factory=threading.Lock)


def _yield_to_embedding() -> None:
    if hasattr(os, "setpriority"):  # Linux: the nice value is per thread
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), FACES_NICENESS)


class FacesStage:
    """Finds and groups the faces of a collection's embedded pictures; one per process is enough."""

    def __init__(self, settings: Settings, catalog: Catalog, storage: Storage, finder: FaceFinder):
        self.settings, self.catalog, self.storage, self.finder = settings, catalog, storage, finder
        # One pool for the stage's life: the finder's models are loaded per thread, so its threads are kept.
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.settings.faces_calls, thread_name_prefix="faces",
                                                initializer=_yield_to_embedding)
            return self._pool

    def run(self, collection_name: str, *, deadline: Deadline | None = None, max_rounds: int = 100_000) -> FacesSummary:
        """Claim, find and group in rounds until none wait or the deadline nears. UnknownCollection if the
        collection does not exist; FacesUnavailable if the models cannot load (no attempt is counted)."""
        started = time.monotonic()
        summary = FacesSummary(collection_name, disabled=not self.settings.faces)
        if summary.disabled:
            return summary
        collection = self.catalog.get_collection(collection_name)
        calls, last_round = self.settings.faces_calls, 0.0
        for _ in range(max_rounds):
            if deadline is not None and not deadline.room_for(last_round):
                summary.stopped_early = True
                break
            round_started = time.monotonic()
            claimed = store.claim_waiting(self.catalog, collection, calls * ROWS_PER_CALL)
            if not claimed:
                break
            outcomes = self._find(collection, claimed, summary)
            last_round = time.monotonic() - round_started
            if outcomes.count("retry") == len(outcomes):
                break  # the database or the bucket is down: the next run tries again
        summary.remaining = store.count_waiting(self.catalog, collection)
        summary.seconds = round(time.monotonic() - started, 3)
        log.info("faces %s: %s", collection.name, summary.as_dict())
        return summary

    def read_keys(self, collection_name: str, keys: Sequence[str]) -> FacesSummary:
        """The pictures of a faces work message: those of `keys` still waiting that this call claims."""
        started = time.monotonic()
        summary = FacesSummary(collection_name, disabled=not self.settings.faces)
        if summary.disabled or not keys:
            return summary
        collection = self.catalog.get_collection(collection_name)
        claimed = store.claim_waiting(self.catalog, collection, len(keys), keys=keys)
        summary.skipped += len(set(keys)) - len(claimed)
        self._find(collection, claimed, summary)
        summary.seconds = round(time.monotonic() - started, 3)
        return summary

    def _find(self, collection: Collection, claimed: list[tuple[int, str, str | None, int]],
              summary: FacesSummary) -> list[Outcome]:
        """Find the faces of the claimed rows side by side, then group the new ones (one transaction)."""
        batch = _Batch()
        outcomes = list(self.pool().map(lambda row: self.find_row(collection, *row, batch=batch,
                                                                  errors=summary.errors), claimed))
        for outcome in outcomes:
            if outcome in ("found", "none"):
                summary.read += 1
                summary.with_faces += outcome == "found"
            else:
                setattr(summary, outcome, getattr(summary, outcome) + 1)
        summary.faces += len(batch.faces)
        try:
            grouped = store.group_faces(self.catalog, collection, batch.faces, lost=batch.lost)
        except TRANSIENT_ERRORS as exc:  # the faces are stored and wait: the next batch near them groups them
            log.warning("grouping %d face(s) of %s failed: %s", len(batch.faces), collection.name, exc)
            return outcomes
        summary.grouped += grouped.assigned
        summary.new_people += grouped.new_people
        return outcomes

    def find_row(self, collection: Collection, image_id: int, key: str, etag: str | None, attempts: int, *,
                 batch: _Batch, errors: list[str] | None = None) -> Outcome:
        """Find one claimed picture's faces and store them. Never raises for the picture's own problems."""
        try:
            obj = self.storage.read(collection.bucket, key, self.settings.max_image_bytes)
            if etag and obj.info.etag and obj.info.etag != etag:
                return "skipped"  # replaced: the new content is embedded, then read, in its turn
            image = decode(obj.data, max_pixels=self.settings.max_image_pixels,
                           max_bytes=self.settings.max_image_bytes, min_side=1, min_long_side=DESCRIBE_SIDE)
            found = [store.StoredFace(face.box, face.score, face.descriptor) for face in self.finder.find(image)]
            stored = store.store_faces(self.catalog, collection, image_id, key, etag, found)
            if stored is None:
                return "skipped"
            with batch.lock:
                batch.faces += stored[0]
                batch.lost |= stored[1]
            return "found" if found else "none"
        except ObjectMissing:
            return "skipped"  # deleted: its remove event (or the plan) tombstones the row
        except FacesUnavailable:
            raise  # the deployment's fault, not the picture's: count no attempt
        except TRANSIENT_ERRORS as exc:
            self._note(errors, key, exc)
            with contextlib.suppress(*TRANSIENT_ERRORS):  # else the lease runs out by itself
                store.release(self.catalog, collection, key, retry_after_seconds=TRANSIENT_RETRY_SECONDS)
            return "retry"
        except Exception as exc:  # a damaged file, a model runtime error: recorded, retried with backoff
            self._note(errors, key, exc)
            try:
                store.mark_failed(self.catalog, collection, key, etag, failure_reason(exc),
                                  max_attempts=self.settings.max_attempts, retry_after_seconds=retry_delay(attempts))
            except TRANSIENT_ERRORS:
                return "retry"
            return "failed"

    @staticmethod
    def _note(errors: list[str] | None, key: str, exc: BaseException) -> None:
        log.warning("faces of %s failed: %s: %s", key, type(exc).__name__, exc)
        if errors is not None and len(errors) < 5:
            errors.append(f"{key}: {exc}")
