"""OCR function: read the words in embedded pictures, an SQS consumer of the OCR queue.

The embed function sends the keys it embedded as OCR work messages (shared/ingest/work.py), and the
backfill's plan queues the older rows that wait: so OCR runs when there is something to read and never on
a schedule (a database that can sleep). Each message's keys are claimed (a lease per row), so a message
delivered twice is read once; a message whose pictures met an outage comes back (`batchItemFailures`).

Invoked directly with {"collections": ["photos"]} it reads whatever waits there (as `image-browser ocr`),
stopping cleanly before the Lambda deadline.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared import runtime
from shared.ingest import work
from shared.jobs import Deadline, Summary, each_collection
from shared.store.catalog import UnknownCollection

logger = Logger(service="image-browser-ocr")
processor = BatchProcessor(event_type=EventType.SQS)


class RetryMessage(RuntimeError):
    """An OCR message with pictures to read again later."""


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    records = event.get("Records") if isinstance(event, dict) else None
    if records:
        return process_partial_response(event=event, record_handler=read_message, processor=processor,
                                        context=context)
    return each_collection(event, context, read_words)


def read_message(record: SQSRecord) -> None:
    """One OCR work message; raises (the message comes back) when a picture met an outage."""
    try:
        message = work.parse(record.body)
    except work.BadWorkMessage as exc:
        logger.error("dropping malformed OCR message", extra={"message_id": record.message_id, "error": str(exc)})
        return
    try:
        summary = runtime.ocr_stage().read_keys(message.collection, message.keys).as_dict()
    except UnknownCollection:
        logger.warning("no such collection; dropping its OCR message", extra={"collection": message.collection})
        return
    logger.info("ocr done", extra=summary)
    if summary["retry"]:
        raise RetryMessage(f"{summary['retry']} picture(s) of {message.collection} to read again later")


def read_words(name: str, deadline: Deadline) -> Summary | None:
    try:
        summary = runtime.ocr_stage().run(name, deadline=deadline).as_dict()
    except UnknownCollection:
        logger.info("no such collection yet; nothing to read", extra={"collection": name})
        return None
    log = logger.info if summary["read"] or summary["failed"] or summary["retry"] else logger.debug
    log("ocr done", extra=summary)
    return summary
