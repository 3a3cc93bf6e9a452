"""`make dev` itself: `python -m shared.dev.stack` starts, answers, embeds uploads through the event
path, stops cleanly on Ctrl-C, keeps its data for the next start, and says which port is busy."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import subprocess
import sys
import unicodedata
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.dev.bucket_store import BucketStore
from shared.dev.local_services import MotoServer, aws_client, free_port
from tests.fixtures.devstack import HOST, Stack, embedded_by_events, get_json, running_stack, start_stack
from tests.fixtures.model import synthetic_photo
from tests.fixtures.services import unique_name

KEYS = ["camera/first.jpg", "camera/second photo.png", "third.jpg"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_model_dir: Path) -> Iterator[Stack]:
    with running_stack(tmp_path_factory, str(test_model_dir), "devstack") as running:
        yield running


def upload(stack: Stack, key: str, seed: int) -> bytes:
    buffer = io.BytesIO()
    synthetic_photo(240 + 40 * seed, 180, seed=seed).save(buffer, "PNG" if key.endswith(".png") else "JPEG")
    stack.s3().put_object(Bucket=stack.bucket, Key=key, Body=buffer.getvalue())
    return buffer.getvalue()


def test_starts_answers_health_and_prints_next_steps(stack: Stack) -> None:
    health = stack.health()
    assert health is not None and health["status"] == "ok" and health["database"] is True
    assert health["test_model"] is True
    out = stack.output()
    assert "search results are not meaningful" in out  # the terminal says the test model is in use
    assert f"Local S3:         {stack.s3_endpoint}   bucket: photos" in out
    assert f"aws --endpoint-url {stack.s3_endpoint} s3 cp ~/Pictures s3://photos/ --recursive" in out
    assert "image-browser sync ~/Pictures --collection photos" in out
    assert f"IB_S3_ENDPOINT_URL={stack.s3_endpoint}" in out
    assert f"Then open {stack.api_url} in a browser" in out
    # The gallery is served at / by the same server.
    with urllib.request.urlopen(f"{stack.api_url}/", timeout=10) as response:
        assert "<title>Image Browser</title>" in response.read().decode()
    assert get_json(f"{stack.api_url}/config.json")["pageSize"] >= 1


def test_uploads_embed_through_events_and_survive_a_restart(stack: Stack, tmp_path: Path) -> None:
    originals = {key: upload(stack, key, seed) for seed, key in enumerate(KEYS)}
    stats = stack.wait_embedded(len(KEYS))
    assert stats["counts"] == {"embedded": len(KEYS), "pending": 0, "failed": 0}
    # Embedded by the SQS worker calling functions.embed.handler, not by the periodic backfill.
    assert stack.logged_embedded(len(KEYS)) == len(KEYS)

    assert stack.stop() == 0
    out = stack.output()
    assert "Stopping..." in out and "Traceback" not in out
    assert "Saved 6 objects" in out  # 3 originals + their 3 thumbnails
    assert not (stack.data_dir / "postgres" / "postmaster.pid").exists()  # PostgreSQL was shut down

    # Same data directory, the `test-dynamic` model spec (resolves to the same cached test model).
    again = start_stack(stack.data_dir, "test-dynamic", log_path=tmp_path / "restart.log")
    try:
        assert "6 objects restored" in again.output()
        assert embedded_by_events(again.output()) == 0  # restored objects send no events: no re-embedding
        stats = get_json(f"{again.api_url}/api/stats")
        assert stats["counts"] == {"embedded": len(KEYS), "pending": 0, "failed": 0}
        items = get_json(f"{again.api_url}/api/recent")["items"]
        assert sorted(item["key"] for item in items) == sorted(KEYS)
        for item in items:  # the originals are back in the local S3, byte for byte
            with urllib.request.urlopen(item["url"], timeout=10) as response:
                assert response.read() == originals[item["key"]]
        assert get_json(f"{again.api_url}/api/search?q=a%20photo")["items"]
    finally:
        assert again.stop() == 0


@pytest.mark.parametrize("variable", ["IB_API_PORT", "IB_S3_PORT"])
def test_a_port_in_use_names_the_port_and_the_variable(variable: str, tmp_path: Path,
                                                        test_model_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "IB_MODEL": str(test_model_dir),
            "IB_DATA_DIR": str(tmp_path / "data"), "IB_HOST": HOST,
            "IB_API_PORT": str(free_port(HOST)), "IB_S3_PORT": str(free_port(HOST)),
        }
        env[variable] = str(port)
        result = subprocess.run([sys.executable, "-m", "shared.dev.stack"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"port {port} on {HOST} is already in use" in result.stdout
    assert f"set {variable} to a free port" in result.stdout
    assert not (tmp_path / "data" / "postgres").exists()  # failed before starting anything



def bucket_bodies(s3: Any, bucket: str) -> dict[str, bytes]:
    keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for item in page.get("Contents", [])]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def test_bucket_copy_is_incremental_and_restores(moto_server: MotoServer, tmp_path: Path) -> None:
    s3 = aws_client("s3", moto_server.endpoint)
    bucket = unique_name("snap")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a/one.jpg", Body=b"one")
    s3.put_object(Bucket=bucket, Key="two words.png", Body=b"two")
    s3.put_object(Bucket=bucket, Key="folder/", Body=b"")  # a "folder" marker is a key like any other
    store = BucketStore(s3, bucket, tmp_path / "s3")
    assert store.save() == 3 and store.fetched == 3
    blob = store.objects_dir / hashlib.sha256(b"one").hexdigest()
    first = blob.stat().st_mtime_ns

    s3.delete_object(Bucket=bucket, Key="two words.png")
    s3.put_object(Bucket=bucket, Key="three.jpg", Body=b"three")
    assert store.save() == 3 and store.fetched == 4  # only the new object was read
    assert blob.stat().st_mtime_ns == first  # unchanged: not rewritten
    assert not (store.objects_dir / hashlib.sha256(b"two").hexdigest()).exists()  # deleted: its blob too
    assert store.save() == 3 and store.fetched == 4  # nothing changed, nothing read

    fresh = unique_name("snap")  # as after a restart: an empty bucket filled from disk
    s3.create_bucket(Bucket=fresh)
    (store.root / "manifests" / f"{bucket}.json").rename(store.root / "manifests" / f"{fresh}.json")
    assert BucketStore(s3, fresh, store.root).restore() == 3
    assert bucket_bodies(s3, fresh) == {"a/one.jpg": b"one", "three.jpg": b"three", "folder/": b""}


def test_any_key_round_trips_with_its_headers(moto_server: MotoServer, tmp_path: Path) -> None:
    s3 = aws_client("s3", moto_server.endpoint)
    bucket, fresh = unique_name("keys"), unique_name("keys")
    s3.create_bucket(Bucket=bucket)
    s3.create_bucket(Bucket=fresh)
    nfc, nfd = unicodedata.normalize("NFC", "café.jpg"), unicodedata.normalize("NFD", "café.jpg")
    keys = ["a", "a/b", "a/b/", "dir/", "../up.jpg", "/abs.jpg", "a//b.jpg", "x/" + "y" * 255 + "/z.jpg",
            "k" * 1024, "é" * 512, nfc, nfd, "sp ace+plus%25?#.jpg"]
    assert nfc != nfd and len(set(keys)) == len(keys)
    bodies = {key: f"body of {key!r}".encode() for key in keys}
    bodies["same-as-a"] = bodies["a"]  # equal bodies: one blob
    for key, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="image/jpeg", Metadata={"origin": "test"})
    store = BucketStore(s3, bucket, tmp_path / "s3")
    assert store.save() == len(bodies)
    assert len(list(store.objects_dir.iterdir())) == len(bodies) - 1
    assert [p.name for p in store.root.rglob("*") if p.suffix == ".tmp"] == []  # written through renames

    for manifest in (store.root / "manifests").iterdir():
        manifest.rename(manifest.with_name(f"{fresh}.json"))
    assert BucketStore(s3, fresh, store.root).restore() == len(bodies)
    assert bucket_bodies(s3, fresh) == bodies
    head = s3.head_object(Bucket=fresh, Key="k" * 1024)
    assert head["ContentType"] == "image/jpeg" and head["Metadata"] == {"origin": "test"}
    assert head["ETag"] == s3.head_object(Bucket=bucket, Key="k" * 1024)["ETag"]


def test_the_old_one_file_per_key_folder_is_migrated(moto_server: MotoServer, tmp_path: Path) -> None:
    s3 = aws_client("s3", moto_server.endpoint)
    bucket = unique_name("old")
    s3.create_bucket(Bucket=bucket)
    root = tmp_path / "s3"
    old = {"a/one.jpg": b"one", "two words.png": b"two", "deep/er/three.jpg": b"three"}
    for key, body in old.items():
        (root / bucket / key).parent.mkdir(parents=True, exist_ok=True)
        (root / bucket / key).write_bytes(body)
    (root / bucket / "a" / "half.jpg.partial").write_bytes(b"an interrupted write")
    (root / f"{bucket}.manifest.json").write_text(json.dumps({key: '"etag"' for key in old}))
    store = BucketStore(s3, bucket, root)
    assert store.restore() == len(old)
    assert bucket_bodies(s3, bucket) == old
    assert s3.head_object(Bucket=bucket, Key="a/one.jpg")["ContentType"] == "image/jpeg"
    assert not (root / bucket).exists() and not (root / f"{bucket}.manifest.json").exists()
    assert store.save() == len(old) and store.fetched == 0  # the migrated copy matches the bucket
    assert BucketStore(s3, bucket, root).restore() == len(old)  # a second start finds the new layout
