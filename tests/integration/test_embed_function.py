"""End to end with real parts: moto S3 -> bucket notifications -> SQS -> poller -> functions.embed.handler
-> embedded PostgreSQL + pgvector, with the tiny test model. After every scenario the catalog is
reconciled with the bucket: embedded keys == image keys in the bucket, one thumbnail per embedded key.

These run on the dynamic-batch test model only: what a fixed-batch export changes (one image per model call)
is below the handler, and tests/integration/test_ingest.py runs the pipeline on both.
"""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pg8000.native
import pytest

from functions import backfill as backfill_function
from functions import embed as embed_function
from shared import runtime
from shared.dev.local_services import MotoServer, aws_client, wire_bucket_to_queue
from shared.dev.sqs_poller import LocalContext, SqsPoller
from shared.events import ObjectEvent
from shared.images import decode, is_image_key
from shared.ingest import pipeline, work
from shared.ingest.backfill import plan
from shared.ingest.pipeline import Ingestor, IngestReport
from shared.jobs import Deadline
from shared.store import plans, queries
from shared.store.catalog import Catalog, Collection
from shared.store.db import DatabaseUnavailable, connect_params, quote_ident
from tests.fixtures.model import synthetic_photo
from tests.fixtures.services import embedded_keys, unique_name

THUMBS = ".thumbnails/"


def jpeg(seed: int, size: tuple[int, int] = (96, 72), fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    synthetic_photo(*size, seed=seed).save(out, format=fmt)
    return out.getvalue()


@dataclass
class Stack:
    bucket: str
    queue_url: str
    s3: Any
    sqs: Any
    poller: SqsPoller
    endpoint: str

    @property
    def ingestor(self) -> Ingestor:
        return runtime.ingestor()

    @property
    def catalog(self) -> Catalog:
        return runtime.catalog()

    @property
    def collection(self) -> Collection:
        return self.ingestor.collection_for(self.bucket)

    def put(self, key: str, data: bytes, content_type: str = "image/jpeg") -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def bucket_keys(self) -> set[str]:
        keys: set[str] = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            keys.update(item["Key"] for item in page.get("Contents", []))
        return keys

    def status(self, key: str) -> str | None:
        row = queries.get_row(self.catalog, self.collection, key)
        return row.status if row else None

    def assert_reconciled(self) -> None:
        """Embedded keys == image keys in the bucket; one thumbnail per embedded key; nothing pending."""
        objects = self.bucket_keys()
        images = {k for k in objects if not k.startswith(THUMBS) and is_image_key(k)}
        thumbs = {k for k in objects if k.startswith(THUMBS)}
        embedded = embedded_keys(self.catalog, self.collection)
        assert embedded == images, f"missing: {images - embedded}, extra: {embedded - images}"
        assert thumbs == {f"{THUMBS}{k}.webp" for k in embedded}
        assert queries.counts(self.catalog, self.collection)["pending"] == 0

    def search_top(self, image_bytes: bytes) -> tuple[str, float]:
        """Nearest row to an image, by pgvector inner product over the collection's HNSW index."""
        vector = self.ingestor.embedder.embed_images([decode(image_bytes, max_pixels=10**8, max_bytes=10**8)])[0]
        literal = "[" + ",".join(f"{v:.6g}" for v in vector.tolist()) + "]"
        table = quote_ident(self.collection.table)
        ((key, score),) = self.catalog.db.run(
            f"SELECT key, -(embedding <#> CAST(:q AS halfvec)) FROM {table} WHERE embedding IS NOT NULL "
            "ORDER BY embedding <#> CAST(:q AS halfvec) LIMIT 1",
            q=literal,
        )
        return key, float(score)

    def raw_messages(self, expected: int) -> list[dict[str, Any]]:
        """Take messages off the queue without handling them (to replay them in another order)."""
        got: list[dict[str, Any]] = []
        for _ in range(20):
            response = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in response.get("Messages", []):
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                got.append(message)
            if len(got) >= expected:
                break
        return got


@pytest.fixture(scope="module")
def stack(moto_server: MotoServer, pg_url: str, test_model_dir: Path) -> Iterator[Stack]:
    bucket = unique_name("e2e")
    queue_url = wire_bucket_to_queue(moto_server.endpoint, bucket, bucket + "-events")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "IB_DATABASE_URL": pg_url, "IB_S3_ENDPOINT_URL": moto_server.endpoint, "IB_S3_ACCESS_KEY_ID": "test",
            "IB_S3_SECRET_ACCESS_KEY": "test", "IB_BUCKET": bucket, "IB_MODEL": str(test_model_dir),
            "IB_EMBED_BATCH_SIZE": "4", "IB_THUMBNAIL_SIZE": "48",
        }.items():
            mp.setenv(name, value)
        runtime.reset()
        sqs = aws_client("sqs", moto_server.endpoint)
        poller = SqsPoller(sqs, queue_url, embed_function.handler, batch_size=10, visibility_timeout=1)
        s3 = aws_client("s3", moto_server.endpoint)
        stack = Stack(bucket, queue_url, s3, sqs, poller, moto_server.endpoint)
        stack.poller.drain()  # the s3:TestEvent
        yield stack
        runtime.reset()


@pytest.fixture()
def embed_calls(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times each key went through the model."""
    calls: Counter[str] = Counter()
    ingestor = stack.ingestor
    original = ingestor._embed_batch

    def counting(batch: list[Any], *args: Any) -> None:
        calls.update(p.item.key for p in batch)
        original(batch, *args)

    monkeypatch.setattr(ingestor, "_embed_batch", counting)
    return calls


def test_good_and_corrupt_images_in_one_batch(stack: Stack) -> None:
    good = {f"mix/good-{i}.jpg": jpeg(i) for i in range(5)}
    good["mix/good.png"] = jpeg(50, fmt="PNG")
    bad = {
        "mix/corrupt.jpg": b"\xff\xd8\xff\xe0" + b"\x00garbage" * 20,
        "mix/truncated.jpg": jpeg(60, (400, 300))[:300],
        "mix/text-pretending.png": b"hello, I am not a picture",
    }
    for key, data in {**good, **bad}.items():
        stack.put(key, data)
    stack.put("mix/notes.txt", b"not an image", "text/plain")
    stats = stack.poller.drain()
    assert stats.invocations >= 1
    for key in good:
        row = queries.get_row(stack.catalog, stack.collection, key)
        assert row is not None and row.status == "embedded" and row.has_embedding
        assert (row.width, row.height) == ((96, 72))
        assert row.etag == stack.s3.head_object(Bucket=stack.bucket, Key=key)["ETag"].strip('"')
    for key in bad:
        row = queries.get_row(stack.catalog, stack.collection, key)
        assert row is not None and row.status == "failed" and row.attempts == 1, key
        assert row.error and row.error.split(":")[0] in {"corrupt", "not_image"}
    assert queries.get_row(stack.catalog, stack.collection, "mix/notes.txt") is None  # skipped, no row
    key, score = stack.search_top(good["mix/good-3.jpg"])
    assert key == "mix/good-3.jpg" and score > 0.99
    # Failed images are image keys in the bucket: once removed, the catalog matches the bucket exactly.
    for key in bad:
        stack.delete(key)
    stack.poller.drain()
    assert all(stack.status(key) == "deleted" for key in bad)
    stack.assert_reconciled()


def test_same_event_three_times_embeds_once(stack: Stack, embed_calls: Counter[str]) -> None:
    stack.put("dup/once.jpg", jpeg(100))
    (message,) = stack.raw_messages(1)
    for _ in range(3):
        stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=message["Body"])
    stack.poller.drain()
    assert embed_calls["dup/once.jpg"] == 1
    assert stack.status("dup/once.jpg") == "embedded"
    stack.assert_reconciled()


def test_delete_racing_create(stack: Stack) -> None:
    # In order: the create is handled after the object is gone (skipped), then the delete tombstones.
    stack.put("race/in-order.jpg", jpeg(200))
    stack.delete("race/in-order.jpg")
    stack.poller.drain()
    assert stack.status("race/in-order.jpg") == "deleted"
    # Reversed: the delete arrives first; the older create must not bring the row back.
    stack.put("race/reversed.jpg", jpeg(201))
    stack.delete("race/reversed.jpg")
    created, removed = stack.raw_messages(2)
    assert "ObjectCreated" in created["Body"] and "ObjectRemoved" in removed["Body"]
    for message in (removed, created):
        stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=message["Body"])
    stack.poller.drain()
    assert stack.status("race/reversed.jpg") == "deleted"
    # A delete of an embedded image removes its thumbnail too.
    stack.put("race/later.jpg", jpeg(202))
    stack.poller.drain()
    assert stack.status("race/later.jpg") == "embedded"
    stack.delete("race/later.jpg")
    stack.poller.drain()
    assert stack.status("race/later.jpg") == "deleted"
    stack.assert_reconciled()


def test_awkward_keys(stack: Stack) -> None:
    keys = ["odd/with space.jpg", "odd/a+b=c&d.jpg", "odd/ünïcödé 写真 😀.jpg",
            "odd/" + "/".join(f"level{i}" for i in range(12)) + "/deep %20 file.JPG", "odd/100%.png"]
    for i, key in enumerate(keys):
        stack.put(key, jpeg(300 + i))
    stack.poller.drain()
    for key in keys:
        assert stack.status(key) == "embedded", key
    stack.assert_reconciled()


def test_database_connection_killed_mid_batch(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = stack.catalog
    ingestor = stack.ingestor
    original_batch = ingestor._embed_batch
    original_connect = catalog.db._connect
    refusals = {"left": 0}
    killed = threading.Event()

    def kill_then_embed(batch: list[Any], *args: Any) -> None:
        if not killed.is_set():
            killed.set()
            # From outside the pool: kill every other connection, and refuse reconnects for a while.
            killer = pg8000.native.Connection(**connect_params(catalog.db.url))
            killer.run(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                "AND datname = current_database() AND backend_type = 'client backend'"
            )
            killer.close()
            # More refusals than the pipeline's threads can absorb with their retries (each gets db.ATTEMPTS
            # tries): some writes really fail, and their messages must come back.
            refusals["left"] = 20
        original_batch(batch, *args)

    def flaky_connect() -> Any:
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise DatabaseUnavailable("the server is restarting (injected by the test)")
        return original_connect()

    monkeypatch.setattr(ingestor, "_embed_batch", kill_then_embed)
    monkeypatch.setattr(catalog.db, "_connect", flaky_connect)
    before_failed = stack.poller.stats.failed
    keys = [f"kill/img-{i}.jpg" for i in range(10)]
    for i, key in enumerate(keys):
        stack.put(key, jpeg(400 + i))
    stack.poller.drain()
    assert killed.is_set()
    assert stack.poller.stats.failed > before_failed  # some messages really went back to the queue
    for key in keys:
        assert stack.status(key) == "embedded", key
    stack.assert_reconciled()


def test_claims_are_given_back_once_the_database_answers_again(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A transient failure gives its claim back even while the database is still refusing for a moment, so
    the message's quick retry can claim the row again (rather than skip it as held by someone else)."""
    catalog, collection, key = stack.catalog, stack.collection, "release/img-0.jpg"
    catalog.record_event(collection, ObjectEvent(stack.bucket, key, "created", etag="e1", size=10))
    assert [k for k, _, _ in catalog.claim_keys(collection, [key], max_attempts=5)] == [key]
    report = IngestReport()
    report.retry(stack.bucket, key, "created", DatabaseUnavailable("injected"))
    original, calls, pauses = catalog.release_claims, {"n": 0}, []

    def refuse_twice(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise DatabaseUnavailable("the server is restarting (injected by the test)")
        original(*args, **kwargs)

    monkeypatch.setattr(catalog, "release_claims", refuse_twice)
    monkeypatch.setattr(pipeline.time, "sleep", pauses.append)
    stack.ingestor.release_failed(collection, report)
    assert calls["n"] == 3 and len(pauses) == 2
    assert [k for k, _, _ in catalog.claim_keys(collection, [key], max_attempts=5)] == [key]
    catalog.record_event(collection, ObjectEvent(stack.bucket, key, "deleted"))


def test_backfill_picks_up_objects_uploaded_without_events(stack: Stack) -> None:
    stack.s3.put_bucket_notification_configuration(Bucket=stack.bucket, NotificationConfiguration={})
    try:
        quiet = [f"quiet/img-{i}.jpg" for i in range(6)]
        for i, key in enumerate(quiet):
            stack.put(key, jpeg(500 + i))
        stack.put("quiet/broken.jpg", b"\xff\xd8\xff broken")
        stack.delete("odd/with space.jpg")  # a delete nobody hears about
        stack.put("kill/img-0.jpg", jpeg(999))  # an overwrite nobody hears about
        result = backfill_function.handler({"collections": [stack.bucket]}, LocalContext("backfill", 120))
    finally:
        wire_bucket_to_queue(stack.endpoint, stack.bucket, stack.bucket + "-events")
    (summary,) = result["collections"]
    assert summary["embedded"] == len(quiet) + 1 and summary["failed"] == 1
    assert summary["removed"] == 1 and summary["remaining"] == 1  # broken.jpg waits for its backoff
    assert summary["stopped_early"] is False
    assert stack.status("odd/with space.jpg") == "deleted"
    row = queries.get_row(stack.catalog, stack.collection, "kill/img-0.jpg")
    assert row is not None and row.status == "embedded"
    assert row.etag == stack.s3.head_object(Bucket=stack.bucket, Key="kill/img-0.jpg")["ETag"].strip('"')
    key, score = stack.search_top(jpeg(999))
    assert key == "kill/img-0.jpg" and score > 0.99
    # A second run finds nothing to do (idempotent); the broken image is still only failed once.
    again = backfill_function.handler({"collections": [stack.bucket]}, LocalContext("backfill", 120))
    assert again["collections"][0]["embedded"] == 0 and again["collections"][0]["added"] == 0
    stack.delete("quiet/broken.jpg")
    stack.poller.drain()
    stack.assert_reconciled()


def test_handler_accepts_direct_s3_and_eventbridge_events(stack: Stack) -> None:
    stack.put("direct/s3.jpg", jpeg(600))
    stack.put("direct/eb.jpg", jpeg(601))
    stack.raw_messages(2)  # handled below by direct invocations instead
    s3_event = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "eventTime":
                             "2026-01-01T00:00:00.000Z", "s3": {"bucket": {"name": stack.bucket},
                                                                 "object": {"key": "direct/s3.jpg"}}}]}
    eb_event = {"source": "aws.s3", "detail-type": "Object Created", "time": "2026-01-01T00:00:00Z",
                "detail": {"bucket": {"name": stack.bucket}, "object": {"key": "direct/eb.jpg"}}}
    for event in (s3_event, eb_event):
        response = embed_function.handler(json.loads(json.dumps(event)), LocalContext())
        assert response["summary"]["embedded"] == 1
    stack.poller.drain()
    stack.assert_reconciled()
    assert np.isfinite(stack.search_top(jpeg(601))[1])


def test_only_the_failing_message_is_reported_and_malformed_ones_are_dropped(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.storage import StorageUnavailable

    stack.put("partial/ok.jpg", jpeg(700))
    stack.put("partial/busy.jpg", jpeg(701))
    messages = stack.raw_messages(2)
    event = stack.poller.to_event(messages)
    event["Records"].append({**event["Records"][0], "messageId": "malformed-1", "body": "not json at all"})
    storage = runtime.storage()
    real_read = storage.read

    def busy_read(bucket: str, key: str, max_bytes: int | None = None) -> Any:
        if key == "partial/busy.jpg":
            raise StorageUnavailable("SlowDown: retry later (injected by the test)")
        return real_read(bucket, key, max_bytes)

    monkeypatch.setattr(storage, "read", busy_read)
    response = embed_function.handler(event, LocalContext())
    busy_id = next(m["MessageId"] for m in messages if "busy" in m["Body"])
    assert response == {"batchItemFailures": [{"itemIdentifier": busy_id}]}
    assert stack.status("partial/ok.jpg") == "embedded" and stack.status("partial/busy.jpg") == "pending"
    monkeypatch.setattr(storage, "read", real_read)
    stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody="not json at all")  # acknowledged, not looping
    stack.sqs.send_message(QueueUrl=stack.queue_url,
                           MessageBody=next(m["Body"] for m in messages if "busy" in m["Body"]))
    stack.poller.drain()
    assert stack.status("partial/busy.jpg") == "embedded"
    stack.assert_reconciled()


def _without_events(stack: Stack) -> None:
    stack.s3.put_bucket_notification_configuration(Bucket=stack.bucket, NotificationConfiguration={})


def test_backfill_plans_and_the_queue_does_the_work(stack: Stack, embed_calls: Counter[str]) -> None:
    stack.put("planned/gone.jpg", jpeg(700))
    stack.poller.drain()
    _without_events(stack)
    try:
        quiet = [f"planned/img-{i}.jpg" for i in range(6)]
        for i, key in enumerate(quiet):
            stack.put(key, jpeg(710 + i))
        stack.put("planned/broken.jpg", b"\xff\xd8\xff broken")
        stack.put("planned/nul\x00.jpg", jpeg(720))  # S3 takes it, PostgreSQL cannot: skipped, the page goes on
        stack.delete("planned/gone.jpg")  # a delete nobody hears about
        summary = plan(stack.ingestor, stack.bucket, queue_url=stack.queue_url)
        stack.delete("planned/nul\x00.jpg")
    finally:
        wire_bucket_to_queue(stack.endpoint, stack.bucket, stack.bucket + "-events")
    # The plan embeds nothing itself: it records the missed objects and queues them (with any row of the
    # module's earlier tests that still needs a vector).
    assert summary.added >= len(quiet) + 1 and summary.queued >= len(quiet) + 1 and summary.removed >= 1
    assert summary.listing_done and summary.messages >= 1 and summary.skipped == 1
    assert all(stack.status(key) == "pending" for key in quiet)
    assert stack.status("planned/gone.jpg") == "deleted"
    assert plans.backlog(stack.catalog, stack.collection, max_attempts=3) == {
        "queued": summary.queued, "done": 0, "per_minute": 0.0, "eta_seconds": None}
    failed_before = stack.poller.stats.failed
    assert stack.poller.drain().failed == failed_before
    assert {key: embed_calls[key] for key in quiet} == dict.fromkeys(quiet, 1)
    assert all(stack.status(key) == "embedded" for key in quiet)
    assert stack.status("planned/broken.jpg") == "failed"
    # The broken image waits for its backoff: the backlog counts the rest as done.
    backlog = plans.backlog(stack.catalog, stack.collection, max_attempts=3)
    assert backlog is not None and backlog["done"] >= len(quiet) and backlog["queued"] == summary.queued
    stack.delete("planned/broken.jpg")
    stack.poller.drain()
    assert plans.backlog(stack.catalog, stack.collection, max_attempts=3) is None  # nothing left: no block
    stack.assert_reconciled()


def test_the_plan_queues_fills_for_older_rows_and_the_queue_fills_them_without_embedding(
        stack: Stack, embed_calls: Counter[str]) -> None:
    keys = [f"older/img-{i}.jpg" for i in range(4)]
    for i, key in enumerate(keys):
        stack.put(key, jpeg(950 + i))
    stack.poller.drain()
    catalog, table = stack.catalog, quote_ident(stack.collection.table)
    vectors = dict(catalog.db.run(f"SELECT key, embedding::text FROM {table} WHERE key = ANY(:keys)", keys=keys))
    calls = {key: embed_calls[key] for key in keys}
    # As a release before this one left them: no hash, EXIF or tags read, no duplicate neighbours found.
    catalog.db.run(f"UPDATE {table} SET sha256 = NULL, tags = NULL WHERE key = ANY(:keys)", keys=keys)
    catalog.db.run(f"DELETE FROM {quote_ident(stack.collection.table + '_near')} "
                   f"WHERE id IN (SELECT id FROM {table} WHERE key = ANY(:keys))", keys=keys)
    summary = plan(stack.ingestor, stack.bucket, queue_url=stack.queue_url)
    assert summary.listing_done and summary.queued == 0 and summary.queued_fill == len(keys)
    lacking = f"SELECT count(*) FROM {table} WHERE key = ANY(:keys) AND (sha256 IS NULL OR tags IS NULL)"
    assert catalog.db.run(lacking, keys=keys) == [[len(keys)]]  # the plan queued them; it did not fill them
    failed_before = stack.poller.stats.failed
    assert stack.poller.drain().failed == failed_before
    assert catalog.db.run(lacking, keys=keys) == [[0]]
    after = dict(catalog.db.run(f"SELECT key, embedding::text FROM {table} WHERE key = ANY(:keys)", keys=keys))
    assert after == vectors and {key: embed_calls[key] for key in keys} == calls  # not embedded again
    assert plans.needing_fill(catalog, stack.collection, after_id=0, limit=1000) == []  # neighbours found too
    assert plan(stack.ingestor, stack.bucket, queue_url=stack.queue_url).queued_fill == 0


def test_keys_queued_twice_and_sent_by_events_are_embedded_once(stack: Stack, embed_calls: Counter[str]) -> None:
    keys = [f"twice/img-{i}.jpg" for i in range(8)]
    for i, key in enumerate(keys):
        stack.put(key, jpeg(800 + i))
    event_bodies = [m["Body"] for m in stack.raw_messages(len(keys))]
    assert len(event_bodies) == len(keys) and all("twice" in body for body in event_bodies)
    summary = plan(stack.ingestor, stack.bucket, queue_url=stack.queue_url)  # queues them once
    assert summary.queued >= len(keys)
    work.send(stack.sqs, stack.queue_url, work.chunks("embed", stack.bucket, keys, size=3))  # and again
    for body in event_bodies:  # and their events
        stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    failed_before = stack.poller.stats.failed
    assert stack.poller.drain().failed == failed_before
    assert {key: embed_calls[key] for key in keys} == dict.fromkeys(keys, 1)
    assert all(stack.status(key) == "embedded" for key in keys)
    stack.assert_reconciled()


def test_plan_listing_resumes_from_its_stored_token(stack: Stack) -> None:
    for i in range(5):
        stack.put(f"resume/more-{i}.jpg", jpeg(910 + i))
    stack.put("resume/kept.jpg", jpeg(900))
    stack.put("resume/gone.jpg", jpeg(901))
    stack.poller.drain()
    _without_events(stack)
    try:
        stack.delete("resume/gone.jpg")
        images = {k for k in stack.bucket_keys() if not k.startswith(THUMBS) and is_image_key(k)}
        first = plan(stack.ingestor, stack.bucket, queue_url=stack.queue_url, page_size=3,
                     deadline=Deadline(lambda: 0))  # no time left: one page, then stop
        assert first.stopped_early and not first.listing_done and first.listed <= 3  # thumbnails are listed too
        stored = plans.load(stack.catalog, stack.bucket)
        assert stored is not None and stored.listing_token
        assert stack.status("resume/gone.jpg") == "embedded"  # removals only at the listing's end
        rest = plan(stack.ingestor, stack.bucket, queue_url=stack.queue_url, page_size=3)
    finally:
        wire_bucket_to_queue(stack.endpoint, stack.bucket, stack.bucket + "-events")
    assert rest.listing_done and first.listed + rest.listed == len(images)
    assert rest.removed >= 1 and stack.status("resume/gone.jpg") == "deleted"
    assert stack.status("resume/kept.jpg") == "embedded"
    stored = plans.load(stack.catalog, stack.bucket)
    assert stored is not None and stored.listing_token is None
    stack.poller.drain()
    stack.assert_reconciled()
