"""`image-browser smoke`: after a deploy, prove the whole path works, against the real API and bucket.

    image-browser smoke --api-url URL [--bucket NAME] [--prefix P] [--api-key KEY] [--timeout S]

Checks the API answers (and takes the key), uploads a generated image under a unique key with any S3 tool's
settings (IB_S3_*: AWS, R2, MinIO, the local stack), waits until it is searchable (`similar:<key>`) and in
`/api/recent`, checks its thumbnail, deletes it and waits until the index and the thumbnail forget it. Each
step prints how long it took; the first that fails stops the run with what to check, and the test image is
deleted again.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from shared.storage import Storage

POLL_SECONDS = 1.0
HTTP_TIMEOUT_SECONDS = 30.0
RECENT_PAGE = 100
WAITING_CODES = {"unknown_key", "unknown_collection"}  # not there yet: the event is on its way


class SmokeFailed(RuntimeError):
    """A step failed; the message says what happened and what to check."""


@dataclass
class SmokeRun:
    """Where to test and how long to wait for each step."""

    api_url: str
    bucket: str
    collection: str
    storage: Storage
    api_key: str | None = None
    prefix: str = ""
    timeout: float = 180.0
    poll: float = POLL_SECONDS
    say: Callable[[str], None] = print
    key: str = ""
    uploaded_at: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        base = self.api_url.rstrip("/")
        self.api_url = base.removesuffix("/api")  # HttpApiUrl, the gallery URL or either with /api
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.key = self.key or f"{self.prefix}image-browser-smoke-{stamp}-{uuid.uuid4().hex[:8]}.jpg"

    def step(self, name: str, started: float, detail: str = "") -> None:
        self.timings[name] = round(time.monotonic() - started, 3)
        self.say(f"  ok  {name:<32} {self.timings[name]:7.1f} s  {detail}".rstrip())


def generated_image(seed: int) -> bytes:
    """A photo-sized JPEG no other upload matches: smooth colours plus seeded noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:480, 0:640]
    base = np.stack([x / 640 * 255, y / 480 * 255, (x + y) / 1120 * 255], axis=-1)
    pixels = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype("uint8")
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def api_get(client: httpx.Client, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    """(status, JSON body); a network failure is status 0 with the error as the message."""
    try:
        response = client.get(path, params=params)
    except httpx.HTTPError as exc:
        return 0, {"error": {"code": "network", "message": str(exc)}}
    try:
        body = response.json()
    except ValueError:
        body = {"error": {"code": f"http_{response.status_code}", "message": response.text[:200]}}
    return response.status_code, body if isinstance(body, dict) else {}


def error_of(body: dict[str, Any]) -> tuple[str, str]:
    error = body.get("error") or {}
    return str(error.get("code", "")), str(error.get("message", ""))


def check_api(run: SmokeRun, client: httpx.Client) -> None:
    started = time.monotonic()
    status, body = api_get(client, "/api/health")
    if status != 200:
        raise SmokeFailed(
            f"the API at {run.api_url} did not answer /api/health ({status or 'no answer'}: "
            f"{error_of(body)[1] or body}): check the URL (the stack's HttpApiUrl or GalleryUrl)"
        )
    if body.get("status") != "ok":
        raise SmokeFailed(f"the API answers but reports {body}: the database is unreachable; check the database "
                          "URL parameter and that the database accepts connections from Lambda")
    model = body.get("model", "?")
    status, body = api_get(client, "/api/collections")
    if status == 401:
        raise SmokeFailed("the API needs a key: pass --api-key (or set IB_API_KEY) with the value of the "
                          "stage's api-key parameter")
    if status != 200:
        raise SmokeFailed(f"/api/collections answered {status}: {error_of(body)[1]}")
    run.step("API answers", started, f"{run.api_url}, model {model}")


def upload(run: SmokeRun) -> None:
    started = time.monotonic()
    try:
        run.storage.put(run.bucket, run.key, generated_image(uuid.uuid4().int % 2**32), "image/jpeg")
    except Exception as exc:
        raise SmokeFailed(f"could not upload s3://{run.bucket}/{run.key}: {exc}. Check the bucket name, the "
                          "endpoint (IB_S3_ENDPOINT_URL; empty for AWS) and the credentials") from None
    run.uploaded_at = time.monotonic()
    run.step("uploaded", started, f"s3://{run.bucket}/{run.key}")


def wait_until(run: SmokeRun, check: Callable[[], str | None], failure: Callable[[str], str]) -> None:
    """Poll `check` (None: done, else what it saw) until it passes or the timeout; SmokeFailed then."""
    deadline = time.monotonic() + run.timeout
    while True:
        seen = check()
        if seen is None:
            return
        if time.monotonic() >= deadline:
            raise SmokeFailed(failure(seen))
        time.sleep(run.poll)


def similar_status(run: SmokeRun, client: httpx.Client) -> tuple[str, str]:
    """('found' | 'absent' | 'error', detail) for a `similar:<key>` search."""
    status, body = api_get(client, "/api/search", q=f"similar:{run.key}", collection=run.collection, limit=1)
    code, message = error_of(body)
    if status == 200:
        return "found", ""
    if status == 404 and code in WAITING_CODES:
        return "absent", f"{code}: {message}"
    return "error", f"{status or 'no answer'} {code}: {message}"


def recent_item(run: SmokeRun, client: httpx.Client) -> dict[str, Any] | None:
    status, body = api_get(client, "/api/recent", collection=run.collection, limit=RECENT_PAGE)
    items = body.get("items", []) if status == 200 else []
    return next((item for item in items if item.get("key") == run.key), None)


def wait_embedded(run: SmokeRun, client: httpx.Client) -> dict[str, Any]:
    started = time.monotonic()

    def searchable() -> str | None:
        state, detail = similar_status(run, client)
        if state == "error" and not detail.startswith(("503", "no answer")):
            raise SmokeFailed(f"searching for the test image failed: {detail}")
        return None if state == "found" else detail

    wait_until(run, searchable, lambda seen: (
        f"uploaded {time.monotonic() - run.uploaded_at:.0f} s ago, not embedded: check the queue's DLQ and the "
        f"embed function's logs (on R2: the r2Pull function's logs and the Cloudflare queue). Last answer: {seen}"))
    run.step("searchable by similar:", started, "after the upload")
    started = time.monotonic()
    found: dict[str, Any] = {}

    def listed() -> str | None:
        item = recent_item(run, client)
        found.update(item or {})
        return None if item else f"not among the newest {RECENT_PAGE}"

    wait_until(run, listed, lambda seen: f"searchable but not in /api/recent after {run.timeout:.0f} s ({seen})")
    run.step("in /api/recent", started)
    return found


def check_thumbnail(run: SmokeRun, item: dict[str, Any]) -> None:
    started = time.monotonic()
    url = str(httpx.URL(run.api_url + "/").join(item.get("thumbnail_url", "")))
    try:
        response = httpx.get(url, follow_redirects=True, timeout=HTTP_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        raise SmokeFailed(f"could not fetch the thumbnail at {url}: {exc}") from None
    if response.status_code != 200 or not response.content.startswith(b"RIFF"):
        raise SmokeFailed(
            f"the thumbnail of {run.key} is missing (HTTP {response.status_code} from {url.split('?')[0]}): check "
            "that the embed function may write under the thumbnail prefix, and its logs")
    run.step("thumbnail", started, f"{len(response.content):,} bytes of WebP")


def delete_and_wait(run: SmokeRun, client: httpx.Client) -> None:
    started = time.monotonic()
    run.storage.delete(run.bucket, run.key)
    run.step("deleted", started)
    started = time.monotonic()

    def forgotten() -> str | None:
        state, detail = similar_status(run, client)
        if state == "found" or recent_item(run, client):
            return "still searchable"
        # In the bucket itself (IB_THUMBNAIL_PREFIX): a CDN in front may serve a deleted thumbnail for a while.
        thumbnail_left = run.storage.head(run.bucket, run.storage.thumbnail_key(run.key))
        return None if thumbnail_left is None else "the thumbnail is still in the bucket"

    wait_until(run, forgotten, lambda seen: (
        f"deleted {time.monotonic() - started:.0f} s ago, {seen}: the delete event did not reach the index; check "
        "that the bucket's notifications include removals (s3:ObjectRemoved:* / object-delete) and the embed "
        "function's logs"))
    run.step("gone from the index", started, "thumbnail deleted too")


def smoke(run: SmokeRun) -> None:
    """Every step in order; SmokeFailed at the first that fails (the test image is deleted again)."""
    headers = {"x-api-key": run.api_key} if run.api_key else {}
    with httpx.Client(base_url=run.api_url, headers=headers, timeout=HTTP_TIMEOUT_SECONDS) as client:
        check_api(run, client)
        upload(run)
        try:
            check_thumbnail(run, wait_embedded(run, client))
        except SmokeFailed as exc:
            run.storage.delete(run.bucket, run.key)
            raise SmokeFailed(f"{exc} (the test image was deleted again)") from None
        delete_and_wait(run, client)
