"""`make dev`: the whole system on this machine, in one process.

Embedded PostgreSQL (data under IB_DATA_DIR), moto as S3 + SQS with the bucket's object events sent
to a queue, a worker that hands SQS batches to `functions.embed.handler` as Lambda would, a periodic
backfill, and the API + gallery under uvicorn. Ctrl-C stops it all; the next start keeps the data
(moto keeps objects in memory, so the bucket is saved under IB_DATA_DIR/s3 on the way out and
restored, without events, on the way in).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from shared.config import ConfigError, Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
TEST_MODEL_SPEC = "test"
BACKFILL_EVERY_SECONDS = 60
log = logging.getLogger("image_browser.devstack")


def say(message: str = "") -> None:
    print(message, flush=True)


def resolve_model(spec: str, data_dir: Path) -> str:
    """`test` means the repo's random-weight test model, built once under the data directory."""
    if spec != TEST_MODEL_SPEC:
        return spec
    target = data_dir / "test-model"
    if not (target / "config.json").exists():
        say("Building the random-weight test model (once; about a minute)...")
        subprocess.run([sys.executable, str(REPO / "scripts" / "make_test_model.py"), str(target)], check=True)
    return str(target)


def check_model(settings: Settings) -> Any:
    """Load (download on first use) the model now, so a problem shows before anything starts."""
    from shared.embedders import EmbedderError, load

    try:
        embedder = load(settings.model, settings)
        if not settings.model.startswith("replicate:"):
            embedder.embed_texts(["warm up"])  # loads the text tower; the first search is then fast
    except EmbedderError as exc:
        say(f"\nCannot use the model {settings.model!r}: {exc}\n")
        say("Where the model cannot be downloaded, run the same stack on the repo's small random-weight")
        say("test model (search results are then not meaningful):\n\n    make dev MODEL=test\n")
        raise SystemExit(1) from None
    return embedder


class S3Snapshot:
    """Save the bucket's objects to disk at shutdown and put them back at start (moto is in memory)."""

    def __init__(self, s3: Any, bucket: str, folder: Path):
        self.s3, self.bucket, self.folder = s3, bucket, folder

    def restore(self) -> int:
        count = 0
        for path in sorted(self.folder.rglob("*")) if self.folder.exists() else []:
            if path.is_file():
                key = path.relative_to(self.folder).as_posix()
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=path.read_bytes())
                count += 1
        return count

    def save(self) -> int:
        import shutil

        tmp = self.folder.with_name(self.folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        count = 0
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                target = tmp / item["Key"]
                if not target.resolve().is_relative_to(tmp.resolve()):
                    continue  # a key like ../x must not escape the snapshot folder
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read())
                count += 1
        shutil.rmtree(self.folder, ignore_errors=True)
        if tmp.exists():
            tmp.rename(self.folder)
        return count


class Periodic(threading.Thread):
    def __init__(self, every: float, action: Any, name: str):
        super().__init__(name=name, daemon=True)
        self.every, self.action, self.stopping = every, action, threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            try:
                self.action()
            except Exception:
                log.exception("%s failed; will try again in %s s", self.name, self.every)

    def stop(self) -> None:
        self.stopping.set()


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        say(str(exc))
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from shared.localstack import (
        EmbeddedPostgres,
        MotoServer,
        PortInUse,
        aws_client,
        check_port_free,
        wire_bucket_to_queue,
    )

    data_dir = settings.data_dir.resolve()
    try:
        check_port_free(settings.host, settings.api_port, "IB_API_PORT")
        check_port_free(settings.host, settings.s3_port, "IB_S3_PORT")
    except PortInUse as exc:
        say(f"Cannot start: {exc}.")
        return 1

    model = resolve_model(settings.model, data_dir)
    endpoint = f"http://{settings.host}:{settings.s3_port}"
    postgres = None
    database_url = settings.database_url
    if not database_url:
        postgres = EmbeddedPostgres(data_dir / "postgres")
        database_url = postgres.start()
    # Everything below (handlers, API) reads these through shared.config / shared.runtime.
    os.environ.update({
        "IB_MODEL": model,
        "IB_DATABASE_URL": database_url,
        "IB_S3_ENDPOINT_URL": endpoint,
        "IB_S3_ACCESS_KEY_ID": settings.s3_access_key_id or "test",
        "IB_S3_SECRET_ACCESS_KEY": settings.s3_secret_access_key or "test",
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        "AWS_DEFAULT_REGION": settings.s3_region,
    })
    from shared import runtime

    runtime.reset()
    settings = runtime.get_settings()
    embedder = check_model(settings)

    moto = MotoServer(settings.host, settings.s3_port).start()
    s3 = aws_client("s3", endpoint, settings.s3_region)
    snapshot = S3Snapshot(s3, settings.bucket, data_dir / "s3" / settings.bucket)
    s3.create_bucket(Bucket=settings.bucket)
    restored = snapshot.restore()  # before notifications: these objects are already in the catalog
    queue_url = wire_bucket_to_queue(endpoint, settings.bucket, f"{settings.bucket}-events",
                                     region=settings.s3_region, thumbnail_prefix=settings.thumbnail_prefix)
    runtime.catalog().ensure_collection(settings.bucket, embedder.model_id, embedder.dim)

    from functions import backfill, embed
    from shared.sqs_poller import LocalContext, SqsPoller

    poller = SqsPoller(aws_client("sqs", endpoint, settings.s3_region), queue_url, embed.handler)
    poller.start()
    def sweep_once() -> None:
        backfill.handler({"collections": [settings.bucket]}, LocalContext("backfill", timeout_seconds=180))

    sweeper = Periodic(BACKFILL_EVERY_SECONDS, sweep_once, "backfill")
    sweeper.start()

    url = f"http://{settings.host}:{settings.api_port}"
    say("\n" + "=" * 72)
    if embedder.is_test_model:
        say("NOTE: running on the random-weight TEST model: search results are not meaningful.")
    say(f"Image Browser is running.  Model: {embedder.model_id}")
    say(f"  Gallery and API:  {url}   (API docs: {url}/docs)")
    say(f"  Local S3:         {endpoint}   bucket: {settings.bucket}" + (f" ({restored} objects restored)"
                                                                         if restored else ""))
    say("\nUpload images with any S3 tool, for example:")
    say(f"  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test aws --endpoint-url {endpoint} \\")
    say(f"      s3 cp ~/Pictures s3://{settings.bucket}/ --recursive")
    say(f"  IB_S3_ENDPOINT_URL={endpoint} .venv/bin/image-browser sync ~/Pictures --collection {settings.bucket}")
    say(f"\nThen open {url} and search. Ctrl-C stops everything; data stays in {data_dir}.")
    say("=" * 72 + "\n")

    import uvicorn

    from shared.api import app

    try:
        uvicorn.run(app, host=settings.host, port=settings.api_port, log_level="warning")
    finally:
        say("\nStopping...")
        sweeper.stop()
        poller.stop()
        saved = snapshot.save()
        moto.stop()
        if postgres is not None:
            postgres.stop()
        say(f"Stopped. {saved} objects saved to {snapshot.folder}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
