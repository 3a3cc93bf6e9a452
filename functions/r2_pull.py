"""Scheduled consumer of Cloudflare R2 event notifications (HTTP pull from a Cloudflare Queue).

Each run pulls batches until the queue is empty or the time budget is spent. Every message is one R2
event; its parsed events go to the same ingest code as S3 events. A message whose ingest raises (a
transient failure: database or storage busy) is retried by lease; the others are acknowledged, including
malformed ones, which retrying cannot fix (they are logged with their body).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from shared import runtime
from shared.config import get_settings
from shared.events import ObjectEvent, UnsupportedEvent, parse
from shared.ingest.pipeline import IngestRetry
from shared.ingest.r2_queue import PulledMessage, R2QueueClient
from shared.jobs import Deadline

logger = Logger(service="image-browser-r2-pull")

MAX_ROUNDS = 1000  # a bound on one run, whatever the clock says
RETRY_DELAY_SECONDS = 30


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    settings = get_settings()
    deadline = Deadline.of(context)
    totals = {"pulled": 0, "acked": 0, "retried": 0, "malformed": 0}
    with R2QueueClient.from_settings(settings) as queue:
        for _ in range(MAX_ROUNDS):
            if deadline.seconds_left() <= 0:
                break
            messages = queue.pull(settings.r2_pull_batch_size, settings.r2_pull_visibility_timeout_ms)
            if not messages:
                break
            acks, retries = _ingest(messages, totals)
            result = queue.ack(acks, retries, retry_delay_seconds=RETRY_DELAY_SECONDS)
            for warning in result.warnings:
                logger.warning("Cloudflare ack warning", extra={"warning": warning})
            totals["pulled"] += len(messages)
            totals["acked"] += len(acks)
            totals["retried"] += len(retries)
            if retries:
                break  # something downstream is failing: leave the rest for the next run
    logger.info("r2_pull done", extra=totals)
    return totals


def ingest_events(events: list[ObjectEvent]) -> None:
    """Ingest one message's events; IngestRetry if any object must be retried."""
    report = runtime.ingestor().process_events(events)
    if report.errors:
        raise IngestRetry(report.errors)


def _ingest(messages: list[PulledMessage], totals: dict[str, int]) -> tuple[list[str], list[str]]:
    """Ingest each message's events: (lease ids to acknowledge, lease ids to retry)."""
    acks: list[str] = []
    retries: list[str] = []
    for message in messages:
        try:
            events = parse(message.body)
        except UnsupportedEvent as exc:
            logger.error("dropping malformed R2 queue message", extra={"message_id": message.id, "error": str(exc)})
            totals["malformed"] += 1
            acks.append(message.lease_id)
            continue
        try:
            ingest_events(events)
        except Exception:  # transient by contract: the message comes back after the delay
            logger.exception("ingest failed for an R2 queue message; retrying it",
                             extra={"message_id": message.id, "attempts": message.attempts})
            retries.append(message.lease_id)
        else:
            acks.append(message.lease_id)
    return acks, retries
