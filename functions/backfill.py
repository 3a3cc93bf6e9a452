"""Backfill function (scheduled, at most hourly): plan the bulk work and queue it.

The event may name the collections ({"collections": ["photos"]}); by default it is IB_BUCKET. With a work
queue (IB_WORK_QUEUE_URL, the embed queue) it reconciles each collection with its bucket a listing page at a
time and queues the work each page needs (shared/ingest/backfill.py `plan`), returning within seconds of
its listing: the embed function's concurrency (embedMaxConcurrency) does the embedding. A listing cut short
by the deadline goes on at the next run from its stored token.

With {"reembed": "<model id>"} it begins a model move (the model must be in this deployment's IB_MODEL) and
queues a re-embedding message for every row; the embed function's last message switches the collection.
Without a work queue it does the work itself (`sweep`, `model_move.reembed`), stopping before the deadline.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from shared import runtime
from shared.config import get_settings
from shared.ingest.backfill import plan, queue_reembed, sweep
from shared.ingest.model_move import reembed
from shared.jobs import Deadline, Summary, each_collection

logger = Logger(service="image-browser-backfill")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    new_model = event.get("reembed") if isinstance(event, dict) else None
    queue_url = get_settings().work_queue_url

    def run(name: str, deadline: Deadline) -> Summary:
        ingestor = runtime.ingestor()
        if new_model:
            target = ingestor.models.get(str(new_model), name)
            if queue_url:
                summary = queue_reembed(ingestor, name, target.model_id, target.dim, queue_url=queue_url)
            else:
                summary = reembed(ingestor, name, target, deadline=deadline).as_dict()
        elif queue_url:
            summary = plan(ingestor, name, queue_url=queue_url, deadline=deadline).as_dict()
        else:
            summary = sweep(ingestor, name, deadline=deadline).as_dict()
        logger.info("backfill done", extra=summary)
        return summary

    return each_collection(event, context, run)
