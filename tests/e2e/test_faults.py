"""Faults while the local stack works, as a user of `make dev` meets them.

`python -m shared.dev.stack` runs (tests/fixtures/devstack.py) while at the same time:
- writers upload, overwrite and delete about a hundred objects with hostile keys (1,024-byte keys,
  `a` next to `a/b`, NFC and NFD spellings, `../`, `%`, `+`, `?#`, emoji), corrupt files among them;
- API clients search, browse, page, redirect and send hostile parameters;
- every database backend is terminated about once a second through a separate connection;
- halfway, the stack is killed with SIGKILL (once the bucket copy on disk has caught up) and started
  again on the same data directory and ports.

Then the catalog is reconciled with the bucket (the backfill, as `image-browser backfill` runs it) and
checked: 0 objects lost (by the restart or by the catalog), 0 ghosts, 0 answers >= 500, and every
overwritten key carrying its newest content. The figures are printed and written to
test-artifacts/faults.json.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import tempfile
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pg8000.native
import pytest

from shared.config import load_settings
from shared.embedders import load
from shared.events import MAX_KEY_BYTES
from shared.images import is_image_key
from shared.ingest.backfill import sweep
from shared.ingest.pipeline import Ingestor
from shared.storage import Storage
from shared.store import queries
from shared.store.catalog import Catalog
from shared.store.db import connect_params, quote_ident
from tests.fixtures.devstack import ARTIFACTS, Stack, start_stack
from tests.fixtures.model import png_bomb, synthetic_photo

BUCKET = "photos"
WRITERS, CLIENTS = 4, 3
FIRST_PHASE_SECONDS, SECOND_PHASE_SECONDS = 5.0, 4.0
KILL_EVERY_SECONDS = 1.0
SAME_KEY_GAP_SECONDS = 1.1  # S3 listings carry whole seconds: two writes of one key stay a second apart
CORRUPT = {
    "corrupt/truncated.jpg": lambda: photo_bytes(7, "JPEG")[:200],
    "corrupt/garbage.jpg": lambda: random.Random(1).randbytes(3000),
    "corrupt/text.png": lambda: b"hello, I am not a picture",
    "corrupt/empty.jpg": lambda: b"",
    "corrupt/header-only.webp": lambda: b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    "corrupt/bomb.png": png_bomb,
}
NOT_IMAGES = {"notes/readme.txt": b"notes", "folder/": b"", "folder/sub/": b""}
STAGES = {"IB_OCR": "true"}  # the OCR stage's queue and table meet the faults too
UNSTORABLE = ["nul/a\x00b.jpg"]  # S3 takes it, PostgreSQL cannot: kept in the bucket, recorded as failed, no row


def hostile_keys() -> list[str]:
    """About a hundred keys a filesystem or a careless URL would mangle."""
    keys = [f"plain/{i:02d}.jpg" for i in range(30)]
    keys += [f"odd/with space {i}.jpg" for i in range(6)] + [f"odd/a+b=c&d {i}.png" for i in range(6)]
    keys += [f"odd/100% {i}.jpg" for i in range(4)] + [f"odd/what?#{i}.jpg" for i in range(4)]
    for i in range(5):  # the same name in NFC and in NFD: two different keys
        keys += [unicodedata.normalize(form, f"uni/café {i}.jpg") for form in ("NFC", "NFD")]
    keys += [f"uni/写真 😀 {i}.jpg" for i in range(4)]
    keys += ["nest/a.jpg", "nest/a.jpg/b.jpg", "nest/a.jpg/b.jpg/c.jpg"]  # a key and "folders" under it
    keys += ["../up.jpg", "../../etc/passwd.jpg", "/abs/root.jpg", "a//double.jpg", "dots/./here.jpg"]
    keys += [f"deep/{'s' * 300}/{i}.jpg" for i in range(3)]  # a path segment over 255 bytes
    keys += ["long/" + "x" * (MAX_KEY_BYTES - 9) + ".jpg"]  # exactly 1,024 bytes
    keys += ["long/" + "é" * ((MAX_KEY_BYTES - 9) // 2) + ".jpg", f"long/{'ü' * 400}/{'y' * 200}.png"]
    keys += [f"mixed/{i:02d}.JPG" for i in range(10)]
    assert all(len(key.encode()) <= MAX_KEY_BYTES for key in keys) and len(set(keys)) == len(keys)
    return keys


def photo_bytes(seed: int, fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    synthetic_photo(48 + seed % 17, 36 + seed % 13, seed=seed).save(out, fmt)
    return out.getvalue()


@dataclass
class Ledger:
    """What the test wrote: each key's newest etag (None once deleted), with counts of what it did."""

    newest: dict[str, str | None] = field(default_factory=dict)
    touched: dict[str, float] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, key: str, etag: str | None, what: str) -> None:
        with self.lock:
            self.newest[key] = etag
            self.touched[key] = time.monotonic()
            self.counts[what] += 1

    def present(self) -> dict[str, str]:
        with self.lock:
            return {key: etag for key, etag in self.newest.items() if etag is not None}

    def keys(self) -> list[str]:
        with self.lock:
            return list(self.newest)


@dataclass
class Answers:
    """HTTP answers the API clients got, by status; transport errors (the stack restarting) apart."""

    statuses: Counter[int] = field(default_factory=Counter)
    unreachable: int = 0
    server_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Background:
    """Threads running `work(stop)` until stopped; their exceptions are re-raised on `stop()`."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def start(self, work: Callable[[threading.Event], None], count: int = 1) -> None:
        def run() -> None:
            try:
                work(self.stopping)
            except BaseException as exc:  # reported by stop(), in the test's own thread
                self.errors.append(exc)

        for _ in range(count):
            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)
        if self.errors:
            raise self.errors[0]


def writer(stack: Stack, keys: list[str], ledger: Ledger, seeds: Iterator[int]) -> Callable[[threading.Event], None]:
    """Create, overwrite, delete and re-create `keys` (this writer's own) until stopped."""
    s3 = stack.s3()

    def work(stop: threading.Event) -> None:
        rng = random.Random(len(keys))
        while not stop.is_set():
            key = rng.choice(keys)
            if time.monotonic() - ledger.touched.get(key, 0.0) < SAME_KEY_GAP_SECONDS:
                stop.wait(0.01)
                continue
            exists = ledger.newest.get(key) is not None
            if exists and rng.random() < 0.3:
                s3.delete_object(Bucket=BUCKET, Key=key)
                ledger.record(key, None, "deletes")
            else:
                body = photo_bytes(next(seeds), "PNG" if key.lower().endswith(".png") else "JPEG")
                etag = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
                ledger.record(key, etag, "overwrites" if exists else "uploads")

    return work


def api_client(stack: Stack, ledger: Ledger, answers: Answers) -> Callable[[threading.Event], None]:
    """Search, browse, page, redirect and a few hostile requests, counting every answer."""
    image = photo_bytes(999, "PNG")
    forged_cursor = "eyJrIjoidiIsImQiOjAuNSwiaSI6OTIyMzM3MjAzNjg1NDc3NTgwOH0"  # {"k":"v","d":0.5,"i":2**63}

    def requests(rng: random.Random, key: str) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            ("GET", "/api/recent", {"params": {"limit": 20}}),
            ("GET", "/api/search", {"params": {"q": rng.choice(["a photo", "red", "写真"]), "limit": 12}}),
            ("GET", "/api/stats", {}),
            ("GET", "/api/similar", {"params": {"key": key, "limit": 5}}),
            ("GET", f"/api/images/{BUCKET}/{quote(key, safe='')}", {}),  # %2F: no dot segment is resolved
            ("GET", "/api/search", {"params": {"q": "x", "prefix": key[:40]}}),
            ("POST", "/api/search/image", {"files": {"file": ("q.png", image, "image/png")}}),
            ("GET", "/api/search", {"params": {"q": "nul\x00here"}}),
            ("GET", "/api/search", {"params": {"q": "x", "cursor": forged_cursor}}),
            ("GET", "/api/search", {"params": {"q": "x", "min_score": "nan"}}),
        ]

    def work(stop: threading.Event) -> None:
        rng = random.Random(threading.get_ident())
        with httpx.Client(base_url=stack.api_url, timeout=30, follow_redirects=False) as client:
            while not stop.is_set():
                key = rng.choice(ledger.keys() or ["none.jpg"])
                method, path, kwargs = rng.choice(requests(rng, key))
                try:
                    response = client.request(method, path, **kwargs)
                except httpx.TransportError:  # the stack is restarting: no answer at all
                    with answers.lock:
                        answers.unreachable += 1
                    stop.wait(0.2)
                    continue
                with answers.lock:
                    answers.statuses[response.status_code] += 1
                    if response.status_code >= 500:
                        answers.server_errors.append(f"{method} {path}: {response.text[:300]}")
                stop.wait(0.02)

    return work


def database_url(stack: Stack) -> str:
    found = re.search(r"IB_DATABASE_URL='([^']+)'", stack.output())
    assert found, "the stack did not print its database URL"
    return found.group(1)


def killer(url: str, kills: Counter[str]) -> Callable[[threading.Event], None]:
    """Terminate every client backend but our own, about once a second, through a separate connection."""

    def work(stop: threading.Event) -> None:
        conn = pg8000.native.Connection(**connect_params(url))
        try:
            while not stop.wait(KILL_EVERY_SECONDS):
                ((killed,),) = conn.run(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend') AS t")
                kills["rounds"] += 1
                kills["backends"] += int(killed)
        finally:
            conn.close()

    return work


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)


def disk_copy_caught_up(data_dir: Path, ledger: Ledger) -> bool:
    """Whether the bucket copy on disk holds exactly the objects the writers left, with their etags."""
    try:
        objects = json.loads((data_dir / "s3" / "manifests" / f"{BUCKET}.json").read_bytes())["objects"]
    except (OSError, ValueError):
        return False
    on_disk = {key: entry["etag"].strip('"') for key, entry in objects.items() if not key.startswith(".thumbnails/")}
    return on_disk == ledger.present()


def stop_postgres(data_dir: Path) -> None:
    """The killed stack's handle keeps the embedded server alive after the second stack stops: stop it."""
    pid_file = data_dir / "postgres" / "postmaster.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
    except ProcessLookupError:
        return
    wait_until(lambda: not pid_file.exists(), 60, "the PostgreSQL shutdown")


def bucket_listing(stack: Stack) -> dict[str, tuple[str, int]]:
    listing = {}
    for page in stack.s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            listing[item["Key"]] = (item["ETag"].strip('"'), int(item["Size"]))
    return listing


def reconcile_and_check(stack: Stack, url: str, model_dir: Path, ledger: Ledger) -> dict[str, Any]:
    """Run the backfill as `image-browser backfill` would, then compare bucket, catalog and API."""
    settings = load_settings(database_url=url, s3_endpoint_url=stack.s3_endpoint, s3_access_key_id="test",
                             s3_secret_access_key="test", bucket=BUCKET, model=str(model_dir))
    catalog, storage = Catalog.from_url(url), Storage(settings)
    ingestor = Ingestor(settings, catalog, storage, load(str(model_dir), settings))
    sweeps: list[Any] = []

    def settled() -> bool:  # the stack's own sweep may hold some rows a moment longer: until none is pending
        sweeps.append(sweep(ingestor, BUCKET))
        return queries.counts(catalog, ingestor.collection_for(BUCKET))["pending"] == 0

    try:
        wait_until(settled, 90, "the catalog settling (no row pending)")
        table = quote_ident(catalog.get_collection(BUCKET).table)
        rows = {key: (status, etag, size) for key, status, etag, size in
                catalog.db.run(f"SELECT key, status, etag, size FROM {table} WHERE status <> 'deleted'")}
    finally:
        catalog.db.close()
    summary = sweeps[0]
    listing = bucket_listing(stack)
    images = {key: value for key, value in listing.items() if not storage.is_thumbnail(key) and is_image_key(key)
              and key not in UNSTORABLE}
    lost_by_restart = sorted(key for key, etag in ledger.present().items() if listing.get(key, ("",))[0] != etag)
    lost_by_catalog = sorted(
        key for key, (etag, size) in images.items()
        if key not in rows or rows[key][1] != etag or rows[key][0] != ("failed" if key in CORRUPT else "embedded")
        or (rows[key][0] == "embedded" and rows[key][2] != size))
    ghosts = sorted(key for key in rows if key not in images)
    searchable = recent_keys(stack)
    thumbnails = {storage.thumbnail_key(key) for key, (status, _, _) in rows.items() if status == "embedded"}
    return {
        "backfill": summary.as_dict(), "sweeps": len(sweeps), "objects_in_bucket": len(listing), "images": len(images),
        "lost_by_restart": lost_by_restart, "lost_by_catalog": lost_by_catalog, "ghosts": ghosts,
        "not_searchable": sorted(set(images) - set(CORRUPT) - searchable),
        "searchable_ghosts": sorted(searchable - set(images)),
        "not_images_kept": all(key in listing for key in [*NOT_IMAGES, *UNSTORABLE]),
        "orphan_thumbnails": sorted(key for key in listing if storage.is_thumbnail(key) and key not in thumbnails),
    }


def recent_keys(stack: Stack) -> set[str]:
    """Every key /api/recent pages through: what a user of the gallery can see."""
    keys: set[str] = set()
    cursor = None
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        while True:
            page = client.get("/api/recent", params={"limit": 100} | ({"cursor": cursor} if cursor else {})).json()
            keys.update(item["key"] for item in page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                return keys


@pytest.fixture()
def data_dir() -> Iterator[Path]:
    """Under /tmp itself, as tests/fixtures/services.py's database: the server runs as another user when
    the tests run as root, and pytest keeps its own temporary folders private."""
    with tempfile.TemporaryDirectory(prefix="ib-faults-") as tmp:
        data = Path(tmp) / "data"
        yield data
        stop_postgres(data)


def test_nothing_lost_and_nothing_500_under_faults(data_dir: Path, test_model_dir: Path) -> None:
    ledger, answers, kills = Ledger(), Answers(), Counter[str]()
    stacks: list[Stack] = []
    try:
        result = run_with_faults(data_dir, test_model_dir, ledger, answers, kills, stacks)
    finally:
        for stack in stacks:
            if stack.process.poll() is None:
                stack.stop()

    figures = {
        "objects_written": len(ledger.newest), "objects_at_end": len(ledger.present()),
        "writes": dict(ledger.counts), "kill_rounds": kills["rounds"], "backends_killed": kills["backends"],
        "restarts_by_sigkill": 1, "answers_by_status": dict(sorted(answers.statuses.items())),
        "unreachable_during_restart": answers.unreachable,
        **{name: len(value) if isinstance(value, list) else value for name, value in result.items()
           if name != "backfill"},
        "first_backfill": {name: result["backfill"][name] for name in ("added", "embedded", "failed", "removed")},
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "faults.json").write_text(json.dumps(figures, indent=2, ensure_ascii=False))
    print("\nfault test figures:", json.dumps(figures, ensure_ascii=False))

    assert kills["backends"] > 0 and answers.statuses[200] > 0  # the faults and the clients really ran
    assert answers.server_errors == [], answers.server_errors[:5]
    assert result["lost_by_restart"] == [] and result["lost_by_catalog"] == []
    assert result["ghosts"] == [] and result["searchable_ghosts"] == [] and result["not_searchable"] == []
    assert result["not_images_kept"]
    assert ledger.counts["overwrites"] > 0 and ledger.counts["deletes"] > 0


def run_with_faults(data_dir: Path, model_dir: Path, ledger: Ledger, answers: Answers, kills: Counter[str],
                    stacks: list[Stack]) -> dict[str, Any]:
    """Both phases around the SIGKILL restart; the check's findings."""
    keys, seeds = hostile_keys(), iter(range(10_000, 10**9))
    for log in ("faults-1.log", "faults-2.log"):
        (ARTIFACTS / log).unlink(missing_ok=True)
    first = start_stack(data_dir, str(model_dir), log_path=ARTIFACTS / "faults-1.log", settings=STAGES)
    stacks.append(first)
    url = database_url(first)
    s3 = first.s3()
    for key, make in CORRUPT.items():
        ledger.record(key, s3.put_object(Bucket=BUCKET, Key=key, Body=make())["ETag"].strip('"'), "corrupt")
    for key, body in NOT_IMAGES.items():
        ledger.record(key, s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"'), "not_images")
    for key in UNSTORABLE:
        ledger.record(key, s3.put_object(Bucket=BUCKET, Key=key, Body=photo_bytes(1))["ETag"].strip('"'), "unstorable")
    clients, faults = Background(), Background()
    clients.start(api_client(first, ledger, answers), CLIENTS)
    faults.start(killer(url, kills))
    try:
        write_for(FIRST_PHASE_SECONDS, first, keys, ledger, seeds)
        # SIGKILL, not Ctrl-C: nothing is saved on the way out, so only the copy made while running counts.
        wait_until(lambda: disk_copy_caught_up(data_dir, ledger), 30, "the bucket copy on disk catching up")
        first.process.kill()
        first.process.wait(30)
        api_port, s3_port = (int(address.rsplit(":", 1)[1]) for address in (first.api_url, first.s3_endpoint))
        second = start_stack(data_dir, str(model_dir), log_path=ARTIFACTS / "faults-2.log", api_port=api_port,
                             s3_port=s3_port, settings=STAGES)
        stacks.append(second)
        write_for(SECOND_PHASE_SECONDS, second, keys, ledger, seeds)
    finally:
        faults.stop()
        clients.stop()
    return reconcile_and_check(second, url, model_dir, ledger)


def write_for(seconds: float, stack: Stack, keys: list[str], ledger: Ledger, seeds: Iterator[int]) -> None:
    writers = Background()
    for number in range(WRITERS):
        writers.start(writer(stack, keys[number::WRITERS], ledger, seeds))
    writers.stopping.wait(seconds)
    writers.stop()
