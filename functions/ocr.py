"""OCR function (scheduled): read the words in embedded pictures that have none yet.

A stage of its own, so embedding never waits for it (shared/ocr/stage.py). The event may name the
collections ({"collections": ["photos"]}); by default it is IB_BUCKET. A collection with no images yet
is skipped. Stops cleanly before the Lambda deadline; safe to run twice at once (rows are claimed).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from shared import runtime
from shared.jobs import Deadline, Summary, each_collection
from shared.store.catalog import UnknownCollection

logger = Logger(service="image-browser-ocr")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    return each_collection(event, context, read_words)


def read_words(name: str, deadline: Deadline) -> Summary | None:
    try:
        summary = runtime.ocr_stage().run(name, deadline=deadline).as_dict()
    except UnknownCollection:
        logger.info("no such collection yet; nothing to read", extra={"collection": name})
        return None
    # A run that found nothing to read (most runs of a frequent schedule) is debug noise.
    log = logger.info if summary["read"] or summary["failed"] or summary["retry"] else logger.debug
    log("ocr done", extra=summary)
    return summary
