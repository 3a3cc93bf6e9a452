"""The OCR stage: reads the words in embedded pictures, after embedding and apart from it.

A picture is searchable by its look as soon as it is embedded, and by its words once this stage has read
it: the embed function never waits for OCR. Claims, rounds, failures and retries are every picture stage's
(shared/picture_stage.py); this stage reads each claimed picture with `shared.ocr.reader.TextReader` and
stores the text with the etag it was read from (shared/store/ocr_text.py).

It runs as `functions/ocr.py` in Lambda, a consumer of the OCR queue the embed function (and the backfill's
catch-up) sends work messages to (`read_keys`); `make dev` polls that queue the same way; and
`image-browser ocr --collection NAME` reads whatever waits (`run`). IB_OCR=false turns it off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from PIL import Image

from shared.config import Settings
from shared.ocr.reader import READ_SIDE, OcrUnavailable, TextReader, text_of
from shared.picture_stage import PictureStage, StageSummary
from shared.storage import Storage
from shared.store import stage_rows
from shared.store.catalog import Catalog, Collection
from shared.store.ocr_text import store_text
from shared.store.stage_rows import WaitingRow


@dataclass
class OcrSummary(StageSummary):
    FOUND: ClassVar[str] = "with_text"
    with_text: int = 0  # pictures read that had words above the confidence floor


class OcrStage(PictureStage[OcrSummary]):
    """Reads the words of a collection's embedded pictures; one per process is enough (thread-safe)."""

    name = "ocr"
    columns = stage_rows.OCR
    read_side = READ_SIDE
    unavailable = OcrUnavailable
    summary_type = OcrSummary

    def __init__(self, settings: Settings, catalog: Catalog, storage: Storage, reader: TextReader):
        super().__init__(settings, catalog, storage)
        self.reader = reader

    def read_picture(self, collection: Collection, row: WaitingRow, image: Image.Image, batch: Any) -> bool | None:
        text = text_of(self.reader.read(image))
        if not store_text(self.catalog, collection, row.key, row.etag, text):
            return None
        return bool(text)
