"""Backfill function (scheduled): reconcile each collection with its bucket and embed what is missing.

The event may name the collections ({"collections": ["photos"]}); by default it is IB_BUCKET. With
{"reembed": "<model id>"} it runs a model move instead (the model must be in this deployment's
IB_MODEL): resumable, so a move longer than one invocation goes on at the next one. Stops cleanly
before the Lambda deadline; safe to run twice at once (rows are claimed).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from shared import runtime
from shared.backfill import sweep
from shared.config import get_settings
from shared.ingest import DEADLINE_MARGIN_MS
from shared.model_move import reembed

logger = Logger(service="image-browser-backfill")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    event = event if isinstance(event, dict) else {}
    names = event.get("collections") or [get_settings().bucket]
    remaining = context.get_remaining_time_in_millis if context is not None else None
    ingestor = runtime.ingestor()
    results = []
    for name in names:
        if event.get("reembed"):
            new = ingestor.models.get(str(event["reembed"]), str(name))
            time_left = (lambda: (remaining() - DEADLINE_MARGIN_MS) / 1000.0) if remaining else None
            summary = reembed(ingestor, str(name), new, time_left=time_left).as_dict()
        else:
            summary = sweep(ingestor, str(name), remaining_ms=remaining).as_dict()
        logger.info("backfill done", extra=summary)
        results.append(summary)
        if summary["stopped_early"]:
            break
    return {"collections": results}
