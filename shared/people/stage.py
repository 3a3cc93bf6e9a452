"""The faces stage: finds the faces in embedded pictures and groups them into people, after embedding and
apart from it, as the OCR stage reads words (shared/ocr/stage.py).

A picture is searchable as soon as it is embedded; this stage never delays that, and its failures never
touch the row's vector or status. Claims, rounds, failures and retries are every picture stage's
(shared/picture_stage.py); this stage gives each claimed picture to `shared.people.faces.FaceFinder` and
stores its faces with the etag they were found in (shared/store/faces.py), replacing any found before. After
each batch the new faces are grouped incrementally (shared/people/grouping.py through `faces.group_faces`):
they join the nearest person within MAX_DISTANCE, start one when three are close, or wait.

It runs as `functions/faces.py` in Lambda, a consumer of the faces queue the embed function (and the backfill's
plan) send work messages to (`read_keys`); `make dev` polls that queue the same way; and
`image-browser faces --collection NAME` finds whatever waits (`run`). IB_FACES=false turns it off.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import ClassVar

from PIL import Image

from shared.config import Settings
from shared.jobs import TRANSIENT_ERRORS
from shared.people.faces import DESCRIBE_SIDE, FaceFinder, FacesUnavailable
from shared.picture_stage import PictureStage, StageSummary
from shared.storage import Storage
from shared.store import faces as store
from shared.store import stage_rows
from shared.store.catalog import Catalog, Collection
from shared.store.stage_rows import WaitingRow

log = logging.getLogger(__name__)


@dataclass
class FacesSummary(StageSummary):
    FOUND: ClassVar[str] = "with_faces"
    with_faces: int = 0  # pictures read that had at least one face
    faces: int = 0  # faces stored
    grouped: int = 0  # faces given a person (new ones, and waiting ones near them)
    new_people: int = 0


@dataclass
class FacesBatch:
    """What the pictures of one batch leave for grouping."""
    faces: list[int] = field(default_factory=list)
    lost: set[int] = field(default_factory=set)  # people whose faces were replaced
    lock: threading.Lock = field(default_factory=threading.Lock)


class FacesStage(PictureStage[FacesSummary]):
    """Finds and groups the faces of a collection's embedded pictures; one per process is enough."""

    name = "faces"
    columns = stage_rows.FACES
    read_side = DESCRIBE_SIDE
    unavailable = FacesUnavailable
    summary_type = FacesSummary

    def __init__(self, settings: Settings, catalog: Catalog, storage: Storage, finder: FaceFinder):
        super().__init__(settings, catalog, storage)
        self.finder = finder  # its models are loaded per thread: the stage's pool keeps its threads

    def new_batch(self) -> FacesBatch:
        return FacesBatch()

    def read_picture(self, collection: Collection, row: WaitingRow, image: Image.Image,
                     batch: FacesBatch) -> bool | None:
        found = [store.StoredFace(face.box, face.score, face.descriptor) for face in self.finder.find(image)]
        stored = store.store_faces(self.catalog, collection, row.image_id, row.key, row.etag, found)
        if stored is None:
            return None
        with batch.lock:
            batch.faces += stored[0]
            batch.lost |= stored[1]
        return bool(found)

    def finish_batch(self, collection: Collection, batch: FacesBatch, summary: FacesSummary) -> None:
        """Group the batch's new faces (one transaction)."""
        summary.faces += len(batch.faces)
        try:
            grouped = store.group_faces(self.catalog, collection, batch.faces, lost=batch.lost)
        except TRANSIENT_ERRORS as exc:  # the faces are stored and wait: the next batch near them groups them
            log.warning("grouping %d face(s) of %s failed: %s", len(batch.faces), collection.name, exc)
            return
        summary.grouped += grouped.assigned
        summary.new_people += grouped.new_people
