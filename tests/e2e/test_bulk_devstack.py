"""Bulk work through `make dev`: an existing bucket with no notification configuration is indexed by
`image-browser backfill` run in a second terminal (only IB_DATA_DIR set): the plan returns long before the
work is done, the queue's consumers embed every object exactly once, /api/stats shows the backlog while it
drains, and once it is empty the idle stack leaves its database alone (a scale-to-zero database can sleep).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pg8000.native
import pytest
from PIL import Image

from shared.store.db import connect_params
from tests.fixtures.devstack import ARTIFACTS, ROOT, Stack, get_json, start_stack

BUCKET = "existing"
OBJECTS = 320
# The stack's own recurring work comes round many times in this window (the SQS pollers' 1-s long polls, the
# bucket's save every few seconds); the hourly backfill plan is the one exception, by design (see below).
IDLE_SECONDS = 6.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_model_dir: Path) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("bulk") / "data"
    log_path = ARTIFACTS / "bulk-devstack.log"
    log_path.unlink(missing_ok=True)
    running = start_stack(data_dir, str(test_model_dir), log_path=log_path)
    yield running
    running.stop()


def small_jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), ((seed * 37) % 256, (seed * 91) % 256, (seed * 13) % 256)).save(out, "JPEG")
    return out.getvalue()


def fill_existing_bucket(stack: Stack) -> list[str]:
    """A bucket made with a plain S3 client, no notification configuration, objects put in it."""
    s3 = stack.s3()
    s3.create_bucket(Bucket=BUCKET)
    keys = [f"old/{i // 100}/img-{i}.jpg" for i in range(OBJECTS)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda ik: s3.put_object(Bucket=BUCKET, Key=ik[1], Body=small_jpeg(ik[0])),
                      enumerate(keys)))
    return keys


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`image-browser` in a second terminal: only IB_DATA_DIR says where the running stack is."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("IB_", "AWS_"))}
    env.update({"IB_DATA_DIR": str(stack.data_dir), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    return subprocess.run([sys.executable, "-m", "shared.cli.main", *args], cwd=stack.data_dir.parent, env=env,
                          capture_output=True, text=True, timeout=120)


def stats(stack: Stack) -> dict[str, Any]:
    return dict(get_json(f"{stack.api_url}/api/stats?collection={BUCKET}"))


def embedded_per_key(output: str) -> Counter[str]:
    """The embed handler's per-object "embedded" outcomes in the stack's log, by key."""
    found: Counter[str] = Counter()
    for line in output.splitlines():
        if line.startswith("{") and '"object embedded"' in line:
            record = json.loads(line)
            if record.get("bucket") == BUCKET and record.get("outcome") == "embedded":
                found[record["key"]] += 1
    return found


def idle_window(url: str, seconds: float) -> tuple[int, int]:
    """(client sessions that ran a query or connected during the window, committed transactions in it).

    The transactions include the database's own (autovacuum analysing the tables just written) and this
    probe's; the client sessions are what a scale-to-zero database counts as activity."""
    conn = pg8000.native.Connection(**connect_params(url))
    try:
        def commits() -> tuple[int, Any]:
            conn.run("SELECT pg_stat_clear_snapshot()")
            ((count, now),) = conn.run("SELECT xact_commit, now() FROM pg_stat_database "
                                       "WHERE datname = current_database()")
            return int(count), now

        before, since = commits()
        time.sleep(seconds)
        after, _ = commits()
        ((active,),) = conn.run(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
            "AND (query_start > :since OR backend_start > :since)", since=since)
        return int(active), after - before
    finally:
        conn.close()


def test_existing_bucket_is_planned_then_embedded_once_by_the_queue(stack: Stack) -> None:
    keys = fill_existing_bucket(stack)
    done = cli(stack, "backfill", "--collection", BUCKET)
    at_return = stats(stack)
    assert done.returncode == 0, done.stderr
    assert f"queued {OBJECTS} to embed" in done.stdout, done.stdout
    # The call returned with most of the work still queued: the consumers do it, not the plan.
    assert at_return["counts"]["embedded"] < OBJECTS / 3, (at_return, done.stdout)
    backlogs = [at_return.get("backlog")]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        current = stats(stack)
        backlogs.append(current.get("backlog"))
        if current["counts"]["embedded"] == OBJECTS and "backlog" not in current:
            break
        time.sleep(0.2)
    seen = [b for b in backlogs if b]
    assert seen, "the backlog block never showed"
    assert all(b["queued"] == OBJECTS and 0 <= b["done"] < OBJECTS for b in seen)
    assert current["counts"] == {"embedded": OBJECTS, "pending": 0, "failed": 0}
    assert "backlog" not in current  # empty: the block is gone
    assert stack.logged_embedded(OBJECTS) == OBJECTS  # waits for the last batch's log lines
    per_key = embedded_per_key(stack.output())
    assert set(per_key) == set(keys) and set(per_key.values()) == {1}, per_key.most_common(3)


def test_an_idle_stack_leaves_its_database_alone(stack: Stack) -> None:
    url = json.loads((stack.data_dir / "stack.json").read_text())["database_url"]
    time.sleep(5)  # the last batch's neighbours and logs are done
    active, commits = idle_window(url, IDLE_SECONDS)
    (ARTIFACTS / "idle-queries.txt").write_text(
        f"idle {IDLE_SECONDS:.0f} s: {active} client sessions ran queries; {commits} transactions committed "
        "(autovacuum and this probe included)\n")
    assert active == 0, f"{active} client sessions queried the database in an idle {IDLE_SECONDS:.0f} s"


def test_the_only_timer_that_reaches_the_database_runs_hourly_as_deployed() -> None:
    from shared.dev import bucket_store
    from shared.dev import stack as dev_stack

    assert dev_stack.BACKFILL_EVERY_SECONDS >= 3600  # the deployed backfillRate is hours, not minutes
    assert bucket_store.SAVE_EVERY_SECONDS < IDLE_SECONDS / 2  # the window above sees the bucket saved twice
