"""The OCR stage: reads the words in embedded pictures, after embedding and apart from it.

A picture is searchable by its look as soon as it is embedded, and by its words once this stage has read
it: the embed function never waits for OCR, and an OCR failure never touches the row's vector or status.

The stage claims rows in rounds (`tables.OCR_WAITING`: embedded, and not read for their current etag) with
FOR UPDATE SKIP LOCKED and a lease, as the backfill sweep does (shared/store/leases.py), so runs at the same
time split the work; its SQL is shared/store/ocr_text.py.
Each picture is read from the bucket, decoded at a reduced scale and read by `shared.ocr.reader.TextReader`; the
text is stored with the etag it was read from, so a picture replaced meanwhile keeps waiting for its own.
A failure is recorded on the row (attempts, the reason) and retried with the embed stage's backoff until
IB_MAX_ATTEMPTS, then given up (`ocr_state = 'failed'`); database and storage outages give the row back
without counting an attempt.

It runs as `functions/ocr.py` in Lambda, a consumer of the OCR queue the embed function (and the backfill's
catch-up) sends work messages to (`read_keys`); `make dev` polls that queue the same way; and
`image-browser ocr --collection NAME` reads whatever waits (`run`).
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
from shared.ocr.reader import READ_SIDE, OcrUnavailable, TextReader, text_of
from shared.storage import ObjectMissing, Storage
from shared.store import queries
from shared.store.catalog import Catalog, Collection
from shared.store.ocr_text import claim_waiting, mark_failed, release, store_text

log = logging.getLogger(__name__)

TRANSIENT_RETRY_SECONDS = 60.0  # a row that met a database or storage outage waits this long
ROWS_PER_CALL = 8  # rows claimed per round for each picture read at once
# OCR threads run at a lower CPU priority: where they share cores with embedding (`make dev`), a picture
# is embedded first and read after. Lambda runs the stage in a function of its own, where it changes nothing.
OCR_NICENESS = 10

Outcome = Literal["read", "empty", "failed", "skipped", "retry"]


@dataclass
class OcrSummary:
    collection: str
    read: int = 0  # pictures whose text was stored
    with_text: int = 0  # ... of which had words above the confidence floor
    failed: int = 0
    skipped: int = 0  # replaced or removed since the claim
    retry: int = 0  # database or storage outages: claimable again after a short wait
    remaining: int = 0
    stopped_early: bool = False
    disabled: bool = False  # IB_OCR=false
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def add(self, outcome: Outcome) -> None:
        if outcome in ("read", "empty"):
            self.read += 1
            self.with_text += outcome == "read"
        else:
            setattr(self, outcome, getattr(self, outcome) + 1)


# ---- the stage -----------------------------------------------------------------------------------------


def _yield_to_embedding() -> None:
    if hasattr(os, "setpriority"):  # Linux: the nice value is per thread
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), OCR_NICENESS)


class OcrStage:
    """Reads the words of a collection's embedded pictures; one per process is enough (thread-safe)."""

    def __init__(self, settings: Settings, catalog: Catalog, storage: Storage, reader: TextReader):
        self.settings, self.catalog, self.storage, self.reader = settings, catalog, storage, reader

    def run(self, collection_name: str, *, deadline: Deadline | None = None, max_rounds: int = 100_000) -> OcrSummary:
        """Claim and read rows in rounds until none wait or the deadline nears. UnknownCollection if the
        collection does not exist; OcrUnavailable if the models cannot load (no attempt is counted)."""
        started = time.monotonic()
        summary = OcrSummary(collection_name, disabled=not self.settings.ocr)
        if summary.disabled:
            return summary
        collection = self.catalog.get_collection(collection_name)
        calls, last_round = self.settings.ocr_calls, 0.0
        with ThreadPoolExecutor(calls, thread_name_prefix="ocr", initializer=_yield_to_embedding) as pool:
            for _ in range(max_rounds):
                if deadline is not None and not deadline.room_for(last_round):
                    summary.stopped_early = True  # no room for one more round like the last
                    break
                round_started = time.monotonic()
                claimed = claim_waiting(self.catalog, collection, calls * ROWS_PER_CALL)
                if not claimed:
                    break
                outcomes = list(pool.map(lambda row: self.read_row(collection, *row, errors=summary.errors),
                                         claimed))
                for outcome in outcomes:
                    summary.add(outcome)
                last_round = time.monotonic() - round_started
                if outcomes.count("retry") == len(outcomes):
                    break  # the database or the bucket is down: the next run tries again
        summary.remaining = queries.count_ocr_waiting(self.catalog, collection)
        summary.seconds = round(time.monotonic() - started, 3)
        log.info("ocr %s: %s", collection.name, summary.as_dict())
        return summary

    def read_keys(self, collection_name: str, keys: Sequence[str]) -> OcrSummary:
        """Read the pictures of an OCR work message: those of `keys` still waiting that this call claims.
        UnknownCollection if the collection does not exist; OcrUnavailable if the models cannot load."""
        started = time.monotonic()
        summary = OcrSummary(collection_name, disabled=not self.settings.ocr)
        if summary.disabled or not keys:
            return summary
        collection = self.catalog.get_collection(collection_name)
        claimed = claim_waiting(self.catalog, collection, len(keys), keys=keys)
        summary.skipped += len(set(keys)) - len(claimed)  # read already, replaced, or read by another worker
        with ThreadPoolExecutor(self.settings.ocr_calls, thread_name_prefix="ocr",
                                initializer=_yield_to_embedding) as pool:
            for outcome in pool.map(lambda row: self.read_row(collection, *row, errors=summary.errors), claimed):
                summary.add(outcome)
        summary.seconds = round(time.monotonic() - started, 3)
        return summary

    def read_row(self, collection: Collection, key: str, etag: str | None, attempts: int, *,
                 errors: list[str] | None = None) -> Outcome:
        """Read one claimed picture and store its text. Never raises for the picture's own problems."""
        try:
            obj = self.storage.read(collection.bucket, key, self.settings.max_image_bytes)
            if etag and obj.info.etag and obj.info.etag != etag:
                return "skipped"  # replaced: the new content is embedded, then read, in its turn
            image = decode(obj.data, max_pixels=self.settings.max_image_pixels,
                           max_bytes=self.settings.max_image_bytes, min_side=1, min_long_side=READ_SIDE)
            text = text_of(self.reader.read(image))
            if not store_text(self.catalog, collection, key, etag, text):
                return "skipped"
            return "read" if text else "empty"
        except ObjectMissing:
            return "skipped"  # deleted: its remove event (or the sweep) tombstones the row
        except OcrUnavailable:
            raise  # the deployment's fault, not the picture's: count no attempt
        except TRANSIENT_ERRORS as exc:
            self._note(errors, key, exc)
            with contextlib.suppress(*TRANSIENT_ERRORS):  # else the lease runs out by itself
                release(self.catalog, collection, key, retry_after_seconds=TRANSIENT_RETRY_SECONDS)
            return "retry"
        except Exception as exc:  # a damaged file, an OCR runtime error: recorded, retried with backoff
            self._note(errors, key, exc)
            try:
                mark_failed(self.catalog, collection, key, etag, failure_reason(exc),
                            max_attempts=self.settings.max_attempts, retry_after_seconds=retry_delay(attempts))
            except TRANSIENT_ERRORS:
                return "retry"
            return "failed"

    @staticmethod
    def _note(errors: list[str] | None, key: str, exc: BaseException) -> None:
        log.warning("ocr of %s failed: %s: %s", key, type(exc).__name__, exc)
        if errors is not None and len(errors) < 5:
            errors.append(f"{key}: {exc}")
