"""A model move with the local stack running all along: clients search and upload while
`image-browser reembed` moves the collection from the fixed-batch export (as Immich's exporter makes
it) to the dynamic-batch model. Nothing answers >= 500, every upload ends up embedded, stats name the
new model, and text search answers 200 after the switch."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.devstack import Stack, get_json, running_stack
from tests.fixtures.model import synthetic_photo

BEFORE, DURING = 12, 24


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    synthetic_photo(160, 120, seed=seed).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, immich_model_dir: Path, test_model_dir: Path) -> Iterator[Stack]:
    # One deployment holding both models; the first (the fixed-batch export) is the default.
    with running_stack(tmp_path_factory, f"{immich_model_dir},{test_model_dir}", "model-move") as running:
        yield running


class Clients:
    """Searchers and an uploader running until stopped; every HTTP status they saw is counted."""

    def __init__(self, stack: Stack, first_seed: int):
        self.stack, self.seed = stack, first_seed
        self.statuses: Counter[int] = Counter()
        self.uploaded: list[str] = []
        self.moves_seen: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._search, args=(i,)) for i in range(3)]
        self.threads.append(threading.Thread(target=self._upload))

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)

    def _search(self, worker: int) -> None:
        api = self.stack.api_url
        queries = [f"{api}/api/search?q=" + urllib.parse.quote(f"a photo {worker}"),
                   f"{api}/api/similar?key=before/000.jpg", f"{api}/api/recent", f"{api}/api/collections"]
        while not self.stopping.is_set():
            for url in queries:
                self.statuses[status_of(url)] += 1
            stats = get_json(f"{api}/api/stats")
            if stats.get("move"):
                self.moves_seen.append(stats["move"])

    def _upload(self) -> None:
        s3 = self.stack.s3()
        while not self.stopping.is_set() and len(self.uploaded) < DURING:
            key = f"during/{len(self.uploaded):03d}.jpg"
            s3.put_object(Bucket=self.stack.bucket, Key=key, Body=jpeg(self.seed + len(self.uploaded)))
            self.uploaded.append(key)
            time.sleep(0.15)


def test_move_while_searching_and_uploading(stack: Stack, immich_model_dir: Path, test_model_dir: Path) -> None:
    s3 = stack.s3()
    for i in range(BEFORE):
        s3.put_object(Bucket=stack.bucket, Key=f"before/{i:03d}.jpg", Body=jpeg(i))
    before = stack.wait_embedded(BEFORE)
    old_model = before["model"]
    assert old_model == "test/random-openclip-tiny-fixed" and before["move"] is None
    new_model = "test/random-clip-tiny"  # the dynamic-batch test model's id
    database_url = re.search(r"IB_DATABASE_URL='([^']+)'", stack.output()).group(1)

    with Clients(stack, first_seed=100) as clients:
        time.sleep(1.0)  # clients running before the move starts
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("IB_")},
               "IB_DATABASE_URL": database_url, "IB_MODEL": f"{immich_model_dir},{test_model_dir}",
               "IB_S3_ENDPOINT_URL": stack.s3_endpoint, "IB_S3_ACCESS_KEY_ID": "test",
               "IB_S3_SECRET_ACCESS_KEY": "test", "IB_BACKFILL_BATCH_SIZE": "4"}
        moved = subprocess.run([sys.executable, "-m", "shared.cli.main", "reembed", "--collection", stack.bucket,
                                "--model", new_model, "--quiet"], env=env, capture_output=True, text=True,
                               timeout=300)
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert "switched: True" in moved.stdout
        while len(clients.uploaded) < DURING:
            time.sleep(0.2)
        time.sleep(1.0)  # clients keep going after the switch

    stats = stack.wait_embedded(BEFORE + DURING, timeout=180)
    assert stats["model"] == new_model and stats["move"] is None
    assert stats["counts"] == {"embedded": BEFORE + DURING, "pending": 0, "failed": 0}
    assert sum(clients.statuses.values()) > 20
    assert not [code for code in clients.statuses if code >= 500], clients.statuses
    assert set(clients.statuses) == {200}, clients.statuses  # nothing refused either: both models are held
    assert status_of(f"{stack.api_url}/api/search?q=a%20dog%20in%20the%20snow") == 200
    answer = get_json(f"{stack.api_url}/api/search?q=a%20dog")
    assert answer["model"] == new_model and answer["items"]
    recent = {item["key"] for item in get_json(f"{stack.api_url}/api/recent?limit=100")["items"]}
    assert set(clients.uploaded) <= recent
