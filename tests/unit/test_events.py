"""Every delivery shape `shared.events.parse` accepts, each with a payload as the provider documents it."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from shared.events import ObjectEvent, UnsupportedEvent, parse, sequencer_sort_key

# From the S3 docs ("Event message structure"), version 2.1.
S3_PUT_RECORD = {
    "eventVersion": "2.1",
    "eventSource": "aws:s3",
    "awsRegion": "us-west-2",
    "eventTime": "1970-01-01T00:00:00.000Z",
    "eventName": "ObjectCreated:Put",
    "userIdentity": {"principalId": "AIDAJDPLRKLG7UEXAMPLE"},
    "requestParameters": {"sourceIPAddress": "127.0.0.1"},
    "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
    "s3": {
        "s3SchemaVersion": "1.0",
        "configurationId": "testConfigRule",
        "bucket": {"name": "amzn-s3-demo-bucket", "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                   "arn": "arn:aws:s3:::amzn-s3-demo-bucket"},
        "object": {"key": "holiday+photos/d%C3%BCsseldorf+%2B+snow.jpg", "size": 1024,
                   "eTag": "d41d8cd98f00b204e9800998ecf8427e", "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
                   "sequencer": "0055AED6DCD90281E5"},
    },
}
S3_DELETE_RECORD = {
    **S3_PUT_RECORD,
    "eventName": "ObjectRemoved:Delete",
    "s3": {**S3_PUT_RECORD["s3"], "object": {"key": "old.png", "sequencer": "0055AED6DCD90281E6"}},
}
S3_EVENT = {"Records": [S3_PUT_RECORD, S3_DELETE_RECORD]}

S3_TEST_EVENT = {
    "Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2014-10-13T15:57:02.089Z",
    "Bucket": "amzn-s3-demo-bucket", "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
}


def sqs_record(body: str, message_id: str = "059f36b4-87a3-44ab-83d2-661975830a7d") -> dict:
    """An SQS record as Lambda delivers it (from the Lambda SQS docs)."""
    return {
        "messageId": message_id,
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1545082649183",
                       "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1545082649185"},
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
        "awsRegion": "us-east-2",
    }


def sns_envelope(message: str) -> dict:
    """The SNS notification JSON that SQS receives from a subscription without raw delivery."""
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic",
        "Subject": "Amazon S3 Notification",
        "Message": message,
        "Timestamp": "2012-05-02T00:54:06.655Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEw6JRN...",
        "SigningCertURL": "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
        "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=...",
    }


# From the EventBridge S3 docs ("Object Created").
EVENTBRIDGE_CREATED = {
    "version": "0",
    "id": "17793124-05d4-b198-2fde-7ededc63b103",
    "detail-type": "Object Created",
    "source": "aws.s3",
    "account": "111122223333",
    "time": "2021-11-12T00:00:00Z",
    "region": "ca-central-1",
    "resources": ["arn:aws:s3:::amzn-s3-demo-bucket1"],
    "detail": {
        "version": "0",
        "bucket": {"name": "amzn-s3-demo-bucket1"},
        "object": {"key": "example-key", "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184",
                   "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "sequencer": "617f08299329d189"},
        "request-id": "N4N7GDK58NMKJ12R",
        "requester": "123456789012",
        "source-ip-address": "1.2.3.4",
        "reason": "PutObject",
    },
}
EVENTBRIDGE_DELETED = {
    **EVENTBRIDGE_CREATED,
    "detail-type": "Object Deleted",
    "detail": {
        "version": "0",
        "bucket": {"name": "amzn-s3-demo-bucket1"},
        "object": {"key": "example-key", "etag": "d41d8cd98f00b204e9800998ecf8427e",
                   "version-id": "1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF", "sequencer": "617f0837b476e463"},
        "request-id": "0BH729840619AG5K",
        "requester": "123456789012",
        "source-ip-address": "1.2.3.4",
        "reason": "DeleteObject",
        "deletion-type": "Delete Marker Created",
    },
}

# From the Cloudflare R2 event notification docs (message format).
R2_PUT = {
    "account": "3f4b7e3dcab231cbfdaa90a6a28bd548",
    "action": "PutObject",
    "bucket": "my-bucket",
    "object": {"key": "my-new-object + ü.jpg", "size": 65536, "eTag": "c846ff7a18f28c2e262116d6e8719ef0"},
    "eventTime": "2024-05-24T19:36:44.379Z",
}
R2_COPY = {**R2_PUT, "action": "CopyObject", "copySource": {"bucket": "my-bucket", "object": "src.jpg"}}
R2_DELETE = {
    "account": "3f4b7e3dcab231cbfdaa90a6a28bd548",
    "action": "DeleteObject",
    "bucket": "my-bucket",
    "object": {"key": "gone.jpg"},
    "eventTime": "2024-05-24T19:37:00.000Z",
}


def test_s3_direct_decodes_keys_and_fields() -> None:
    put, delete = parse(S3_EVENT)
    assert put == ObjectEvent(
        bucket="amzn-s3-demo-bucket",
        key="holiday photos/düsseldorf + snow.jpg",
        action="created",
        etag="d41d8cd98f00b204e9800998ecf8427e",
        size=1024,
        sequencer="0055AED6DCD90281E5",
        event_time=datetime(1970, 1, 1, tzinfo=UTC),
    )
    assert (delete.action, delete.key, delete.etag, delete.size) == ("removed", "old.png", None, None)


def test_s3_multipart_and_lifecycle_names() -> None:
    multipart = {**S3_PUT_RECORD, "eventName": "ObjectCreated:CompleteMultipartUpload"}
    multipart["s3"] = {**S3_PUT_RECORD["s3"], "object": {**S3_PUT_RECORD["s3"]["object"], "eTag": "abc-12"}}
    expired = {**S3_DELETE_RECORD, "eventName": "LifecycleExpiration:Delete"}
    created, removed = parse({"Records": [multipart, expired]})
    assert (created.action, created.etag) == ("created", "abc-12")
    assert removed.action == "removed"


def test_s3_inside_sqs() -> None:
    events = parse({"Records": [sqs_record(json.dumps(S3_EVENT))]})
    assert [e.action for e in events] == ["created", "removed"]
    assert events[0].key == "holiday photos/düsseldorf + snow.jpg"


def test_s3_through_sns_into_sqs() -> None:
    events = parse({"Records": [sqs_record(json.dumps(sns_envelope(json.dumps(S3_EVENT))))]})
    assert [e.key for e in events] == ["holiday photos/düsseldorf + snow.jpg", "old.png"]


def test_sns_record_delivered_to_lambda() -> None:
    record = {"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": sns_envelope(json.dumps(S3_EVENT))}
    assert len(parse({"Records": [record]})) == 2


def test_test_event_yields_nothing_directly_in_sqs_and_in_sns() -> None:
    assert parse(S3_TEST_EVENT) == []
    assert parse({"Records": [sqs_record(json.dumps(S3_TEST_EVENT))]}) == []
    assert parse({"Records": [sqs_record(json.dumps(sns_envelope(json.dumps(S3_TEST_EVENT))))]}) == []


def test_eventbridge_direct_and_in_sqs() -> None:
    (created,) = parse(EVENTBRIDGE_CREATED)
    assert created == ObjectEvent(
        "amzn-s3-demo-bucket1", "example-key", "created", "b1946ac92492d2347c6235b4d2611184", 5,
        "617f08299329d189", datetime(2021, 11, 12, tzinfo=UTC),
    )
    (deleted,) = parse({"Records": [sqs_record(json.dumps(EVENTBRIDGE_DELETED))]})
    assert (deleted.action, deleted.sequencer) == ("removed", "617f0837b476e463")
    assert sequencer_sort_key(deleted.sequencer) > sequencer_sort_key(created.sequencer)  # the delete is newer


def test_r2_decoded_object_keeps_key_unencoded() -> None:
    (put,) = parse(R2_PUT)
    assert put.key == "my-new-object + ü.jpg"  # R2 keys are not URL-encoded: no unquote_plus
    assert (put.bucket, put.action, put.size, put.etag, put.sequencer) == (
        "my-bucket", "created", 65536, "c846ff7a18f28c2e262116d6e8719ef0", None)
    assert parse(R2_COPY)[0].action == "created"
    assert parse({**R2_PUT, "action": "CompleteMultipartUpload"})[0].action == "created"
    (gone,) = parse(R2_DELETE)
    assert (gone.action, gone.etag, gone.size) == ("removed", None, None)
    assert parse({**R2_DELETE, "action": "LifecycleDeletion"})[0].action == "removed"


def test_r2_http_pull_base64_bodies() -> None:
    """The Queues HTTP pull API returns messages whose body is base64 of the JSON."""
    pulled = {
        "messages": [
            {"body": base64.b64encode(json.dumps(R2_PUT).encode()).decode(), "id": "m1",
             "timestamp_ms": 1716579404379, "attempts": 1, "lease_id": "lease-1"},
            {"body": base64.b64encode(json.dumps(R2_DELETE).encode()).decode(), "id": "m2",
             "timestamp_ms": 1716579420000, "attempts": 2, "lease_id": "lease-2"},
        ]
    }
    events = parse(pulled)
    assert [(e.key, e.action) for e in events] == [("my-new-object + ü.jpg", "created"), ("gone.jpg", "removed")]


def test_r2_push_consumer_batch() -> None:
    batch = {"queue": "image-events", "messages": [{"id": "a", "timestamp": "2024-05-24T19:36:44Z", "body": R2_PUT}]}
    assert parse(batch)[0].key == "my-new-object + ü.jpg"


def test_moto_style_record_without_sequencer_is_ordered_by_time() -> None:
    record = {**S3_PUT_RECORD, "eventTime": "2026-01-01T00:00:02.000Z"}
    record["s3"] = {**S3_PUT_RECORD["s3"], "object": {"key": "a%2Fb%2Fc+d.jpg", "size": 3, "eTag": '"x"'}}
    older = {**record, "eventTime": "2026-01-01T00:00:01.000Z"}
    new, old = parse({"Records": [record, older]})
    assert new.key == "a/b/c d.jpg" and new.etag == "x" and new.sequencer is None
    assert new.event_time > old.event_time  # without sequencers, the event time orders them


def test_sequencer_order_pads_before_comparing() -> None:
    assert sequencer_sort_key("FF") < sequencer_sort_key("0100")
    assert sequencer_sort_key("0055AED6DCD90281E5") < sequencer_sort_key("55AED6DCD90281E6")
    assert sequencer_sort_key("0A") == sequencer_sort_key("A")
    with pytest.raises(ValueError):
        sequencer_sort_key("not-hex")


@pytest.mark.parametrize(
    "event",
    [
        {"hello": "world"},
        {"Records": [{"eventSource": "aws:dynamodb", "dynamodb": {}}]},
        {"Records": [{**S3_PUT_RECORD, "eventName": "ObjectTagging:Put"}]},
        {**R2_PUT, "action": "PutBucketPolicy"},
        {"Records": [sqs_record("not json at all")]},
        {"Records": "nope"},
        [1, 2],
    ],
)
def test_unknown_shapes_raise_with_what_was_received(event: object) -> None:
    with pytest.raises(UnsupportedEvent) as err:
        parse(event)
    assert isinstance(err.value, ValueError)
    assert len(str(err.value)) > 20
