"""Local stand-in for Lambda's SQS event source mapping (used by `make dev`, the tests and the benchmark).

Receives batches from a queue, calls a handler with exactly the event Lambda builds (Records with
messageId, receiptHandle, body, attributes, messageAttributes, md5OfBody, eventSource, eventSourceARN,
awsRegion), deletes the messages not listed in `batchItemFailures` and leaves the failed ones to come back
after the visibility timeout. A handler that raises fails the whole batch, as on Lambda. With
`filter_patterns` (what the deployment filters: the bucket rule's and the trigger's patterns together,
`shared.ingest.event_filter.thumbnail_filter`) messages no pattern matches are deleted without an invocation, as
Lambda does.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from shared.ingest.event_filter import Pattern, passes

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]
SQS_MAX_RECEIVE = 10  # SQS returns at most 10 messages per ReceiveMessage
# moto writes '/' in notification keys as %2F; S3 leaves it as is, and the filter is written for S3's keys.
MOTO_ENCODED_SLASH = "%2F"


class LocalContext:
    """The parts of the Lambda context object handlers and Powertools use."""

    def __init__(self, function_name: str = "local", timeout_seconds: float = 900.0, memory_mb: int = 3008):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class PollStats:
    invocations: int = 0
    received: int = 0
    deleted: int = 0
    failed: int = 0  # messages left for redelivery
    handler_errors: int = 0
    filtered: int = 0  # deleted without an invocation: no filter pattern matched
    # CPU of the poller itself (receive, filter, event building, delete): Lambda's service does this work in
    # production, so a benchmark can tell it apart from the function's own.
    poller_cpu_seconds: float = 0.0


class SqsPoller:
    """Poll `queue_url` and feed `handler` like Lambda does.

    `batch_size` and `batching_window` mirror the event source mapping's BatchSize and
    MaximumBatchingWindowInSeconds; `visibility_timeout` (optional) overrides the queue's for received
    messages, so tests need not wait 30 s for a redelivery.
    """

    def __init__(self, sqs: Any, queue_url: str, handler: Handler, *, batch_size: int = 10,
                 batching_window: float = 0.0, visibility_timeout: int | None = None, wait_seconds: int = 1,
                 function_name: str = "embed", function_timeout: float = 900.0, region: str = "us-east-1",
                 concurrency: int = 1, filter_patterns: list[Pattern] | None = None):
        self.sqs = sqs
        self.queue_url = queue_url
        self.handler = handler
        self.batch_size = batch_size
        self.batching_window = batching_window
        self.visibility_timeout = visibility_timeout
        self.wait_seconds = wait_seconds
        self.function_name = function_name
        self.function_timeout = function_timeout
        self.region = region
        self.filter_patterns = filter_patterns
        self.stats = PollStats()
        self._arn: str | None = None
        self._stop = threading.Event()
        self.concurrency = concurrency  # like the event source mapping's MaximumConcurrency
        self._threads: list[threading.Thread] = []
        self._stats_lock = threading.Lock()

    @property
    def queue_arn(self) -> str:
        if self._arn is None:
            attrs = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
            self._arn = str(attrs["Attributes"]["QueueArn"])
        return self._arn

    def receive(self) -> list[dict[str, Any]]:
        """Up to `batch_size` messages, waiting up to the batching window to fill the batch."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.batching_window
        cpu_started = time.thread_time()
        while len(messages) < self.batch_size:
            kwargs: dict[str, Any] = {
                "QueueUrl": self.queue_url,
                "MaxNumberOfMessages": min(SQS_MAX_RECEIVE, self.batch_size - len(messages)),
                "WaitTimeSeconds": 0 if messages else self.wait_seconds,
                "MessageSystemAttributeNames": ["All"],
                "MessageAttributeNames": ["All"],
            }
            if self.visibility_timeout is not None:
                kwargs["VisibilityTimeout"] = self.visibility_timeout
            got = self.sqs.receive_message(**kwargs).get("Messages", [])
            messages.extend(got)
            if not messages or time.monotonic() >= deadline:
                break
            if not got:
                time.sleep(0.05)  # inside the batching window: wait for more messages, gently
        self._count(poller_cpu_seconds=time.thread_time() - cpu_started)
        return messages

    def to_event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """Lambda's SQS event for these messages."""
        arn = self.queue_arn
        return {"Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": dict(m.get("Attributes", {})),
                "messageAttributes": {
                    name: {
                        "stringValue": value.get("StringValue"),
                        "binaryValue": value.get("BinaryValue"),
                        "stringListValues": [], "binaryListValues": [],
                        "dataType": value.get("DataType"),
                    }
                    for name, value in m.get("MessageAttributes", {}).items()
                },
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": self.region,
            }
            for m in messages
        ]}

    def poll_once(self) -> int:
        """One receive + invoke + acknowledge; returns how many messages were received."""
        return self.handle(self.receive())

    def passes_filter(self, message: dict[str, Any]) -> bool:
        if self.filter_patterns is None:
            return True
        return passes(self.filter_patterns, message["Body"].replace(MOTO_ENCODED_SLASH, "/"))

    def handle(self, messages: list[dict[str, Any]]) -> int:
        """Invoke the handler with the messages the filter keeps and acknowledge the ones it did not report
        as failed; the filtered-out ones are acknowledged without an invocation."""
        if not messages:
            return 0
        cpu_started = time.thread_time()
        handler_cpu = self._filter_invoke_acknowledge(messages)
        self._count(poller_cpu_seconds=time.thread_time() - cpu_started - handler_cpu)
        return len(messages)

    def _filter_invoke_acknowledge(self, messages: list[dict[str, Any]]) -> float:
        """The work of `handle`; returns the CPU seconds the handler took in this thread."""
        kept: list[dict[str, Any]] = []
        dropped: list[dict[str, Any]] = []
        for message in messages:
            (kept if self.passes_filter(message) else dropped).append(message)
        self._count(received=len(messages), filtered=len(dropped))
        self.delete(dropped)
        if not kept:
            return 0.0
        self._count(invocations=1)
        event, context = self.to_event(kept), LocalContext(self.function_name, self.function_timeout)
        handler_started = time.thread_time()
        try:
            response = self.handler(event, context)
        except Exception:
            log.exception("handler failed the whole batch of %d messages; they come back after the "
                          "visibility timeout", len(kept))
            self._count(handler_errors=1, failed=len(kept))
            return time.thread_time() - handler_started
        handler_cpu = time.thread_time() - handler_started
        failures = {item["itemIdentifier"] for item in (response or {}).get("batchItemFailures", [])}
        done = [m for m in kept if m["MessageId"] not in failures]
        self.delete(done)
        self._count(deleted=len(done), failed=len(kept) - len(done))
        return handler_cpu

    def delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), SQS_MAX_RECEIVE):
            chunk = messages[start:start + SQS_MAX_RECEIVE]
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
            ])

    def _count(self, **deltas: float) -> None:
        with self._stats_lock:  # several poller threads may count at once
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)

    def queue_depth(self) -> int:
        """Visible + in-flight messages (approximate, as SQS reports them)."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def drain(self, timeout: float = 60.0) -> PollStats:
        """Poll until the queue holds nothing (failed messages included, once redelivered and handled)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.poll_once() == 0 and self.queue_depth() == 0:
                return self.stats
        raise TimeoutError(
            f"queue {self.queue_url} still holds {self.queue_depth()} message(s) after {timeout:.0f} s; "
            "a message keeps failing (see the handler's logs)"
        )

    # ---- background -----------------------------------------------------------------------------

    def start(self) -> SqsPoller:
        """Poll in `concurrency` daemon threads (invocations at once) until `stop()`."""
        self._stop.clear()
        self._threads = [threading.Thread(target=self._run, name=f"sqs-poller-{i}", daemon=True)
                         for i in range(self.concurrency)]
        for thread in self._threads:
            thread.start()
        return self

    def _run(self) -> None:
        # Like Lambda's pollers, the next batch is received while the handler works on this one.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqs-receive") as receiver:
            upcoming = receiver.submit(self.receive)
            while not self._stop.is_set():
                try:
                    messages = upcoming.result()
                except Exception:  # the queue endpoint went away: keep the loop alive, slowly
                    log.exception("SQS receive failed; retrying in 1 s")
                    self._stop.wait(1.0)
                    messages = []
                upcoming = receiver.submit(self.receive)
                try:
                    self.handle(messages)
                except Exception:  # acknowledging failed: the messages come back, which is safe
                    log.exception("acknowledging SQS messages failed")
            upcoming.cancel()

    def stop_soon(self) -> None:
        """Ask the loop to end after its current receive (a long poll of up to `wait_seconds`)."""
        self._stop.set()

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_soon()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
