"""The local bucket on disk, for `make dev`: moto keeps objects in memory, so the stack copies them here
while it runs and puts them back, without events, at the next start.

Layout under IB_DATA_DIR/s3:

    objects/<sha256>           each distinct body once, named by its SHA-256
    manifests/<bucket>.json    key -> blob, etag, size, last modified, content type, cache control, metadata

Keys are never file names, so any S3 key round-trips: 1,024-byte keys, `a` next to `a/b`, keys ending
in `/`, `../x`, the NFC and NFD spellings of one name as two keys. Every file is written to a temporary
name and renamed, so a kill -9 leaves the old file or the new one, never half of one. `save` fetches
only new and changed objects, so the stack runs it every 2 s (less often for a bucket so large that
listing it takes a noticeable share of the time): a kill -9 loses at most those seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SAVE_EVERY_SECONDS = 2.0
LISTING_SHARE = 9  # after a listing of t seconds, the next waits 9 t: listing stays under a tenth of the time
COPY_THREADS = 8  # objects read or written side by side (moto answers in parallel)
HEADERS = {"content_type": "ContentType", "cache_control": "CacheControl", "metadata": "Metadata"}
MANIFEST_VERSION = 1
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,62}$")  # S3's rule: also a safe file name


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename it over `path` (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class BucketStore:
    """One bucket's objects on disk: `restore` at start, `save` while running and at exit."""

    def __init__(self, s3: Any, bucket: str, root: Path):
        if not BUCKET_NAME.match(bucket):
            raise ValueError(f"{bucket!r} is not an S3 bucket name")
        self.s3, self.bucket, self.root = s3, bucket, root
        self.objects_dir = root / "objects"
        self.manifest_path = root / "manifests" / f"{bucket}.json"
        self.fetched = 0  # objects `save` read from the bucket (only new and changed ones)
        self._entries: dict[str, dict[str, Any]] = {}
        self._next_due = 0.0  # monotonic time the next periodic save may list the bucket again
        self._lock = threading.Lock()

    # ---- start --------------------------------------------------------------------------------------

    def restore(self) -> int:
        """Put every saved object back into the bucket (created, still without notifications, so no
        events are sent: the catalog has them already); returns how many."""
        with self._lock:
            self._migrate_old_layout()
            self._entries = self._read_manifest()
            with ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="bucket-restore") as pool:
                restored = sum(pool.map(self._put_back, self._entries.items()))
            for item in self._listing():  # restored objects are new to S3: adopt their times, so `save` skips them
                entry = self._entries.get(item["Key"])
                if entry and entry["etag"] == item["ETag"]:
                    entry["last_modified"] = item["LastModified"].isoformat()
            self._write_manifest(self._entries)  # also marks, from the first start on, the layout in use
            self._drop_unreferenced_blobs()
            return restored

    def _put_back(self, item: tuple[str, dict[str, Any]]) -> bool:
        key, entry = item
        try:
            body = (self.objects_dir / entry["blob"]).read_bytes()
        except OSError as exc:
            log.warning("the saved copy of s3://%s/%s is missing (%s); it cannot be restored", self.bucket, key, exc)
            return False
        headers = {name: entry[field] for field, name in HEADERS.items() if entry.get(field)}
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, **headers)
        return True

    def _migrate_old_layout(self) -> None:
        """Earlier releases kept one file per key under s3/<bucket>/ (keys that could not be file names
        were lost); bring such a folder into this layout once. The folder is first renamed aside, so a
        bucket named `objects` cannot clash and an interrupted migration resumes."""
        folder, parked = self.root / self.bucket, self.root / f".migrating-{self.bucket}"
        if self.manifest_path.exists() and not parked.exists():
            return
        if folder.is_dir() and not parked.exists() and not self.manifest_path.exists():
            folder.rename(parked)
        if not parked.is_dir():
            return
        from shared.images import content_type_for

        entries = {}
        for path in sorted(parked.rglob("*")):
            if path.is_file() and not path.name.endswith(".partial"):
                key, body = path.relative_to(parked).as_posix(), path.read_bytes()
                entries[key] = self._entry(body, etag=f'"{hashlib.md5(body).hexdigest()}"', last_modified=None,
                                           content_type=content_type_for(key), cache_control=None, metadata={})
        self._write_manifest(entries)
        shutil.rmtree(parked)
        (self.root / f"{self.bucket}.manifest.json").unlink(missing_ok=True)
        log.info("moved %d objects of %s from the one-file-per-key folder to %s", len(entries), self.bucket, self.root)

    # ---- while running ------------------------------------------------------------------------------

    def save(self) -> int:
        """Make the manifest match the bucket: fetch new and changed objects, forget deleted ones.
        Returns how many objects it holds."""
        with self._lock:
            saved = self._entries
            current: dict[str, dict[str, Any]] = {}
            changed: list[str] = []
            started = time.monotonic()
            for item in self._listing():
                key, entry = item["Key"], saved.get(item["Key"])
                listed = (item["ETag"], item["LastModified"].isoformat())
                if entry and (entry["etag"], entry["last_modified"]) == listed:
                    current[key] = entry
                else:
                    changed.append(key)
            self._next_due = time.monotonic() + (time.monotonic() - started) * LISTING_SHARE
            with ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="bucket-save") as pool:
                for key, fetched in zip(changed, pool.map(self._fetch, changed), strict=True):
                    if fetched is not None:  # else deleted since the listing
                        current[key] = fetched
            self.fetched += len(changed)
            if current != saved:
                self._write_manifest(current)
                self._drop_unreferenced_blobs()
            self._entries = current
            return len(current)

    def save_when_due(self) -> None:
        """`save`, on the stack's 2 s tick, unless the last listing took long enough that listing again
        now would take more than a tenth of the time (a bucket of many thousand objects)."""
        if time.monotonic() >= self._next_due:
            self.save()

    def _listing(self) -> Iterator[dict[str, Any]]:
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            yield from page.get("Contents", [])

    def _fetch(self, key: str) -> dict[str, Any] | None:
        """The object's body (into a blob) and headers; None if it was deleted since the listing."""
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
        except self.s3.exceptions.NoSuchKey:
            return None
        return self._entry(response["Body"].read(), etag=response["ETag"],
                           last_modified=response["LastModified"].isoformat(),
                           content_type=response.get("ContentType"), cache_control=response.get("CacheControl"),
                           metadata=response.get("Metadata") or {})

    def _entry(self, body: bytes, **fields: Any) -> dict[str, Any]:
        digest = hashlib.sha256(body).hexdigest()
        blob = self.objects_dir / digest
        if not blob.exists():  # content-addressed: an existing blob holds these very bytes
            write_atomically(blob, body)
        return {"blob": digest, "size": len(body), **fields}

    # ---- files --------------------------------------------------------------------------------------

    def _read_manifest(self) -> dict[str, dict[str, Any]]:
        try:
            return dict(json.loads(self.manifest_path.read_bytes())["objects"])
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError) as exc:  # written by renames, so only a damaged disk gets here
            raise ValueError(f"the bucket copy's manifest {self.manifest_path} is damaged ({exc!r}); move it "
                             "aside to start with an empty bucket") from None

    def _write_manifest(self, entries: dict[str, dict[str, Any]]) -> None:
        document = {"version": MANIFEST_VERSION, "bucket": self.bucket, "objects": entries}
        write_atomically(self.manifest_path, json.dumps(document, indent=0).encode())

    def _drop_unreferenced_blobs(self) -> None:
        """Delete blobs no manifest names any more, and temporary files a kill left behind."""
        for leftover in self.manifest_path.parent.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
        if not self.objects_dir.is_dir():
            return
        wanted: set[str] = set()
        for manifest in self.manifest_path.parent.glob("*.json"):
            try:
                wanted.update(entry["blob"] for entry in json.loads(manifest.read_bytes())["objects"].values())
            except (OSError, ValueError, KeyError) as exc:
                log.warning("cannot read %s (%s); keeping every blob", manifest, exc)
                return
        for path in self.objects_dir.iterdir():
            if path.name not in wanted:
                path.unlink(missing_ok=True)
