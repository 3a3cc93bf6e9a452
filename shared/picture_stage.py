"""What the picture stages share (shared/ocr/stage.py reads words, shared/people/stage.py finds faces): each
reads embedded pictures after embedding and apart from it, so a picture is searchable by its look at once and a
stage's failure never touches the row's vector or status.

A stage claims rows (shared/store/stage_rows.py: a lease per row, so runs at the same time split the work),
reads each picture from the bucket, decodes it at a reduced scale and gives it to the subclass's
`read_picture`, which stores its results with the etag they came from: a picture replaced meanwhile waits for
its own reading. A failure is recorded on the row (attempts, the reason) and retried with the embed stage's
backoff until IB_MAX_ATTEMPTS, then given up; database and storage outages give the row back without counting
an attempt.

Each stage runs in Lambda as a consumer of its own queue (functions/stage_consumer.py: `read_keys` for a work
message, `run` for whatever waits); `make dev` polls the queues the same way, and the CLI calls `run`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Generic, Literal, TypeVar

from PIL import Image

from shared.config import Settings
from shared.images import decode
from shared.jobs import TRANSIENT_ERRORS, Deadline, failure_reason, retry_delay
from shared.storage import ObjectMissing, Storage
from shared.store import stage_rows
from shared.store.catalog import Catalog, Collection
from shared.store.stage_rows import StageColumns, WaitingRow

log = logging.getLogger(__name__)

TRANSIENT_RETRY_SECONDS = 60.0  # a row that met a database or storage outage waits this long
ROWS_PER_CALL = 8  # rows claimed per round for each picture read at once
# Stage threads run at a lower CPU priority: where they share cores with embedding (`make dev`), a picture is
# embedded first and read after. Lambda runs each stage in a function of its own, where it changes nothing.
NICENESS = 10

Outcome = Literal["found", "none", "failed", "skipped", "retry"]


@dataclass
class StageSummary:
    """One call's counts. A subclass adds its own, and names in FOUND the one counting pictures with results."""

    FOUND: ClassVar[str]
    collection: str
    read: int = 0  # pictures whose results were stored
    failed: int = 0
    skipped: int = 0  # replaced or removed since the claim, or read by another worker
    retry: int = 0  # database or storage outages: claimable again after a short wait
    remaining: int = 0
    stopped_early: bool = False
    disabled: bool = False  # the stage is turned off (IB_OCR, IB_FACES)
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def count(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            if outcome in ("found", "none"):
                self.read += 1
                setattr(self, self.FOUND, getattr(self, self.FOUND) + (outcome == "found"))
            else:
                setattr(self, outcome, getattr(self, outcome) + 1)


SummaryT = TypeVar("SummaryT", bound=StageSummary)


def _yield_to_embedding() -> None:
    if hasattr(os, "setpriority"):  # Linux: the nice value is per thread
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)


class PictureStage(ABC, Generic[SummaryT]):
    """Claims and reads a collection's embedded pictures; one per process is enough (thread-safe)."""

    name: ClassVar[str]  # "ocr", "faces": thread names, logs and the names of its settings
    columns: ClassVar[StageColumns]
    read_side: ClassVar[int]  # pictures are decoded with at least this long side
    unavailable: ClassVar[type[Exception]]  # the models cannot load: the deployment's fault, no attempt counted
    summary_type: ClassVar[type[StageSummary]]

    def __init__(self, settings: Settings, catalog: Catalog, storage: Storage):
        self.settings, self.catalog, self.storage = settings, catalog, storage
        # One pool for the stage's life: models may be loaded per thread, so its threads are kept.
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """The stage's switch in the settings (IB_OCR, IB_FACES): its name."""
        return bool(getattr(self.settings, self.name))

    @property
    def calls(self) -> int:
        """Pictures read at once (IB_OCR_PARALLEL, IB_FACES_PARALLEL: `<name>_calls`)."""
        return int(getattr(self.settings, f"{self.name}_calls"))

    @abstractmethod
    def read_picture(self, collection: Collection, row: WaitingRow, image: Image.Image, batch: Any) -> bool | None:
        """Read one decoded picture and store what it holds: True if something was found, False if nothing,
        None if the row was replaced or removed since the claim (nothing stored)."""

    def new_batch(self) -> Any:
        """What the pictures of one batch share (None unless the stage needs it)."""
        return None

    def finish_batch(self, collection: Collection, batch: Any, summary: SummaryT) -> None:
        """After a batch's pictures are read (the faces stage groups its new faces here)."""

    def pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.calls, thread_name_prefix=self.name,
                                                initializer=_yield_to_embedding)
            return self._pool

    def run(self, collection_name: str, *, deadline: Deadline | None = None, max_rounds: int = 100_000) -> SummaryT:
        """Claim and read rows in rounds until none wait or the deadline nears. UnknownCollection if the
        collection does not exist; `unavailable` if the models cannot load (no attempt is counted)."""
        started = time.monotonic()
        summary: SummaryT = self.summary_type(collection_name, disabled=not self.enabled)  # type: ignore[assignment]
        if summary.disabled:
            return summary
        collection = self.catalog.get_collection(collection_name)
        last_round = 0.0
        for _ in range(max_rounds):
            if deadline is not None and not deadline.room_for(last_round):
                summary.stopped_early = True  # no room for one more round like the last
                break
            round_started = time.monotonic()
            claimed = stage_rows.claim_waiting(self.catalog, collection, self.columns, self.calls * ROWS_PER_CALL)
            if not claimed:
                break
            outcomes = self._read(collection, claimed, summary)
            last_round = time.monotonic() - round_started
            if outcomes.count("retry") == len(outcomes):
                break  # the database or the bucket is down: the next run tries again
        summary.remaining = stage_rows.count_waiting(self.catalog, collection, self.columns)
        summary.seconds = round(time.monotonic() - started, 3)
        log.info("%s %s: %s", self.name, collection.name, summary.as_dict())
        return summary

    def read_keys(self, collection_name: str, keys: Sequence[str]) -> SummaryT:
        """The pictures of a work message: those of `keys` still waiting that this call claims.
        UnknownCollection if the collection does not exist; `unavailable` if the models cannot load."""
        started = time.monotonic()
        summary: SummaryT = self.summary_type(collection_name, disabled=not self.enabled)  # type: ignore[assignment]
        if summary.disabled or not keys:
            return summary
        collection = self.catalog.get_collection(collection_name)
        claimed = stage_rows.claim_waiting(self.catalog, collection, self.columns, len(keys), keys=keys)
        summary.skipped += len(set(keys)) - len(claimed)  # read already, replaced, or read by another worker
        self._read(collection, claimed, summary)
        summary.seconds = round(time.monotonic() - started, 3)
        return summary

    def _read(self, collection: Collection, claimed: list[WaitingRow], summary: SummaryT) -> list[Outcome]:
        """Read the claimed rows side by side, then finish the batch."""
        batch = self.new_batch()
        outcomes = list(self.pool().map(lambda row: self.read_row(collection, row, batch, summary.errors), claimed))
        summary.count(outcomes)
        self.finish_batch(collection, batch, summary)
        return outcomes

    def read_row(self, collection: Collection, row: WaitingRow, batch: Any = None,
                 errors: list[str] | None = None) -> Outcome:
        """Read one claimed picture and store its results. Never raises for the picture's own problems."""
        try:
            obj = self.storage.read(collection.bucket, row.key, self.settings.max_image_bytes)
            if row.etag and obj.info.etag and obj.info.etag != row.etag:
                return "skipped"  # replaced: the new content is embedded, then read, in its turn
            image = decode(obj.data, max_pixels=self.settings.max_image_pixels,
                           max_bytes=self.settings.max_image_bytes, min_side=1, min_long_side=self.read_side)
            found = self.read_picture(collection, row, image, batch)
            if found is None:
                return "skipped"
            return "found" if found else "none"
        except ObjectMissing:
            return "skipped"  # deleted: its remove event (or the backfill's plan) tombstones the row
        except self.unavailable:
            raise
        except TRANSIENT_ERRORS as exc:
            self._note(errors, row.key, exc)
            with contextlib.suppress(*TRANSIENT_ERRORS):  # else the lease runs out by itself
                stage_rows.release(self.catalog, collection, self.columns, row.key,
                                   retry_after_seconds=TRANSIENT_RETRY_SECONDS)
            return "retry"
        except Exception as exc:  # a damaged file, a model runtime error: recorded, retried with backoff
            self._note(errors, row.key, exc)
            try:
                stage_rows.mark_failed(self.catalog, collection, self.columns, row, failure_reason(exc),
                                       max_attempts=self.settings.max_attempts,
                                       retry_after_seconds=retry_delay(row.attempts))
            except TRANSIENT_ERRORS:
                return "retry"
            return "failed"

    def _note(self, errors: list[str] | None, key: str, exc: BaseException) -> None:
        log.warning("%s of %s failed: %s: %s", self.name, key, type(exc).__name__, exc)
        if errors is not None and len(errors) < 5:
            errors.append(f"{key}: {exc}")
