"""One normaliser for every way an object event reaches us.

Shapes accepted by `parse` (each has a test in tests/unit/test_events.py):
- S3 notification delivered to Lambda directly: {"Records": [{"eventSource": "aws:s3", "s3": ...}]}
- the same inside SQS records (the body is the S3 event as a JSON string)
- S3 -> SNS -> SQS (the SQS body is the SNS envelope; its "Message" is the S3 event as JSON), and SNS direct
- EventBridge "Object Created" / "Object Deleted" from aws.s3, directly or inside SQS
- Cloudflare R2 event notifications as Queue messages: a decoded object, a push-consumer batch
  ({"messages": [{"body": ...}]}), or an HTTP-pull message whose body is base64 JSON
- s3:TestEvent, sent when notifications are configured: no events, not an error
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import unquote_plus

from shared.store.db import text_problem

Action = Literal["created", "removed"]

R2_ACTIONS: dict[str, Action] = {
    "PutObject": "created",
    "CopyObject": "created",
    "CompleteMultipartUpload": "created",
    "DeleteObject": "removed",
    "LifecycleDeletion": "removed",
}


MAX_KEY_BYTES = 1024  # S3's and R2's limit on a key, in UTF-8 bytes


def key_problem(key: str) -> str | None:
    """Why `key` cannot be an object key we catalogue (PostgreSQL refuses it, or it is over S3's
    length limit), or None when it can."""
    problem = text_problem(key)
    if problem is None and len(key.encode("utf-8")) > MAX_KEY_BYTES:
        problem = f"is {len(key.encode('utf-8')):,} bytes long; object keys are at most {MAX_KEY_BYTES:,} bytes"
    return problem


class UnsupportedEvent(ValueError):
    """The event has a shape we do not know; the message shows what was received."""


@dataclass(frozen=True)
class ObjectEvent:
    bucket: str
    key: str
    action: Action
    etag: str | None = None
    size: int | None = None
    sequencer: str | None = None
    event_time: datetime | None = None


def parse(event: Any) -> list[ObjectEvent]:
    """Turn any supported delivery shape into ObjectEvents (an empty list for a test event)."""
    if isinstance(event, (str, bytes)):
        return parse(_decode_body(event))
    if not isinstance(event, dict):
        raise UnsupportedEvent(f"expected a JSON object, got {type(event).__name__}: {_preview(event)}")
    if event.get("Event") == "s3:TestEvent":
        return []
    if "Records" in event:
        records = event["Records"]
        if not isinstance(records, list):
            raise UnsupportedEvent(f"'Records' is not a list: {_preview(event)}")
        return [parsed for record in records for parsed in parse_record(record)]
    if event.get("source") == "aws.s3" and "detail" in event:
        return _parse_eventbridge(event)
    if "action" in event and "object" in event and "bucket" in event:
        return _parse_r2(event)
    if isinstance(event.get("messages"), list):  # R2 queue batch (push consumer or HTTP pull response)
        return [parsed for message in event["messages"] for parsed in parse_record(message)]
    if event.get("Type") == "Notification" and "Message" in event:  # SNS envelope (SNS -> SQS, not raw)
        return parse(event["Message"])
    raise UnsupportedEvent(f"unknown event shape with keys {sorted(event)[:12]}: {_preview(event)}")


def parse_record(record: Any) -> list[ObjectEvent]:
    """One record of a batch: an S3 record, an SQS or SNS record wrapping an event, or a queue message."""
    if not isinstance(record, dict):
        raise UnsupportedEvent(f"expected a record object, got {type(record).__name__}: {_preview(record)}")
    if "s3" in record:
        return [_parse_s3_record(record)]
    if record.get("eventSource") == "aws:sqs" or ("body" in record and "messageId" in record):
        return parse(record["body"])
    if record.get("EventSource") == "aws:sns" and "Sns" in record:
        return parse(record["Sns"]["Message"])
    if "body" in record:  # R2 queue message: push ({"body": {...}}) or pull ({"body": "<base64>"})
        return parse(record["body"])
    raise UnsupportedEvent(f"unknown record shape with keys {sorted(record)[:12]}: {_preview(record)}")


SEQUENCER_WIDTH = 32


def sequencer_sort_key(sequencer: str) -> str:
    """S3 sequencers are hex of varying length: left-pad so string order is numeric order."""
    cleaned = sequencer.strip().upper()
    if not cleaned or any(c not in "0123456789ABCDEF" for c in cleaned):
        raise ValueError(f"sequencer is not hexadecimal: {sequencer!r}")
    return cleaned.rjust(SEQUENCER_WIDTH, "0")


def _parse_s3_record(record: dict[str, Any]) -> ObjectEvent:
    name = str(record.get("eventName", ""))
    if name.startswith("ObjectCreated:"):
        action: Action = "created"
    elif name.startswith(("ObjectRemoved:", "LifecycleExpiration:Delete")):
        action = "removed"
    else:
        raise UnsupportedEvent(f"unsupported S3 eventName {name!r}: {_preview(record)}")
    try:
        s3 = record["s3"]
        bucket = s3["bucket"]["name"]
        obj = s3["object"]
        key = unquote_plus(obj["key"])
    except (KeyError, TypeError) as exc:
        raise UnsupportedEvent(f"S3 record without {exc}: {_preview(record)}") from None
    return ObjectEvent(
        bucket=bucket,
        key=key,
        action=action,
        etag=clean_etag(obj.get("eTag") or obj.get("etag")),
        size=_int_or_none(obj.get("size")),
        sequencer=obj.get("sequencer") or None,
        event_time=_parse_time(record.get("eventTime")),
    )


def _parse_eventbridge(event: dict[str, Any]) -> list[ObjectEvent]:
    kind = event.get("detail-type")
    actions: dict[str, Action] = {"Object Created": "created", "Object Deleted": "removed"}
    if kind not in actions:
        if kind in {"Object Restore Completed", "Object Tags Added", "Object ACL Updated"}:
            return []  # metadata changes do not touch pixels
        raise UnsupportedEvent(f"unsupported EventBridge detail-type {kind!r}: {_preview(event)}")
    try:
        detail = event["detail"]
        obj = detail["object"]
        bucket = detail["bucket"]["name"]
        key = unquote_plus(obj["key"])
    except (KeyError, TypeError) as exc:
        raise UnsupportedEvent(f"EventBridge event without {exc}: {_preview(event)}") from None
    return [
        ObjectEvent(
            bucket=bucket,
            key=key,
            action=actions[kind],
            etag=clean_etag(obj.get("etag")),
            size=_int_or_none(obj.get("size")),
            sequencer=obj.get("sequencer") or None,
            event_time=_parse_time(event.get("time")),
        )
    ]


def _parse_r2(event: dict[str, Any]) -> list[ObjectEvent]:
    action = R2_ACTIONS.get(str(event.get("action")))
    if action is None:
        raise UnsupportedEvent(f"unsupported R2 action {event.get('action')!r}: {_preview(event)}")
    obj = event.get("object")
    if not isinstance(obj, dict) or not obj.get("key") or not event.get("bucket"):
        raise UnsupportedEvent(f"R2 event without bucket or object key: {_preview(event)}")
    return [
        ObjectEvent(
            bucket=str(event["bucket"]),
            key=str(obj["key"]),  # R2 keys are not URL-encoded
            action=action,
            etag=clean_etag(obj.get("eTag")),
            size=_int_or_none(obj.get("size")),
            sequencer=None,
            event_time=_parse_time(event.get("eventTime")),
        )
    ]


def _decode_body(body: str | bytes) -> Any:
    """A JSON string, or base64 of one (R2's HTTP pull API delivers bodies base64-encoded)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        decoded = base64.b64decode(text, validate=True)
        return json.loads(decoded)
    except (binascii.Error, ValueError):
        raise UnsupportedEvent(f"body is neither JSON nor base64 JSON: {_preview(text)}") from None


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def clean_etag(value: Any) -> str | None:
    """ETags without the quotes S3 puts around them (events and HEAD answers must compare equal)."""
    return str(value).strip('"') if value else None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _preview(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)[:limit + 1]
    return text if len(text) <= limit else text[:limit] + "…"
