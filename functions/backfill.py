"""Backfill function (scheduled): reconcile each collection with its bucket and embed what is missing.

The event may name the collections ({"collections": ["photos"]}); by default it is IB_BUCKET. Stops
cleanly before the Lambda deadline; safe to run twice at once (rows are claimed).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from shared.backfill import sweep
from shared.config import get_settings
from shared.ingest import default_ingestor

logger = Logger(service="image-browser-backfill")
MARGIN_MS = 60_000  # stop this long before the deadline: a round must finish and be recorded


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    event = event if isinstance(event, dict) else {}
    names = event.get("collections") or [get_settings().bucket]
    remaining = context.get_remaining_time_in_millis if context is not None else None
    results = []
    for name in names:
        summary = sweep(default_ingestor(), str(name), remaining_ms=remaining, margin_ms=MARGIN_MS)
        logger.info("backfill done", extra=summary.as_dict())
        results.append(summary.as_dict())
        if summary.stopped_early:
            break
    return {"collections": results}
