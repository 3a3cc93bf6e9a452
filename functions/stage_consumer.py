"""What the stage functions (OCR, faces) share: each consumes its own queue of work messages that name the
keys the embed function just embedded (or the backfill's plan found waiting), so a stage runs when there is
something to read and never on a schedule (a database that can sleep). Each message's keys are claimed (a
lease per row), so a message delivered twice is read once; a message whose pictures met an outage comes back
(`batchItemFailures`). Invoked directly with {"collections": ["photos"]}, a stage reads whatever waits
there, stopping cleanly before the Lambda deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.ingest import work
from shared.jobs import Deadline, Summary, each_collection
from shared.store.catalog import UnknownCollection


class RetryMessage(RuntimeError):
    """A work message with pictures to read again later."""


@dataclass(frozen=True)
class StageConsumer:
    """One stage's handler body: `stage()` gives the process's stage, which has `read_keys(collection, keys)`
    and `run(collection, deadline=...)`, each returning a summary with `read`, `failed` and `retry`."""

    name: str  # "ocr", "faces": in log messages
    stage: Callable[[], Any]
    logger: Logger

    def handle(self, event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
        records = event.get("Records") if isinstance(event, dict) else None
        if records:
            return process_partial_response(event=event, record_handler=self.read_message,
                                            processor=BatchProcessor(event_type=EventType.SQS), context=context)
        return each_collection(event, context, self.read_waiting)

    def read_message(self, record: SQSRecord) -> None:
        """One work message; raises (the message comes back) when a picture met an outage."""
        try:
            message = work.parse(record.body)
        except work.BadWorkMessage as exc:
            self.logger.error(f"dropping malformed {self.name} message",
                              extra={"message_id": record.message_id, "error": str(exc)})
            return
        try:
            summary = self.stage().read_keys(message.collection, message.keys).as_dict()
        except UnknownCollection:
            self.logger.warning(f"no such collection; dropping its {self.name} message",
                                extra={"collection": message.collection})
            return
        self.logger.info(f"{self.name} done", extra=summary)
        if summary["retry"]:
            raise RetryMessage(f"{summary['retry']} picture(s) of {message.collection} to read again later")

    def read_waiting(self, name: str, deadline: Deadline) -> Summary | None:
        try:
            summary = self.stage().run(name, deadline=deadline).as_dict()
        except UnknownCollection:
            self.logger.info("no such collection yet; nothing to read", extra={"collection": name})
            return None
        log = self.logger.info if summary["read"] or summary["failed"] or summary["retry"] else self.logger.debug
        log(f"{self.name} done", extra=summary)
        return summary
