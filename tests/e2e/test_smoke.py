"""`image-browser smoke` against the local stack (`make dev`), run as a user runs it: it passes on the working
stack, and on a bucket whose events reach no queue it stops at the embedding step with what to check."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.devstack import ROOT, Stack, embedded_by_events, running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_model_dir: Path) -> Iterator[Stack]:
    with running_stack(tmp_path_factory, str(test_model_dir), "smoke") as running:
        yield running


def run_smoke(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("IB_")}
    env.update({"IB_S3_ENDPOINT_URL": stack.s3_endpoint, "IB_S3_ACCESS_KEY_ID": "test",
                "IB_S3_SECRET_ACCESS_KEY": "test", "PYTHONPATH": str(ROOT)})
    return subprocess.run([sys.executable, "-m", "shared.cli.main", "smoke", "--api-url", stack.api_url, *args],
                          cwd=stack.data_dir.parent, env=env, capture_output=True, text=True, timeout=300)


def smoke_objects(stack: Stack, bucket: str) -> list[str]:
    listing = stack.s3().list_objects_v2(Bucket=bucket).get("Contents", [])
    return [item["Key"] for item in listing if "image-browser-smoke-" in item["Key"]]


def test_smoke_passes_against_the_local_stack(stack: Stack) -> None:
    result = run_smoke(stack, "--bucket", stack.bucket, "--timeout", "120")
    assert result.returncode == 0, result.stdout + result.stderr
    steps = ["API answers", "uploaded", "searchable by similar:", "in /api/recent", "thumbnail", "deleted",
             "gone from the index"]
    lines = [line for line in result.stdout.splitlines() if line.startswith("  ok  ")]
    assert [line[6:38].strip() for line in lines] == steps  # every step, in order, each with its time
    assert all(line[38:].strip().split()[1] == "s" for line in lines)
    assert result.stdout.rstrip().splitlines()[-1].startswith("passed in ")
    # It went through the event path, and left nothing behind: no object, no thumbnail.
    assert embedded_by_events(stack.output()) >= 1
    assert smoke_objects(stack, stack.bucket) == []
    thumbnails = stack.s3().list_objects_v2(Bucket=stack.bucket, Prefix=".thumbnails/").get("Contents", [])
    assert [t["Key"] for t in thumbnails if "image-browser-smoke-" in t["Key"]] == []


def test_smoke_names_the_failing_step_on_a_bucket_without_events(stack: Stack) -> None:
    stack.s3().create_bucket(Bucket="unwired")  # no notification configuration: uploads reach no queue
    result = run_smoke(stack, "--bucket", "unwired", "--timeout", "3")
    assert result.returncode == 1
    assert "  ok  uploaded" in result.stdout and "searchable" not in result.stdout
    assert re.search(r"FAILED: uploaded \d+ s ago, not embedded: check the queue's DLQ and the embed "
                     r"function's logs", result.stderr), result.stderr
    assert "(the test image was deleted again)" in result.stderr
    assert smoke_objects(stack, "unwired") == []


def test_smoke_stops_first_on_an_api_that_does_not_answer(stack: Stack) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli.main", "smoke", "--api-url", "http://127.0.0.1:9", "--timeout", "1"],
        cwd=stack.data_dir.parent, capture_output=True, text=True, timeout=120,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("IB_")}, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 1
    assert "FAILED: the API at http://127.0.0.1:9 did not answer /api/health (no answer" in result.stderr
    assert "uploaded" not in result.stdout  # nothing was put in any bucket
