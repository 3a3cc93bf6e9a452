"""The Cloudflare Queues pull client and the r2_pull handler, against a local server playing the API."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.config import get_settings
from shared.dev.sqs_poller import LocalContext
from shared.events import ObjectEvent, parse
from shared.ingest.r2_queue import QueueError, QueueUnavailable, R2QueueClient

ACCOUNT = "acc123"
QUEUE = "q456"
TOKEN = "cf-token"


def r2_body(key: str, action: str = "PutObject") -> str:
    """An R2 event notification as the pull API delivers it: base64 of the JSON."""
    event = {
        "account": ACCOUNT,
        "action": action,
        "bucket": "photos",
        "object": {"key": key, "size": 1234, "eTag": "abc"},
        "eventTime": "2026-01-02T03:04:05Z",
    }
    return base64.b64encode(json.dumps(event).encode()).decode()


@dataclass
class FakeQueue:
    """In-memory Cloudflare Queue: leased messages are invisible until acked, retried or expired."""

    visible: list[dict[str, Any]] = field(default_factory=list)
    leased: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    fail_with: int | None = None
    next_lease: int = 0

    def add(self, body: str) -> None:
        self.visible.append({"id": f"m{len(self.visible) + len(self.leased)}", "body": body, "attempts": 0})

    def pull(self, batch_size: int) -> list[dict[str, Any]]:
        batch, self.visible = self.visible[:batch_size], self.visible[batch_size:]
        out = []
        for message in batch:
            self.next_lease += 1
            lease = f"lease-{self.next_lease}"
            message["attempts"] += 1
            self.leased[lease] = message
            out.append({**message, "lease_id": lease, "timestamp_ms": 1700000000000, "metadata": {}})
        return out

    def ack(self, acks: list[dict[str, Any]], retries: list[dict[str, Any]]) -> dict[str, Any]:
        for item in acks:
            self.leased.pop(item["lease_id"])
        for item in retries:
            self.visible.append(self.leased.pop(item["lease_id"]))
        return {"ackCount": len(acks), "retryCount": len(retries), "warnings": []}


@pytest.fixture()
def cloudflare() -> Iterator[tuple[str, FakeQueue]]:
    queue = FakeQueue()
    prefix = f"/client/v4/accounts/{ACCOUNT}/queues/{QUEUE}/messages"

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            queue.requests.append((self.path, payload, dict(self.headers)))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(403, {"success": False, "errors": [{"code": 10000, "message": "Auth"}]})
            if queue.fail_with:
                return self._send(queue.fail_with, {"success": False, "errors": [{"code": 1, "message": "x"}]})
            if self.path == prefix + "/pull":
                result: Any = {"messages": queue.pull(payload["batch_size"]), "message_backlog_count": 0}
            elif self.path == prefix + "/ack":
                result = queue.ack(payload.get("acks", []), payload.get("retries", []))
            else:
                return self._send(404, {"success": False, "errors": [{"code": 7003, "message": "No route"}]})
            self._send(200, {"success": True, "errors": [], "messages": [], "result": result})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/client/v4", queue
    server.shutdown()
    server.server_close()


def client(base_url: str, token: str = TOKEN, queue_id: str = QUEUE) -> R2QueueClient:
    return R2QueueClient(ACCOUNT, queue_id, token, base_url=base_url, timeout_seconds=5)


def test_pull_leases_messages_and_ack_deletes_them(cloudflare: tuple[str, FakeQueue]) -> None:
    base_url, queue = cloudflare
    for key in ("a.jpg", "b.jpg", "c.jpg"):
        queue.add(r2_body(key))
    with client(base_url) as cf:
        messages = cf.pull(batch_size=2, visibility_timeout_ms=90_000)
        assert [m.lease_id for m in messages] == ["lease-1", "lease-2"]
        assert [parse(m.body)[0].key for m in messages] == ["a.jpg", "b.jpg"]
        assert parse(messages[0].body)[0] == ObjectEvent(
            bucket="photos",
            key="a.jpg",
            action="created",
            etag="abc",
            size=1234,
            event_time=parse(messages[0].body)[0].event_time,
        )
        path, payload, headers = queue.requests[0]
        assert payload == {"batch_size": 2, "visibility_timeout_ms": 90_000}
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        result = cf.ack([messages[0].lease_id], [messages[1].lease_id], retry_delay_seconds=7)
    assert (result.acked, result.retried) == (1, 1)
    assert queue.requests[-1][1] == {
        "acks": [{"lease_id": "lease-1"}],
        "retries": [{"lease_id": "lease-2", "delay_seconds": 7}],
    }
    # a.jpg is gone; b.jpg is back (second attempt) behind c.jpg
    assert [(m["body"], m["attempts"]) for m in queue.visible] == [(r2_body("c.jpg"), 0), (r2_body("b.jpg"), 1)]
    assert queue.leased == {}


def test_empty_queue_and_empty_ack(cloudflare: tuple[str, FakeQueue]) -> None:
    base_url, queue = cloudflare
    with client(base_url) as cf:
        assert cf.pull() == []
        assert cf.ack([], []).acked == 0
    assert len(queue.requests) == 1  # an empty ack sends nothing


def test_errors_say_what_to_fix(cloudflare: tuple[str, FakeQueue]) -> None:
    base_url, queue = cloudflare
    with pytest.raises(QueueError, match="Queues Edit"):
        client(base_url, token="wrong").pull()
    with pytest.raises(QueueError, match="wrangler queues consumer http add"):
        client(base_url, queue_id="nope").pull()
    queue.fail_with = 503
    with pytest.raises(QueueUnavailable, match="503"):
        client(base_url).pull()
    with pytest.raises(ValueError, match="batch_size"):
        client(base_url).pull(batch_size=101)
    with pytest.raises(QueueError, match="IB_R2_QUEUE_ID, IB_CLOUDFLARE_API_TOKEN"):
        R2QueueClient(ACCOUNT, "", "")


def test_unreachable_api_is_transient() -> None:
    with pytest.raises(QueueUnavailable, match="cannot reach"):
        client("http://127.0.0.1:9/client/v4").pull()


def test_r2_pull_acks_ingested_retries_failed(
    cloudflare: tuple[str, FakeQueue], monkeypatch: pytest.MonkeyPatch
) -> None:
    import functions.r2_pull as r2_pull

    base_url, queue = cloudflare
    for key in ("ok1.jpg", "flaky.jpg", "ok2.jpg"):
        queue.add(r2_body(key))
    queue.add(base64.b64encode(b"not json").decode())
    seen: list[str] = []

    def fake_ingest(events: list[ObjectEvent]) -> None:
        seen.extend(e.key for e in events)
        if any(e.key == "flaky.jpg" for e in events):
            raise RuntimeError("database busy")

    monkeypatch.setattr(r2_pull, "ingest_events", fake_ingest)
    for name, value in {
        "IB_R2_ACCOUNT_ID": ACCOUNT,
        "IB_R2_QUEUE_ID": QUEUE,
        "IB_CLOUDFLARE_API_TOKEN": TOKEN,
        "IB_CLOUDFLARE_API_URL": base_url,
        "IB_R2_PULL_BATCH_SIZE": "10",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        totals = r2_pull.handler({}, LocalContext("r2Pull", timeout_seconds=300))
    finally:
        get_settings.cache_clear()
    assert seen == ["ok1.jpg", "flaky.jpg", "ok2.jpg"]
    assert totals == {"pulled": 4, "acked": 3, "retried": 1, "malformed": 1}
    # only the failed message is back in the queue, with its attempt counted
    assert [(m["body"], m["attempts"]) for m in queue.visible] == [(r2_body("flaky.jpg"), 1)]
    ack_payload = queue.requests[-1][1]
    assert ack_payload["retries"] == [{"lease_id": "lease-2", "delay_seconds": r2_pull.RETRY_DELAY_SECONDS}]
