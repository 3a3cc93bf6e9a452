"""Embed function: object events in, vectors in PostgreSQL out.

One handler for every trigger the event normaliser knows:
- SQS batches (S3 -> SQS, S3 -> SNS -> SQS, EventBridge -> SQS): Powertools `BatchProcessor` reports only
  the messages whose objects hit a transient failure as `batchItemFailures`, so only those come back;
- direct S3 invocation, EventBridge, R2 queue messages: a transient failure raises (Lambda retries).

All records of an invocation are ingested together, so images are embedded in model-sized batches.
The model and the database connection live in `shared.runtime`: created on first use, kept per container.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared import runtime
from shared.events import ObjectEvent, UnsupportedEvent, parse, parse_record
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
    summary = report.summary()
    logger.info("batch done", extra={"summary": summary, "seconds": round(time.perf_counter() - started, 3)})
    if report.errors:
        raise IngestRetry(report.errors)
    return {"summary": summary}


def _handle_sqs(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = time.perf_counter()
    per_message: dict[str, list[ObjectEvent]] = {}
    for record in event["Records"]:
        try:
            per_message[record["messageId"]] = parse_record(record)
        except UnsupportedEvent as exc:
            # Retrying cannot fix a malformed message; drop it loudly (the sweep catches any missed object).
            logger.error("dropping malformed message", extra={"message_id": record.get("messageId"),
                                                              "error": str(exc)})
            per_message[record["messageId"]] = []
    events = [e for message_events in per_message.values() for e in message_events]
    report = runtime.ingestor().process_events(events)
    log_outcomes(report, logger)

    def record_handler(record: SQSRecord) -> None:
        # A message fails when any of its objects must be retried; the rest are acknowledged.
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
        "messages": len(event["Records"]), "summary": summary,
        "failed_messages": len(response.get("batchItemFailures", [])),
        "seconds": round(time.perf_counter() - started, 3),
    })
    return dict(response)
