"""Embed function: object events and work messages in, vectors in PostgreSQL out.

One handler for every trigger the event normaliser knows:
- SQS batches (S3 -> SQS, S3 -> SNS -> SQS, EventBridge -> SQS), and the work messages the backfill and
  model moves fan out on the same queue (shared/ingest/work.py): Powertools `BatchProcessor` reports only
  the messages whose objects hit a transient failure as `batchItemFailures`, so only those come back;
- direct S3 invocation, EventBridge, R2 queue messages: a transient failure raises (Lambda retries).

All records of an invocation are ingested together, so images are embedded in model-sized batches. What it
embedded goes on as OCR and faces work messages (IB_OCR_QUEUE_URL, IB_FACES_QUEUE_URL), so the OCR and
faces functions read it next.
The model and the database connection live in `shared.runtime`: created on first use, kept per container.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from functions.stage_consumer import RetryMessage
from shared import runtime
from shared.config import get_settings
from shared.events import ObjectEvent, UnsupportedEvent, parse, parse_record
from shared.ingest import work
from shared.ingest.pipeline import IngestRetry, log_outcomes

logger = Logger(service="image-browser-embed")
processor = BatchProcessor(event_type=EventType.SQS)


def is_sqs_batch(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    return bool(records) and isinstance(records, list) and all(
        isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records
    )


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if is_sqs_batch(event):
        return _handle_sqs(event, context)
    started = time.perf_counter()
    events = parse(event)  # an unknown shape raises: a direct invocation with garbage should fail loudly
    report = runtime.ingestor().process_events(events)
    log_outcomes(report, logger)
    work.hand_off(get_settings(), _embedded_by_bucket(report.outcomes), runtime.queue_client)
    summary = report.summary()
    logger.info("batch done", extra={"summary": summary, "seconds": round(time.perf_counter() - started, 3)})
    if report.errors:
        raise IngestRetry(report.errors)
    return {"summary": summary}


def _split(records: list[dict[str, Any]]) -> tuple[dict[str, list[ObjectEvent]], dict[str, work.WorkMessage]]:
    """Each message's object events, or its work message; a malformed one gets no events (dropped)."""
    per_message: dict[str, list[ObjectEvent]] = {}
    work_messages: dict[str, work.WorkMessage] = {}
    for record in records:
        message_id = record["messageId"]
        try:
            if work.is_work(record.get("body")):
                work_messages[message_id] = work.parse(record["body"])
            else:
                per_message[message_id] = parse_record(record)
        except (UnsupportedEvent, work.BadWorkMessage) as exc:
            # Retrying cannot fix a malformed message; drop it loudly (the backfill catches any missed object).
            logger.error("dropping malformed message", extra={"message_id": message_id, "error": str(exc)})
            per_message[message_id] = []
    return per_message, work_messages


def _handle_sqs(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = time.perf_counter()
    per_message, work_messages = _split(event["Records"])
    ingestor = runtime.ingestor()
    events = [e for message_events in per_message.values() for e in message_events]
    report = ingestor.process_events(events)
    done = work.run(ingestor, work_messages) if work_messages else work.WorkResult()
    report.outcomes.extend(done.report.outcomes)
    log_outcomes(report, logger)
    embedded = _embedded_by_bucket(report.outcomes[:len(report.outcomes) - len(done.report.outcomes)])
    for collection, keys in done.embedded.items():
        embedded.setdefault(collection, []).extend(keys)
    work.hand_off(get_settings(), embedded, runtime.queue_client)

    def record_handler(record: SQSRecord) -> None:
        # A message fails when any of its objects must be retried; the rest are acknowledged.
        if record.message_id in done.failed:
            raise RetryMessage(f"work message {record.message_id} has keys to retry")
        for e in per_message.get(record.message_id, []):
            error = report.errors.get((e.bucket, e.key))
            if error is not None:
                raise error

    response = process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                        context=context)
    summary = report.summary()
    # A batch that only skipped (typically the echoes of our own thumbnail writes) is debug noise.
    log = logger.info if any(count for outcome, count in summary.items() if outcome != "skipped") else logger.debug
    log("batch done", extra={
        "messages": len(event["Records"]), "work_messages": len(work_messages), "summary": summary,
        "failed_messages": len(response.get("batchItemFailures", [])),
        "seconds": round(time.perf_counter() - started, 3),
    })
    return dict(response)


def _embedded_by_bucket(outcomes: list[Any]) -> dict[str, list[str]]:
    """Keys embedded from object events, by collection (an event's collection is its bucket)."""
    embedded: dict[str, list[str]] = {}
    for o in outcomes:
        if o.outcome == "embedded":
            embedded.setdefault(o.bucket, []).append(o.key)
    return embedded
