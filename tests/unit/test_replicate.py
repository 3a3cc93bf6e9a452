"""Replicate backend against a local server on 127.0.0.1 that plays Replicate's HTTP API.

Never the real service. Sleeps are recorded instead of slept, so backoff is asserted exactly and fast.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from shared.config import load_settings
from shared.embedders import EmbedderError, EmbedderTemporaryError
from shared.embedders.replicate import ReplicateEmbedder, parse_retry_after

VERSION = "v-test-123"


class FakeReplicate:
    """Serves /v1/models/... and /v1/predictions; `failures` are returned, in order, before successes."""

    def __init__(self) -> None:
        self.failures: list[tuple[int, dict[str, str]]] = []
        self.requests: list[tuple[str, str, dict]] = []
        self.authorizations: set[str] = set()
        self.active = 0
        self.max_active = 0
        self.delay = 0.0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path, {}))
                if self.path == "/v1/models/krthr/clip-embeddings":
                    self._send(
                        200,
                        {
                            "url": "https://replicate.com/krthr/clip-embeddings",
                            "owner": "krthr",
                            "name": "clip-embeddings",
                            "visibility": "public",
                            "run_count": 1,
                            "latest_version": {
                                "id": VERSION,
                                "created_at": "2024-01-01T00:00:00Z",
                                "cog_version": "0.9",
                                "openapi_schema": {},
                            },
                        },
                    )
                else:
                    self._send(404, {"title": "Not found", "status": 404})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.authorizations.add(self.headers.get("Authorization", ""))
                with fake.lock:
                    fake.requests.append(("POST", self.path, body))
                    failure = fake.failures.pop(0) if fake.failures else None
                    fake.active += 1
                    fake.max_active = max(fake.max_active, fake.active)
                if not failure:
                    time.sleep(fake.delay)  # lets concurrent predictions overlap
                # Done before answering: once the client has the answer it may start the next one.
                with fake.lock:
                    fake.active -= 1
                if failure:
                    status, headers = failure
                    self._send(status, {"title": "error", "detail": f"fake {status}", "status": status}, headers)
                    return
                self._send(201, fake.prediction(body))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def prediction(self, body: dict) -> dict:
        value = body["input"].get("text") or body["input"].get("image", "")
        seed = sum(value.encode()) % 1000  # a deterministic vector per input
        embedding = np.random.default_rng(seed).normal(size=768).tolist()
        return {
            "id": f"p{len(self.requests)}",
            "model": "krthr/clip-embeddings",
            "version": body["version"],
            "status": "succeeded",
            "input": body["input"],
            "output": {"embedding": embedding},
            "logs": "",
            "error": None,
            "metrics": {},
            "created_at": "2024-01-01T00:00:00Z",
        }

    def posts(self) -> list[dict]:
        return [body for method, _, body in self.requests if method == "POST"]


@pytest.fixture()
def fake() -> Iterator[FakeReplicate]:
    server = FakeReplicate()
    thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def make(fake: FakeReplicate, concurrency: int = 4, spec: str = "krthr/clip-embeddings") -> tuple:
    sleeps: list[float] = []
    settings = load_settings(
        replicate_api_token="r8_test", replicate_base_url=fake.url, replicate_concurrency=concurrency
    )
    embedder = ReplicateEmbedder(spec, settings, sleep=sleeps.append, rng=random.Random(7))
    return embedder, sleeps


def test_text_and_image_embeddings(fake: FakeReplicate) -> None:
    embedder, sleeps = make(fake)
    assert embedder.dim == 768 and embedder.model_id == "replicate:krthr/clip-embeddings"
    texts = embedder.embed_texts(["a dog", "a cat"])
    images = embedder.embed_images([Image.new("RGB", (1200, 900), (200, 10, 10))])
    assert texts.shape == (2, 768) and images.shape == (1, 768)
    assert texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(np.vstack([texts, images]), axis=1), 1.0, atol=1e-5)
    posts = fake.posts()
    assert {p["version"] for p in posts} == {VERSION}  # latest version looked up once
    assert sum(1 for m, path, _ in fake.requests if path.startswith("/v1/models")) == 1
    image_input = next(p["input"]["image"] for p in posts if "image" in p["input"])
    assert image_input.startswith("data:image/jpeg;base64,")
    assert fake.authorizations == {"Bearer r8_test"}
    assert sleeps == []


def test_explicit_version_skips_the_lookup(fake: FakeReplicate) -> None:
    embedder, _ = make(fake, spec="krthr/clip-embeddings:abc")
    embedder.embed_texts(["x"])
    assert [method for method, _, _ in fake.requests] == ["POST"]
    assert fake.posts()[0]["version"] == "abc"


def test_burst_of_429_and_503_is_retried_with_backoff(fake: FakeReplicate) -> None:
    embedder, sleeps = make(fake)
    embedder.version()
    fake.failures = [(429, {}), (503, {}), (429, {}), (502, {})]
    vector = embedder.embed_texts(["retried"])
    assert vector.shape == (1, 768)
    assert len(fake.posts()) == 5
    assert len(sleeps) == 4
    for slept, base in zip(sleeps, [0.5, 1.0, 2.0, 4.0], strict=True):
        assert base * 0.8 <= slept <= base * 1.2  # exponential, with jitter


def test_retry_after_is_honoured(fake: FakeReplicate) -> None:
    embedder, sleeps = make(fake)
    embedder.version()
    fake.failures = [(429, {"Retry-After": "3"}), (429, {"Retry-After": "0"})]
    embedder.embed_texts(["patient"])
    assert sleeps[0] == pytest.approx(3.0)  # longer than the 0.5 s backoff: the server wins
    assert 0.8 <= sleeps[1] <= 1.2  # a shorter Retry-After never shortens our backoff


def test_gives_up_with_a_temporary_error(fake: FakeReplicate) -> None:
    embedder, sleeps = make(fake)
    embedder.version()
    fake.failures = [(503, {})] * 10
    with pytest.raises(EmbedderTemporaryError, match="try again later"):
        embedder.embed_texts(["down"])
    assert len(sleeps) == 4
    assert len(fake.posts()) == 5


def test_client_errors_are_permanent(fake: FakeReplicate) -> None:
    embedder, sleeps = make(fake)
    embedder.version()
    fake.failures = [(422, {})]
    with pytest.raises(EmbedderError, match="422"):
        embedder.embed_texts(["bad input"])
    fake.failures = [(401, {})]
    with pytest.raises(EmbedderError, match="IB_REPLICATE_API_TOKEN"):
        embedder.embed_texts(["bad token"])
    assert sleeps == []


def test_concurrency_is_bounded(fake: FakeReplicate) -> None:
    embedder, _ = make(fake, concurrency=2)
    fake.delay = 0.05
    vectors = embedder.embed_texts([f"text {i}" for i in range(8)])
    assert vectors.shape == (8, 768)
    assert fake.max_active <= 2
    assert fake.max_active == 2  # and the pool does run predictions in parallel


def test_missing_token_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    with pytest.raises(EmbedderError, match="IB_REPLICATE_API_TOKEN"):
        ReplicateEmbedder("krthr/clip-embeddings", load_settings(replicate_api_token=None))


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
