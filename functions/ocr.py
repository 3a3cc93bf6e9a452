"""OCR function (scheduled): read the words in embedded pictures that have none yet.

A stage of its own, so embedding never waits for it (shared/ocr_stage.py). The event may name the
collections ({"collections": ["photos"]}); by default it is IB_BUCKET. A collection with no images yet
is skipped. Stops cleanly before the Lambda deadline; safe to run twice at once (rows are claimed).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from shared import runtime
from shared.catalog import UnknownCollection
from shared.config import get_settings

logger = Logger(service="image-browser-ocr")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    event = event if isinstance(event, dict) else {}
    names = event.get("collections") or [get_settings().bucket]
    remaining = context.get_remaining_time_in_millis if context is not None else None
    results = []
    for name in names:
        try:
            summary = runtime.ocr_stage().run(str(name), remaining_ms=remaining).as_dict()
        except UnknownCollection:
            logger.info("no such collection yet; nothing to read", extra={"collection": name})
            continue
        # A run that found nothing to read (most runs of a frequent schedule) is debug noise.
        log = logger.info if summary["read"] or summary["failed"] or summary["retry"] else logger.debug
        log("ocr done", extra=summary)
        results.append(summary)
        if summary["stopped_early"]:
            break
    return {"collections": results}
