"""Work messages: bulk jobs fanned out on SQS, so the consumers' concurrency does the work.

A message names a job, a collection and a small chunk of its keys:

    {"image_browser": {"job": "embed", "collection": "photos", "keys": ["a.jpg", ...]}}
    {"image_browser": {"job": "reembed", "collection": "photos", "keys": [...], "model": "<model id>"}}
    {"image_browser": {"job": "ocr", "collection": "photos", "keys": [...]}}
    {"image_browser": {"job": "faces", "collection": "photos", "keys": [...]}}
    {"image_browser": {"job": "fill", "collection": "photos", "keys": [...]}}

The embed, re-embed and fill jobs go on the embed queue (the embed function consumes them beside object
events), OCR on the OCR queue, faces on the faces queue. A fill gives rows from before a feature what they
lack, their vectors untouched (shared/ingest/catch_up.py). Consumers claim exactly the keys of their message
(a lease per row), so a message delivered twice, or a key also sent by an S3 event, is worked on once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.config import Settings
from shared.ingest import model_move
from shared.ingest.catch_up import fill_keys
from shared.ingest.pipeline import Ingestor, IngestReport
from shared.jobs import TRANSIENT_ERRORS
from shared.store.catalog import UnknownCollection

log = logging.getLogger(__name__)

Job = Literal["embed", "reembed", "ocr", "faces", "fill"]
JOBS: tuple[str, ...] = ("embed", "reembed", "ocr", "faces", "fill")
EMBED_QUEUE_JOBS = ("embed", "reembed", "fill")  # what the embed function does (event_filter.WORK_MESSAGES lets in)
ENVELOPE = "image_browser"
KEYS_PER_MESSAGE = 25  # one consumer batch of 10 messages is then 250 images: a few seconds to minutes of work
MESSAGES_PER_SEND = 10  # SendMessageBatch takes at most 10 entries


class BadWorkMessage(ValueError):
    """A body that says it is a work message but is not a valid one (retrying cannot fix it)."""


@dataclass(frozen=True)
class WorkMessage:
    job: Job
    collection: str
    keys: tuple[str, ...]
    model: str | None = None  # the target model of a re-embedding

    def body(self) -> str:
        fields: dict[str, Any] = {"job": self.job, "collection": self.collection, "keys": list(self.keys)}
        if self.model is not None:
            fields["model"] = self.model
        return json.dumps({ENVELOPE: fields}, separators=(",", ":"))


def is_work(body: Any) -> bool:
    """Whether a message body (text or parsed) is one of ours rather than an object event."""
    if isinstance(body, str):
        if f'"{ENVELOPE}"' not in body:
            return False
        try:
            body = json.loads(body)
        except ValueError:
            return False
    return isinstance(body, dict) and ENVELOPE in body


def parse(body: str | dict[str, Any]) -> WorkMessage:
    """The work message of a body; BadWorkMessage naming what is wrong."""
    try:
        data = json.loads(body) if isinstance(body, str) else body
    except ValueError as exc:
        raise BadWorkMessage(f"not JSON: {exc}") from None
    fields = data.get(ENVELOPE) if isinstance(data, dict) else None
    if not isinstance(fields, dict):
        raise BadWorkMessage(f"no {ENVELOPE!r} object in the body")
    job, collection, keys, model = (fields.get(name) for name in ("job", "collection", "keys", "model"))
    if job not in JOBS:
        raise BadWorkMessage(f"job must be one of {', '.join(JOBS)}, got {job!r}")
    if not isinstance(collection, str) or not collection:
        raise BadWorkMessage("collection must be a non-empty string")
    if not isinstance(keys, list) or not all(isinstance(key, str) and key for key in keys):
        raise BadWorkMessage("keys must be a list of non-empty strings")
    if job == "reembed" and (not isinstance(model, str) or not model):
        raise BadWorkMessage("a reembed message names its target model")
    return WorkMessage(job, collection, tuple(keys), model if job == "reembed" else None)


def chunks(job: Job, collection: str, keys: Iterable[str], *, model: str | None = None,
           size: int = KEYS_PER_MESSAGE) -> Iterator[WorkMessage]:
    """The keys as messages of at most `size` keys each."""
    chunk: list[str] = []
    for key in keys:
        chunk.append(key)
        if len(chunk) >= size:
            yield WorkMessage(job, collection, tuple(chunk), model)
            chunk = []
    if chunk:
        yield WorkMessage(job, collection, tuple(chunk), model)


def send(sqs: Any, queue_url: str, messages: Iterable[WorkMessage]) -> int:
    """Send the messages with SendMessageBatch (10 a call); how many were sent. A partial failure raises,
    naming the first failed entry (the caller's next plan queues what is still to do)."""
    sent = 0
    batch: list[WorkMessage] = []
    for message in messages:
        batch.append(message)
        if len(batch) == MESSAGES_PER_SEND:
            sent += _send_batch(sqs, queue_url, batch)
            batch = []
    if batch:
        sent += _send_batch(sqs, queue_url, batch)
    return sent


def _send_batch(sqs: Any, queue_url: str, batch: Sequence[WorkMessage]) -> int:
    response = sqs.send_message_batch(QueueUrl=queue_url, Entries=[
        {"Id": str(index), "MessageBody": message.body()} for index, message in enumerate(batch)
    ])
    failed = response.get("Failed") or []
    if failed:
        first = failed[0]
        raise RuntimeError(f"SQS refused {len(failed)} of {len(batch)} work messages: "
                           f"{first.get('Code')}: {first.get('Message')}")
    return len(batch)


# ---- the consumer side: one invocation's work messages ------------------------------------------------


@dataclass
class WorkResult:
    report: IngestReport = field(default_factory=IngestReport)
    failed: set[str] = field(default_factory=set)  # message ids to hand back to the queue
    embedded: dict[str, list[str]] = field(default_factory=dict)  # collection -> keys given a live vector


def run(ingestor: Ingestor, messages: Mapping[str, WorkMessage]) -> WorkResult:
    """Do the embed, reembed and fill messages of one batch, their keys grouped per collection (and target
    model) so the model sees full batches; a message fails when any of its keys must be retried (a fill: when
    it met an outage)."""
    result = WorkResult()
    groups: dict[tuple[str, str, str | None], list[str]] = {}
    for message_id, message in messages.items():
        groups.setdefault((message.job, message.collection, message.model), []).append(message_id)
    for (job, collection, model), ids in groups.items():
        keys = list(dict.fromkeys(key for message_id in ids for key in messages[message_id].keys))
        try:
            if job == "fill":
                filled, compared = fill_keys(ingestor, ingestor.catalog.get_collection(collection), keys)
                log.info("filled %d row(s) of %s, neighbours of %d", filled, collection, compared)
                continue
            if job == "reembed":
                assert model is not None
                report = model_move.reembed_keys(ingestor, collection, keys, model)
            else:
                report = ingestor.process_work(collection, keys)
        except UnknownCollection as exc:  # retrying cannot make it exist: dropped loudly
            log.error("dropping %d %s message(s): %s", len(ids), job, exc)
            continue
        except TRANSIENT_ERRORS as exc:
            log.warning("%d %s message(s) of %s come back later: %s", len(ids), job, collection, exc)
            result.failed.update(ids)
            continue
        result.report.outcomes.extend(report.outcomes)
        result.report.errors.update(report.errors)
        retry = {key for _, key in report.errors}
        result.failed.update(i for i in ids if retry.intersection(messages[i].keys))
        if job == "embed":
            result.embedded.setdefault(collection, []).extend(report.keys("embedded"))
    return result


def send_ocr(settings: Settings, embedded: Mapping[str, Sequence[str]], queues: Callable[[str], Any]) -> int:
    """The pictures just embedded, as OCR work on IB_OCR_QUEUE_URL (when OCR is on and the queue is set)."""
    return _send_stage("ocr", settings.ocr, settings.ocr_queue_url, embedded, queues)


def send_faces(settings: Settings, embedded: Mapping[str, Sequence[str]], queues: Callable[[str], Any]) -> int:
    """The pictures just embedded, as faces work on IB_FACES_QUEUE_URL (when faces are on and the queue is set)."""
    return _send_stage("faces", settings.faces, settings.faces_queue_url, embedded, queues)


def hand_off(settings: Settings, embedded: Mapping[str, Sequence[str]], queues: Callable[[str], Any]) -> int:
    """What the embed function hands on: the pictures it embedded, to the stages after embedding (OCR,
    faces); messages sent. Never fails the embedding."""
    return send_ocr(settings, embedded, queues) + send_faces(settings, embedded, queues)


def _send_stage(job: Job, enabled: bool, queue_url: str | None, embedded: Mapping[str, Sequence[str]],
                queues: Callable[[str], Any]) -> int:
    """Never fails the embedding: a lost message is caught up by the next backfill plan."""
    if not (enabled and queue_url):
        return 0
    messages = [m for collection, keys in embedded.items() if keys for m in chunks(job, collection, keys)]
    if not messages:
        return 0
    try:
        return send(queues(queue_url), queue_url, messages)
    except Exception as exc:  # the plan queues catch-up for rows still waiting
        log.warning("sending %d %s message(s) failed (the next backfill queues them): %s", len(messages), job, exc)
        return 0
