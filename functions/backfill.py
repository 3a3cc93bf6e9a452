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
from shared.ingest.backfill import sweep
from shared.ingest.model_move import reembed
from shared.jobs import Deadline, Summary, each_collection

logger = Logger(service="image-browser-backfill")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    new_model = event.get("reembed") if isinstance(event, dict) else None

    def run(name: str, deadline: Deadline) -> Summary:
        ingestor = runtime.ingestor()
        if new_model:
            summary = reembed(ingestor, name, ingestor.models.get(str(new_model), name), deadline=deadline).as_dict()
        else:
            summary = sweep(ingestor, name, deadline=deadline).as_dict()
        logger.info("backfill done", extra=summary)
        return summary

    return each_collection(event, context, run)
