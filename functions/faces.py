"""Faces function: find the faces in embedded pictures and group them into people, an SQS consumer of the
faces queue.

The embed function sends the keys it embedded as faces work messages (shared/ingest/work.py), and the
backfill's plan queues the older rows that wait: so it runs when there is something to read and never on a
schedule. Each message's keys are claimed (a lease per row), so a message delivered twice is read once; a
message whose pictures met an outage comes back (`batchItemFailures`).

Invoked directly with {"collections": ["photos"]} it finds whatever waits there (as `image-browser faces`),
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

logger = Logger(service="image-browser-faces")
processor = BatchProcessor(event_type=EventType.SQS)


class RetryMessage(RuntimeError):
    """A faces message with pictures to read again later."""


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    records = event.get("Records") if isinstance(event, dict) else None
    if records:
        return process_partial_response(event=event, record_handler=find_message, processor=processor,
                                        context=context)
    return each_collection(event, context, find_faces)


def find_message(record: SQSRecord) -> None:
    """One faces work message; raises (the message comes back) when a picture met an outage."""
    try:
        message = work.parse(record.body)
    except work.BadWorkMessage as exc:
        logger.error("dropping malformed faces message", extra={"message_id": record.message_id, "error": str(exc)})
        return
    try:
        summary = runtime.faces_stage().find_keys(message.collection, message.keys).as_dict()
    except UnknownCollection:
        logger.warning("no such collection; dropping its faces message", extra={"collection": message.collection})
        return
    logger.info("faces done", extra=summary)
    if summary["retry"]:
        raise RetryMessage(f"{summary['retry']} picture(s) of {message.collection} to read again later")


def find_faces(name: str, deadline: Deadline) -> Summary | None:
    try:
        summary = runtime.faces_stage().run(name, deadline=deadline).as_dict()
    except UnknownCollection:
        logger.info("no such collection yet; no faces to find", extra={"collection": name})
        return None
    log = logger.info if summary["read"] or summary["failed"] or summary["retry"] else logger.debug
    log("faces done", extra=summary)
    return summary
