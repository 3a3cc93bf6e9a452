"""Scheduled consumer of Cloudflare R2 event notifications (HTTP pull from a Cloudflare Queue).

Each run pulls batches until the queue is empty or the time budget is spent. Every message is one R2
event; its parsed events go to the same ingest code as S3 events. A message whose ingest raises (a
transient failure: database or storage busy) is retried by lease; the others are acknowledged, including
malformed ones, which retrying cannot fix (they are logged with their body).
"""

from __future__ import annotations

import logging
from typing import Any

from shared.config import get_settings
from shared.events import UnsupportedEvent, parse
from shared.ingest import DEADLINE_MARGIN_MS, ingest_events
from shared.r2_queue import R2QueueClient

logger = logging.getLogger(__name__)

MAX_ROUNDS = 1000  # a bound on one run, whatever the clock says
RETRY_DELAY_SECONDS = 30


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    settings = get_settings()
    totals = {"pulled": 0, "acked": 0, "retried": 0, "malformed": 0}
    with R2QueueClient.from_settings(settings) as queue:
        for _ in range(MAX_ROUNDS):
            if context is not None and context.get_remaining_time_in_millis() < DEADLINE_MARGIN_MS:
                break
            messages = queue.pull(settings.r2_pull_batch_size, settings.r2_pull_visibility_timeout_ms)
            if not messages:
                break
            acks: list[str] = []
            retries: list[str] = []
            for message in messages:
                try:
                    events = parse(message.body)
                except UnsupportedEvent as exc:
                    logger.error("dropping malformed R2 queue message %s: %s", message.id, exc)
                    totals["malformed"] += 1
                    acks.append(message.lease_id)
                    continue
                try:
                    ingest_events(events)
                except Exception:  # transient by contract: the message comes back after the delay
                    logger.exception(
                        "ingest failed for R2 queue message %s (attempt %d); retrying it",
                        message.id,
                        message.attempts,
                    )
                    retries.append(message.lease_id)
                else:
                    acks.append(message.lease_id)
            result = queue.ack(acks, retries, retry_delay_seconds=RETRY_DELAY_SECONDS)
            for warning in result.warnings:
                logger.warning("Cloudflare ack warning: %s", warning)
            totals["pulled"] += len(messages)
            totals["acked"] += len(acks)
            totals["retried"] += len(retries)
            if retries:
                break  # something downstream is failing: leave the rest for the next run
    logger.info("r2_pull: %s", totals)
    return totals
